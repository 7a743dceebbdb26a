"""The compiled reader of the http source's usual request (protocols/_json_fast.pyx) against the
reference (orjson and sources.http._json_events): whatever it reads, it reads into the events the
reference gives; whatever else it leaves to the reference (None), including all the reference refuses."""

from __future__ import annotations

import itertools
import json
import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeflume_agent.core.event import Event
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


# Events as real traffic sends them: header names from a few, often the previous event's in the
# same order (the reader then copies the previous event's dict), sometimes one more, one fewer,
# another order or a name twice; values often repeated.
NAMES = st.sampled_from(["host", "seq", "é", "h\u00fcst", "a", ""])
PLAIN = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'), max_size=40)
VALUES = st.sampled_from(["benchhost", "1", "2", "ü", ""]) | PLAIN
PAIRS = st.lists(st.tuples(NAMES, VALUES), max_size=5)


@st.composite
def similar_events(draw):
    events = [(draw(PAIRS), draw(PLAIN))]
    for _ in range(draw(st.integers(0, 12))):
        pairs = list(events[-1][0])
        edit = draw(st.sampled_from(["same names", "same names", "one more", "one fewer", "other"]))
        if edit == "same names":
            pairs = [(name, draw(VALUES)) for name, _ in pairs]
        elif edit == "one more":
            pairs.insert(draw(st.integers(0, len(pairs))), (draw(NAMES), draw(VALUES)))
        elif edit == "one fewer" and pairs:
            del pairs[draw(st.integers(0, len(pairs) - 1))]
        elif edit == "other":
            pairs = draw(PAIRS)
        events.append((pairs, draw(PLAIN)))
    return events


def with_repeats(events) -> bytes:
    """The request with each event's header pairs as listed, repeated names included."""
    def text(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    def event(pairs, body: str) -> str:
        headers = ", ".join(f"{text(name)}: {text(value)}" for name, value in pairs)
        return f'{{"headers": {{{headers}}}, "body": {text(body)}}}'

    return ("[" + ",".join(event(pairs, body) for pairs, body in events) + "]").encode()


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


@settings(max_examples=300, deadline=None)
@given(events=similar_events())
def test_events_like_their_predecessors_get_the_references_headers_in_order(events):
    raw = with_repeats(events)
    fast = json_events(raw)
    if any(len({name for name, _ in pairs}) < len(pairs) for pairs, _ in events):
        assert fast is None  # a name twice: the reference decides
    elif any("\\" in json.dumps(text, ensure_ascii=False) for pairs, body in events
             for text in (body, *(text for pair in pairs for text in pair))):
        assert fast is None or fast == reference(raw)
    else:
        expected = reference(raw)
        assert fast == expected
        assert [list(event.headers.items()) for event in fast] == [list(e.headers.items()) for e in expected]


def test_each_event_has_a_headers_dict_of_its_own():
    raw = usual([({"host": "h", "seq": str(n)}, f"line {n}") for n in range(4)], False, (",", ":"))
    events = json_events(raw)
    events[1].headers["seq"] = "changed"
    events[2].headers["added"] = "x"
    del events[3].headers["host"]
    assert [event.headers for event in events] == [{"host": "h", "seq": "0"}, {"host": "h", "seq": "changed"},
                                                   {"host": "h", "seq": "2", "added": "x"}, {"seq": "3"}]
    assert all(type(event) is Event and type(event.headers) is dict for event in events)
    assert repr(events[0]) == "Event(headers={'host': 'h', 'seq': '0'}, body=b'line 0')"
    events[0].body = b"new"
    assert events[0] == Event(b"new", {"host": "h", "seq": "0"})


def test_long_texts_with_non_ascii_bytes_are_read_and_control_bytes_after_them_refused():
    for text in ("é" * 20 + "x" * 40, "x" * 17 + "é" + "y" * 33 + "ü", "€" * 30):
        raw = usual([({"host": text, "seq": text[:9]}, text), ({"host": text, "seq": "1"}, text)], False, (",", ":"))
        assert json_events(raw) == reference(raw)
    for bad in (b"\x01", b"\x1f", b"\n"):
        body = "é".encode() * 20 + bad + b"x" * 20
        raw = b'[{"headers": {"h": "' + body + b'"}, "body": "x"}, {"headers": {}, "body": "' + body + b'"}]'
        assert json_events(raw) is None, raw
        assert json_events(raw.replace(b'"h": "' + body, b'"h": "v')) is None, raw


# Bytes of a body that are neither quote, backslash nor control: UTF-8 or not, around the edges of
# Unicode's table 3-7 (overlong forms, surrogates, beyond U+10FFFF, cut sequences).
EDGE_BYTES = st.sampled_from([0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1,
                              0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF])
BODY_BYTES = st.lists(EDGE_BYTES | st.integers(0x20, 0xFF).filter(lambda byte: byte not in b'"\\'), max_size=40)


@settings(max_examples=300, deadline=None)
@given(body=BODY_BYTES.map(bytes) | PLAIN.map(str.encode), ascii_before=st.integers(0, 20))
def test_a_body_is_read_exactly_when_it_is_utf8(body, ascii_before):
    body = b"a" * ascii_before + body
    raw = b'[{"headers": {}, "body": "' + body + b'"}]'
    try:
        body.decode()
    except UnicodeDecodeError:
        assert json_events(raw) is None
    else:
        assert json_events(raw) == reference(raw) == [Event(body, {})]


def test_every_edge_of_utf8_is_judged_as_python_judges_it():
    leads = (0x80, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF3, 0xF4, 0xF5)
    follows = (0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0)
    for lead, length in itertools.product(leads, range(4)):
        for rest in itertools.product(follows, repeat=length):
            sequence = bytes((lead, *rest))
            for body in (sequence + b"x" * 20, b"y" * 20 + sequence):
                raw = b'[{"headers": {}, "body": "' + body + b'"}]'
                try:
                    expected = [Event(body.decode().encode(), {})]
                except UnicodeDecodeError:
                    expected = None
                assert json_events(raw) == expected, body


def test_what_it_leaves_to_the_reference():
    for raw in (b'{"body": "x"}', b'[{"body": "x"}]', b'[{"headers": {}, "body": "x", "other": "y"}]',
                b'[{"headers": {"a": "1", "a": "2"}, "body": "x"}]', b'[{"headers": {"n": 1}, "body": "x"}]',
                b'[{"headers": {}, "body": "line\\n"}]', b'[{"headers": {}, "body": "\xff"}]',
                b'[{"headers": {}, "body": "x"}] x', b'[{"headers": {}, "body": "x"},]',
                b'[{"headers": {"a": "1", "b": "2"}, "body": "x"}, {"headers": {"a": "1", "a": "2"}, "body": "x"}]',
                b'[{"headers": {"a": "1"}, "body": "x"}, {"headers": {"a": "1", "b": "\xff"}, "body": "x"}]',
                b'[{"headers": {"a": "1"}, "body": "x"}, {"headers": {"a": "1", "\xc3": "2"}, "body": "x"}]'):
        assert json_events(raw) is None, raw
