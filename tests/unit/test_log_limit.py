"""Warnings a client can trigger at will: the first few per window, then one line with a count."""

from __future__ import annotations

import asyncio
import logging

from kubeflume_agent.core.log_limit import RateLimitedWarnings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_few_are_logged_then_counted_and_reported_by_the_next_window(caplog):
    clock = Clock()
    warnings = RateLimitedWarnings(burst=3, window=60, clock=clock)
    log = logging.getLogger("test.limit")
    with caplog.at_level(logging.WARNING):
        for number in range(1000):
            warnings.warn(log, "bad-frame", "bad frame %d from %s", number, "10.0.0.1")
        warnings.warn(log, "other", "another kind is not held back")
        assert [r.getMessage() for r in caplog.records] == [
            "bad frame 0 from 10.0.0.1", "bad frame 1 from 10.0.0.1", "bad frame 2 from 10.0.0.1",
            "another kind is not held back"]
        clock.now += 61
        warnings.warn(log, "bad-frame", "bad frame %d from %s", 1000, "10.0.0.2")
    assert [r.getMessage() for r in caplog.records[4:]] == [
        "997 more warnings of kind 'bad-frame' in the last 60 s were not logged; the last: bad frame 999 from 10.0.0.1",
        "bad frame 1000 from 10.0.0.2"]


async def test_on_an_event_loop_the_count_is_reported_when_the_window_ends_without_another_warning(caplog):
    warnings = RateLimitedWarnings(burst=1, window=0.05)
    log = logging.getLogger("test.limit.loop")
    with caplog.at_level(logging.WARNING):
        for number in range(10):
            warnings.warn(log, "timeout", "timed out %d", number)
        deadline = asyncio.get_running_loop().time() + 20
        while len(caplog.records) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
    assert [r.getMessage() for r in caplog.records] == [
        "timed out 0", "9 more warnings of kind 'timeout' in the last 0.05 s were not logged; the last: timed out 9"]


def test_a_warning_can_carry_its_traceback(caplog):
    warnings = RateLimitedWarnings(burst=1, window=60)
    log = logging.getLogger("test.limit.traceback")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            try:
                raise RuntimeError("interceptor broke")
            except RuntimeError:
                warnings.warn(log, "processing-failed", "could not process", exc_info=True)
    assert len(caplog.records) == 1 and "interceptor broke" in caplog.text
