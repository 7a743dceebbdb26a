"""Every wire parser, fuzzed (a few thousand inputs in all; bench/fuzz_parsers.py runs 10^5 each):
it returns events or raises its own error type, never anything else, and a valid stream cut at any
byte boundary gives the same events as the whole. The targets are in tests/fuzz_targets.py."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_targets import TARGETS, cut, fuzz_input, outcome

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
STREAMS = [target for target in TARGETS if target.stream]


def by_name(targets):
    return pytest.mark.parametrize("target", targets, ids=[t.name for t in targets])


@by_name(TARGETS)
@FUZZ
@given(data=st.data())
def test_a_parser_returns_events_or_refuses_with_its_own_error(target, data):
    if data.draw(st.booleans()):
        raw = data.draw(st.binary(max_size=400))
    else:
        raw = fuzz_input(data.draw(st.randoms(use_true_random=False)), target)
    pieces = cut(data.draw(st.randoms(use_true_random=False)), raw)
    kind, _ = outcome(target, pieces)  # anything but the target's own errors fails the test
    assert kind in ("events", "refused")


@by_name(TARGETS)
@FUZZ
@given(rng=st.randoms(use_true_random=False))
def test_a_valid_input_gives_events(target, rng):
    kind, events = outcome(target, [target.valid(rng)])
    assert kind == "events", events


@by_name(STREAMS)
@FUZZ
@given(rng=st.randoms(use_true_random=False), cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_a_valid_stream_cut_anywhere_gives_the_same_events(target, rng, cuts):
    stream = target.valid(rng)
    points = sorted({point % (len(stream) + 1) for point in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert outcome(target, pieces) == outcome(target, [stream])


def test_a_container_of_two_billion_empty_elements_is_refused_at_once():
    """The hang fuzzing found: a list claiming 2^31 elements of a type without bytes."""
    thrift = next(t for t in TARGETS if t.name == "thrift-binary-framed")
    frame = (b"\x80\x01\x00\x01\x00\x00\x00\x0bappendBatch\x00\x00\x00\x01"  # CALL appendBatch, seqid 1
             b"\x0f\x00\x09"  # an unknown field 9 of type list, skipped...
             b"\x00\x7f\xff\xff\xff")  # ...of 2^31 - 1 elements of type STOP
    assert outcome(thrift, [len(frame).to_bytes(4, "big") + frame]) == ("refused", "FrameError")


def test_every_byte_boundary_of_one_valid_stream():
    rng = random.Random(7)
    for target in STREAMS:
        stream = target.valid(rng)
        whole = outcome(target, [stream])
        assert whole[0] == "events"
        for point in range(len(stream) + 1):
            assert outcome(target, [stream[:point], stream[point:]]) == whole, (target.name, point)
