"""Signals: the wake-ups channels give their sinks and sources."""

from __future__ import annotations

import asyncio

from kubeflume_agent.core.signal import Signal, wait_any


async def test_a_notify_of_any_signal_wakes_the_waiter_and_leaves_no_waiter_behind():
    first, second = Signal(), Signal()
    waiting = asyncio.ensure_future(wait_any([first, second], 60))
    await asyncio.sleep(0)
    second.notify()
    assert await waiting is True
    assert first._waiters == [] and second._waiters == []


async def test_a_wait_ends_false_when_nothing_notifies():
    signal = Signal()
    assert await signal.wait(0.01) is False
    assert signal._waiters == []


async def test_a_notify_with_nobody_waiting_is_not_remembered():
    signal = Signal()
    signal.notify()
    assert await signal.wait(0.01) is False
