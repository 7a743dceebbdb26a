"""A wake-up call for coroutines waiting on a condition (room in a channel, data in a channel)."""

from __future__ import annotations

import asyncio


class Signal:
    """`notify()` wakes every coroutine in `wait()`; they re-check their condition themselves.

    Cheaper than asyncio.Condition on the hot path: notify() with nobody waiting is one test.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait(self, timeout: float | None) -> bool:
        """Wait for the next notify(); False if `timeout` seconds passed first."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
