"""Signals: the wake-ups channels give their sinks and sources."""

from __future__ import annotations

import asyncio

from kubeflume_agent.core.signal import Signal, wait_any, wait_until


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


async def test_wait_until_wakes_only_at_a_notify_where_its_condition_holds():
    first, second = Signal(), Signal()
    enough = []
    waiting = asyncio.ensure_future(wait_until([first, second], lambda: len(enough) >= 2, 60,
                                               loop=asyncio.get_running_loop()))
    await asyncio.sleep(0)
    enough.append(1)
    first.notify()
    await asyncio.sleep(0)
    assert not waiting.done()
    enough.append(2)
    second.notify()
    assert await waiting is True
    assert first._checks == [] and second._checks == []


async def test_wait_until_ends_false_when_the_condition_never_holds():
    signal = Signal()
    assert await wait_until([signal], lambda: False, 0.01, loop=asyncio.get_running_loop()) is False
    assert signal._checks == []
