"""The JSON handler's events: the fast path for the usual item (text headers, text body) must give
exactly what the item-by-item checks give, and refuse what they refuse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeflume_agent.sources.http import BadRequest, _json_event, _json_events

SCALARS = st.one_of(st.text(max_size=8), st.integers(), st.floats(allow_nan=False), st.booleans(), st.none())
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2), st.dictionaries(st.text(max_size=3), SCALARS, max_size=2))
HEADERS = st.one_of(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
                    st.dictionaries(st.text(max_size=8), VALUES, max_size=4), VALUES)
ITEMS = st.one_of(
    st.fixed_dictionaries({"headers": HEADERS, "body": st.text(max_size=20)}),
    st.fixed_dictionaries({}, optional={"headers": HEADERS, "body": VALUES, "other": VALUES}),
    VALUES)
ENCODINGS = [("utf-8", b""), ("utf-16-be", b"\xfe\xff"), ("utf-32-be", b"")]


def one_by_one(document, codec, bom):
    return [_json_event(item, codec, bom) for item in document]


@pytest.mark.parametrize(("codec", "bom"), ENCODINGS)
@given(document=st.lists(ITEMS, max_size=8))
def test_fast_path_gives_what_the_checks_give(codec, bom, document):
    try:
        expected = one_by_one(document, codec, bom)
    except BadRequest:
        with pytest.raises(BadRequest):
            _json_events(document, codec, bom)
        return
    events = _json_events(document, codec, bom)
    assert events == expected
    assert [list(event.headers.items()) for event in events] == [list(event.headers.items()) for event in expected]

