"""A wake-up call for coroutines waiting on a condition (room in a channel, data in a channel)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence


class Signal:
    """`notify()` wakes every coroutine in `wait()`; they re-check their condition themselves.

    Cheaper than asyncio.Condition on the hot path: notify() with nobody waiting is one test, and
    a wait is one future (no task, no timer unless asked), since a sink may wait thousands of
    times a second.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[bool]] = []

    def notify(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(True)

    async def wait(self, timeout: float | None) -> bool:
        """Wait for the next notify(); False if `timeout` seconds passed first."""
        return await wait_any((self,), timeout)


async def wait_any(signals: Sequence[Signal], timeout: float | None, *,
                   loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Wait for the next notify() of any of `signals`; False if `timeout` seconds passed first.
    `loop`: the running loop, if the caller keeps it (asking for it costs a getpid() syscall)."""
    loop = loop or asyncio.get_running_loop()
    waiter: asyncio.Future[bool] = loop.create_future()
    for signal in signals:
        signal._waiters.append(waiter)
    timer = None if timeout is None else loop.call_later(timeout, _time_out, waiter)
    try:
        return await waiter
    finally:
        if timer is not None:
            timer.cancel()
        for signal in signals:
            if waiter in signal._waiters:
                signal._waiters.remove(waiter)


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
