"""A wake-up call for coroutines waiting on a condition (room in a channel, data in a channel)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence


class Signal:
    """`notify()` wakes every coroutine in `wait()`; they re-check their condition themselves.

    Cheaper than asyncio.Condition on the hot path: notify() with nobody waiting is two tests, and
    a wait is one future (no task), since a sink may wait thousands of times a second. A waiter
    that needs more than one notify (`wait_until`) leaves a check here instead, called at each
    notify: cheaper than waking its task every time.
    """

    __slots__ = ("_checks", "_waiters")

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[bool]] = []
        self._checks: list[Callable[[], None]] = []

    def notify(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(True)
        if self._checks:
            for check in self._checks:
                check()

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


async def wait_until(signals: Sequence[Signal], condition: Callable[[], bool], timeout: float, *,
                     loop: asyncio.AbstractEventLoop) -> bool:
    """Wait until `condition()` holds at a notify() of any of `signals` (True), or `timeout`
    seconds pass (False). The condition is checked in notify() itself: the waiting task wakes once."""
    waiter: asyncio.Future[bool] = loop.create_future()

    def check() -> None:
        if not waiter.done() and condition():
            waiter.set_result(True)

    for signal in signals:
        signal._checks.append(check)
    timer = loop.call_later(timeout, _time_out, waiter)
    try:
        return await waiter
    finally:
        timer.cancel()
        for signal in signals:
            signal._checks.remove(check)


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
