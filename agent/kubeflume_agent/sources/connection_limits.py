"""What bounds a listening source's connections, for servers built on asyncio Protocols (one object
per connection, no Task while it is idle): the `maxConnections` table and a per-connection deadline.

* `ConnectionTable`: the open connections, longest-open first. At `maxConnections` a new one
  closes the longest-open connection that is not handing events over (`busy`), or is refused if
  every one is; either way counted in ConnectionLimitCount, as sources.tcp_server does.
* `Deadline`: one timer per connection, moved without touching the loop's timer heap when the
  deadline only moves later (a request per call_at would cost more than parsing it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from kubeflume_agent.core.counters import SourceCounters
from kubeflume_agent.core.log_limit import RateLimitedWarnings

log = logging.getLogger(__name__)


class Evictable(Protocol):
    """A connection the table can close to make room."""

    peer_ip: str

    @property
    def busy(self) -> bool: ...

    def evict(self) -> None: ...


class ConnectionTable:
    """The open connections of one server, in the order they were opened."""

    def __init__(self, name: str, counters: SourceCounters, warnings: RateLimitedWarnings,
                 max_connections: int) -> None:
        self.name = name
        self.counters = counters
        self.warnings = warnings
        self.max_connections = max_connections
        self._open: dict[Evictable, None] = {}  # a dict keeps insertion order: the oldest first

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self):
        return iter(list(self._open))

    def admit(self, connection: Evictable) -> bool:
        """Add `connection`, making room if the table is full; False if it must be refused."""
        if len(self._open) >= self.max_connections and not self._make_room(connection.peer_ip):
            return False
        self._open[connection] = None
        self.counters.open_connections += 1
        return True

    def remove(self, connection: Evictable) -> None:
        if self._open.pop(connection, False) is None:
            self.counters.open_connections -= 1

    def _make_room(self, newcomer: str) -> bool:
        self.counters.connection_limit += 1
        for connection in self._open:
            if not connection.busy:
                self.warnings.warn(log, "connection-limit", "%s: %d connections (maxConnections): closed the one "
                                   "from %s", self.name, len(self._open), connection.peer_ip)
                self.remove(connection)
                connection.evict()
                return True
        self.warnings.warn(log, "connection-limit", "%s: refused a connection from %s: %d connections "
                           "(maxConnections), all busy", self.name, newcomer, len(self._open))
        return False


class Deadline:
    """Calls `expired()` once the loop's clock passes the deadline last `set` (never if `clear`ed)."""

    __slots__ = ("_expired", "_loop", "_timer", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._expired = expired
        self._timer: asyncio.TimerHandle | None = None
        self.when: float | None = None

    def set_in(self, seconds: float) -> None:
        self.set(self._loop.time() + seconds)

    def set(self, when: float) -> None:
        self.when = when
        if self._timer is None or self._timer.when() > when:
            self._cancel_timer()
            self._timer = self._loop.call_at(when, self._fire)

    def clear(self) -> None:
        """No deadline; the timer, if any, stays armed and finds nothing to do (cheaper than cancelling)."""
        self.when = None

    def cancel(self) -> None:
        self.when = None
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self.when is None:
            return
        if self._loop.time() < self.when:  # moved later since the timer was armed
            self._timer = self._loop.call_at(self.when, self._fire)
            return
        self.when = None
        self._expired()
