"""Warnings a hostile client can trigger at will, kept from flooding the log (and the disk).

`RateLimitedWarnings.warn(log, kind, message, *args)` logs the first few warnings of one kind per
window as they come, then only counts them; when the window ends, one line says how many were left
out and shows the last one. Every source owns one (`Source.warnings`) for its per-client refusals,
so one flooded source does not silence another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

BURST = 5  # warnings of one kind logged as they come, per window
WINDOW_SECONDS = 60.0


@dataclass
class _Window:
    started: float
    logged: int = 0
    suppressed: int = 0
    last: str = ""
    flush_scheduled: bool = False


class RateLimitedWarnings:
    """Per (logger, kind): the first `burst` warnings of each window, then a count."""

    def __init__(self, *, burst: int = BURST, window: float = WINDOW_SECONDS, clock=time.monotonic) -> None:
        self.burst = burst
        self.window = window
        self.clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    def warn(self, log: logging.Logger, kind: str, message: str, *args: object, exc_info: bool = False) -> None:
        """`log.warning(message, *args)` within the limit; `exc_info`: with the current traceback."""
        if not log.isEnabledFor(logging.WARNING):
            return
        key = (log.name, kind)
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window.started >= self.window:
            if window is not None:
                self._report(log, kind, window)
            window = self._windows[key] = _Window(now)
        if window.logged < self.burst:
            window.logged += 1
            log.warning(message, *args, exc_info=exc_info or None)
            return
        window.suppressed += 1
        window.last = message % args if args else message
        if not window.flush_scheduled:
            window.flush_scheduled = self._schedule_report(log, kind, window)

    def _schedule_report(self, log: logging.Logger, kind: str, window: _Window) -> bool:
        """On an event loop, report the count when the window ends even if no warning follows."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False  # reported by the next warning of this kind instead
        delay = max(0.0, window.started + self.window - self.clock())
        loop.call_later(delay, self._report_if_current, log, kind, window)
        return True

    def _report_if_current(self, log: logging.Logger, kind: str, window: _Window) -> None:
        key = (log.name, kind)
        if self._windows.get(key) is window:
            del self._windows[key]
            self._report(log, kind, window)

    def _report(self, log: logging.Logger, kind: str, window: _Window) -> None:
        if window.suppressed:
            log.warning("%d more warnings of kind %r in the last %g s were not logged; the last: %s",
                        window.suppressed, kind, self.window, window.last)
            window.suppressed = 0

