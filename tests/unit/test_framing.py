"""The Thrift sources' framer (framing.LengthPrefixedFramer): frames found as bytes arrive, a claim
over the limit refused as soon as its length is in."""

from __future__ import annotations

import pytest

from kubeflume_agent.protocols.framing import FrameError, LengthPrefixedFramer, length_prefixed


def test_frames_are_found_in_any_pieces_and_a_begun_one_is_partial():
    frames = [b"one", b"", b"three" * 1000]
    stream = b"".join(map(length_prefixed, frames))
    boundaries = {7, 11, len(stream)}  # where a frame ends
    framer = LengthPrefixedFramer(10_000)
    found = []
    for start in range(0, len(stream), 5):
        found += framer.feed(stream[start:start + 5])
        assert framer.partial == (min(start + 5, len(stream)) not in boundaries)
    assert found == frames


@pytest.mark.parametrize("length", [-1, 101])
def test_a_length_outside_the_limit_is_refused_before_its_bytes(length):
    with pytest.raises(FrameError, match="Thrift frame"):
        LengthPrefixedFramer(100, "Thrift frame").feed(length.to_bytes(4, "big", signed=True))
