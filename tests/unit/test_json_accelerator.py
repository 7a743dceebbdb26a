"""The compiled reader of the http source's usual request (protocols/_json_fast.pyx) against the
reference (orjson and sources.http._json_events): whatever it reads, it reads into the events the
reference gives; whatever else it leaves to the reference (None), including all the reference refuses."""

from __future__ import annotations

import json
import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeflume_agent.protocols.accelerators import compiled
from kubeflume_agent.sources.http import _json_events
from tests.fuzz_targets import mutate

json_events = compiled("_json_fast", "json_events")

TEXT = st.text(max_size=40)
EVENTS = st.lists(st.tuples(st.dictionaries(st.text(max_size=8), TEXT, max_size=4), TEXT), max_size=20)
LAYOUT = st.sampled_from([(", ", ": "), (",", ":"), (" ,\n", " :\t")])


def reference(raw: bytes):
    """The reference's events, or the type of its error."""
    try:
        document = orjson.loads(raw)
        if not isinstance(document, list):
            return "not a list"
        return _json_events(document, "utf-8", b"")
    except Exception as error:  # any refusal of the reference: the fast reader must step aside
        return type(error).__name__


def usual(events, ensure_ascii: bool, separators) -> bytes:
    return json.dumps([{"headers": headers, "body": body} for headers, body in events],
                      ensure_ascii=ensure_ascii, separators=separators).encode()


def test_the_reader_is_built():
    assert json_events is not None, "protocols/_json_fast.pyx is not compiled: run `pip install -e .` again"


@settings(max_examples=300, deadline=None)
@given(events=EVENTS, layout=LAYOUT)
def test_the_usual_request_gives_the_references_events(events, layout):
    raw = usual(events, False, layout)
    fast = json_events(raw)
    if any("\\" in json.dumps(text, ensure_ascii=False) for headers, body in events
           for text in (body, *headers, *headers.values())):
        assert fast is None or fast == reference(raw)  # escapes are left to the reference
    else:
        assert fast == reference(raw)


@settings(max_examples=300, deadline=None)
@given(events=EVENTS, ensure_ascii=st.booleans(), layout=LAYOUT, seed=st.integers(0, 2**32))
def test_a_damaged_request_is_read_as_the_reference_reads_it_or_left_to_it(events, ensure_ascii, layout, seed):
    raw = mutate(random.Random(seed), usual(events, ensure_ascii, layout))
    fast = json_events(raw)
    assert fast is None or fast == reference(raw)


def test_what_it_leaves_to_the_reference():
    for raw in (b'{"body": "x"}', b'[{"body": "x"}]', b'[{"headers": {}, "body": "x", "other": "y"}]',
                b'[{"headers": {"a": "1", "a": "2"}, "body": "x"}]', b'[{"headers": {"n": 1}, "body": "x"}]',
                b'[{"headers": {}, "body": "line\\n"}]', b'[{"headers": {}, "body": "\xff"}]',
                b'[{"headers": {}, "body": "x"}] x', b'[{"headers": {}, "body": "x"},]'):
        assert json_events(raw) is None, raw
