"""What the agent's servers built on asyncio Protocols (one object per connection, no Task while it
is idle: sources.tcp_server, sources.http_server) share: binding their ports, the `maxConnections`
table and the connections' deadlines.

* `listen`: one listening server per port, with TLS and `reusePort`; `ProtocolServer`: the base of
  both servers, which binds its ports with it and keeps the loop, the table and the deadlines.

* `ConnectionTable`: the open connections, longest-open first. At `maxConnections` a new one
  closes the longest-open connection that is not handing events over (`busy`), or is refused if
  every one is; either way counted in ConnectionLimitCount. Once a burst of connections is gone,
  the memory it freed is handed back to the system (core.memory): a flood leaves no high-water mark.
* `Deadlines`: the deadlines of every connection of a server (a begun message's readTimeout, an
  idle keep-alive's close, a refusal's linger), on one timer per server: an open connection costs
  no timer, and one with a deadline a dict entry.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Protocol

from kubeflume_agent.core.counters import SourceCounters
from kubeflume_agent.core.log_limit import RateLimitedWarnings
from kubeflume_agent.core.memory import release_free_memory

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024
# Once this many connections were open at once and all but a sixteenth of them are gone, the C
# heap's free pages go back to the system.
BURST_CONNECTIONS = 1_000


async def listen(loop: asyncio.AbstractEventLoop, make_connection: Callable[[], asyncio.Protocol],
                 host: str | None, ports: Sequence[int], *, ssl_context: ssl.SSLContext | None,
                 reuse_port: bool, servers: list[asyncio.Server]) -> list[int]:
    """Listen on every port (0 picks a free one), appending each listening server to `servers`
    as it is made (so the caller can close those made before a port that fails); returns the
    bound port numbers, in order."""
    bound = []
    for port in ports:
        server = await loop.create_server(make_connection, host or None, port, ssl=ssl_context,
                                          reuse_port=reuse_port or None, backlog=LISTEN_BACKLOG)
        servers.append(server)
        bound.append(server.sockets[0].getsockname()[1])
    return bound


class ProtocolServer:
    """What sources.tcp_server.TcpServer and sources.http_server.HttpServer share: their ports, the
    loop and one Deadlines (set by `start`: the loop is asked for once, each asking being a getpid
    syscall), and the ConnectionTable. A subclass makes its connections and stops."""

    def __init__(self, name: str, counters: SourceCounters, warnings: RateLimitedWarnings, *,
                 max_connections: int, ssl_context: ssl.SSLContext | None, reuse_port: bool) -> None:
        self.name = name
        self.counters = counters
        self.warnings = warnings
        self.ssl_context = ssl_context
        self.reuse_port = reuse_port
        self.connections = ConnectionTable(name, counters, warnings, max_connections)
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop
        self.deadlines: Deadlines
        self._servers: list[asyncio.Server] = []

    async def start(self, host: str | None, ports: Sequence[int]) -> list[int]:
        """Bind every port (0 picks a free one); returns the bound port numbers, in order."""
        self.loop = loop = asyncio.get_running_loop()
        self.deadlines = Deadlines(loop)
        try:
            return await listen(loop, self._new_connection, host, ports, ssl_context=self.ssl_context,
                                reuse_port=self.reuse_port, servers=self._servers)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        raise NotImplementedError

    def _new_connection(self) -> asyncio.Protocol:
        raise NotImplementedError


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
        self._high_water = 0  # most connections open at once since memory was last handed back

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
        self._high_water = max(self._high_water, len(self._open))
        return True

    def remove(self, connection: Evictable) -> None:
        if self._open.pop(connection, False) is None:
            self.counters.open_connections -= 1
            if self._high_water >= BURST_CONNECTIONS and len(self._open) <= self._high_water // 16:
                self._high_water = len(self._open)
                release_free_memory()

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


class Expiring(Protocol):
    """A connection that can be given a deadline."""

    def deadline_passed(self) -> None: ...


class Deadlines:
    """The deadlines of one server's connections, on one timer. Per distinct duration, the
    connections given it in a dict, in the order they were given it, which is the order their
    deadlines pass: starting and stopping a deadline is a dict insertion or removal, with no timer
    and no heap entry per connection (TCP sources do both on every read of a half message)."""

    __slots__ = ("_by_duration", "_timer", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._by_duration: dict[float, dict[Expiring, float]] = {}  # seconds -> {connection: deadline}
        self._timer: asyncio.TimerHandle | None = None

    def __contains__(self, connection: Expiring) -> bool:
        for deadlines in self._by_duration.values():  # noqa: SIM110 (asked on every TCP read: no generator)
            if connection in deadlines:
                return True
        return False

    def start(self, connection: Expiring, seconds: float) -> None:
        """Call `connection.deadline_passed()` in `seconds`, unless stopped or started again before."""
        when = self.loop.time() + seconds
        deadlines = self._by_duration.get(seconds)
        if deadlines is None:
            self.stop(connection)
            self._by_duration[seconds] = deadlines = {}
        elif deadlines.pop(connection, None) is None:  # a restart of the same duration needs no search
            self.stop(connection)
        deadlines[connection] = when
        timer = self._timer
        if timer is None or timer.when() > when:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(when, self._expire)

    def stop(self, connection: Expiring) -> None:
        """No deadline for `connection`; the timer stays armed and finds nothing (cheaper than moving it)."""
        for deadlines in self._by_duration.values():
            if deadlines.pop(connection, None) is not None:
                return

    def _expire(self) -> None:
        """Take out every connection whose deadline passed, wait for the next deadline, then tell
        the connections, earliest deadline first (one may start a deadline again)."""
        self._timer = None
        now = self.loop.time()
        passed: list[tuple[float, Expiring]] = []
        upcoming: float | None = None
        for seconds, deadlines in list(self._by_duration.items()):
            first = len(passed)
            for connection, when in deadlines.items():
                if when > now:
                    upcoming = when if upcoming is None else min(upcoming, when)
                    break
                passed.append((when, connection))
            for _, connection in passed[first:]:
                del deadlines[connection]
            if not deadlines:
                del self._by_duration[seconds]
        if upcoming is not None:
            self._timer = self.loop.call_at(upcoming, self._expire)
        passed.sort(key=_deadline)
        for _, connection in passed:
            connection.deadline_passed()


def _deadline(entry: tuple[float, Expiring]) -> float:
    return entry[0]
