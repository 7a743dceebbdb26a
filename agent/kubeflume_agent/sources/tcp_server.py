"""Listening sockets and their connections, shared by every TCP source (syslog, Avro, Thrift...).

What a source gets from here: binding (several ports, `reusePort`, TLS, `ipFilterRules`), one
task per connection running the source's `serve(connection)`, connection counters, and a stop
that lets in-flight batches finish: idle connections are closed at once, a connection busy with
a request is allowed to complete it (and answer) before it is closed.

Clients that cost nothing to run and hold resources for ever are cut off here, once for every
source: a message (frame, line, request) that has begun must be complete within `readTimeout`
seconds of its first byte (`Connection.read_message`, `Connection.read`), however slowly its bytes
trickle in; and at `maxConnections` open connections a new one closes the longest-open connection
that is not handing events to the channel (or is refused if every one is). Both are counted
(`ReadTimeoutCount`, `ConnectionLimitCount`). A connection with nothing half-sent is kept, as
in Flume: RPC clients hold connections open between batches.

What one connection can make us hold is bounded: its stream buffer (reading pauses at twice
BUFFER_LIMIT) plus the message being read, which each source bounds (`max-request-bytes` for the
RPC sources, `max-line-length` for netcat, `eventSize` for syslog).

A malformed frame (`FrameError`) or a decode error closes only that connection, with one log
line and an `EventReadFail`; the server keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kubeflume_agent.config.keys import Config, Key, declared_key, positive_integer, positive_number
from kubeflume_agent.core.batches import batch_limit, batches
from kubeflume_agent.core.counters import SourceCounters
from kubeflume_agent.core.errors import ChannelError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.log_limit import RateLimitedWarnings
from kubeflume_agent.protocols.framing import FrameError
from kubeflume_agent.protocols.ipfilter import IpFilter
from kubeflume_agent.sources.base import REUSE_PORT_KEY, ConnectionConfig, Source

log = logging.getLogger(__name__)

BUFFER_LIMIT = 64 * 1024  # a connection's stream buffer: the reading pauses at twice this
READ_SIZE = 256 * 1024  # the most one read takes: all a client sent ahead, as one transaction
STOP_GRACE_SECONDS = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_MAX_CONNECTIONS = 10_000

READ_TIMEOUT_KEY = Key(
    "readTimeout", positive_number, DEFAULT_READ_TIMEOUT,
    doc="seconds a client may take to send one whole message (frame, line, request) from its first byte; "
        "a slower one is closed")
MAX_CONNECTIONS_KEY = Key(
    "maxConnections", positive_integer, DEFAULT_MAX_CONNECTIONS,
    doc="most open connections; one more closes the longest-open connection not handing events over")

T = TypeVar("T")


class ReadTimedOut(Exception):
    """A client did not complete a message within readTimeout: its connection is closed."""


class StreamReader(asyncio.StreamReader):
    """asyncio's reader, able to wait for a message's first byte without taking it."""

    # asyncio's own state, which typeshed leaves out
    _buffer: bytearray
    _eof: bool
    _wait_for_data: Callable[[str], Awaitable[None]]

    async def wait_readable(self) -> None:
        if not self._buffer and not self._eof:
            await self._wait_for_data("wait_readable")

    @property
    def readable(self) -> bool:
        """A read would return at once (bytes are buffered, or the end of the stream)."""
        return bool(self._buffer) or self._eof


class Connection:
    """One accepted client. `busy` is set while a request is being handled, so stop waits for it;
    setting it also ends the clock of the message being read (see `read`)."""

    __slots__ = ("_busy", "deadline", "evicted", "peer_ip", "peer_port", "reader", "server", "writer")

    def __init__(self, server: TcpServer, reader: StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("", 0)
        self.peer_ip: str = peer[0]
        self.peer_port: int = peer[1]
        self._busy = False
        self.deadline: float | None = None  # when the message being received must be complete
        self.evicted = False  # closed to make room under maxConnections

    @property
    def busy(self) -> bool:
        return self._busy

    @busy.setter
    def busy(self, value: bool) -> None:
        self._busy = value
        if value:
            self.deadline = None

    @property
    def open(self) -> bool:
        """False once the server is stopping: finish the current request and return."""
        return not self.server.stopping

    async def read(self, size: int, *, midway: bool) -> bytes:
        """Up to `size` bytes, for sources that split a stream themselves. `midway`: the caller
        holds part of a message, which must be complete within readTimeout of when it began."""
        if not midway:
            self.deadline = None
            return await self.reader.read(size)
        if self.deadline is None:
            self.deadline = asyncio.get_running_loop().time() + self.server.read_timeout
        if self.reader.readable:  # no wait, so no clock to run (a timer per read costs more than the read)
            return await self.reader.read(size)
        return await self._before_deadline(self.reader.read(size))

    async def read_message(self, read: Callable[..., Awaitable[T]], reader: Any, *args: Any) -> T:
        """`await read(reader, *args)`: one whole message, once its first byte is there, within
        readTimeout; waiting for that first byte has no limit (an idle client is no cost)."""
        await reader.wait_readable()
        self.deadline = asyncio.get_running_loop().time() + self.server.read_timeout
        return await self._before_deadline(read(reader, *args))

    async def _before_deadline(self, reading: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout_at(self.deadline):
                return await reading
        except TimeoutError:
            raise ReadTimedOut(f"no complete message within readTimeout = {self.server.read_timeout:g} s") from None

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


class TcpServer:
    def __init__(
        self,
        name: str,
        counters: SourceCounters,
        serve: Callable[[Connection], Awaitable[None]],
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        ip_filter: IpFilter | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        warnings: RateLimitedWarnings | None = None,
    ) -> None:
        self.name = name
        self.counters = counters
        self.serve = serve
        self.ssl_context = ssl_context
        self.reuse_port = reuse_port
        self.ip_filter = ip_filter
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.warnings = warnings or RateLimitedWarnings()
        self.stopping = False
        self.stopped = asyncio.Event()
        self._servers: list[asyncio.Server] = []
        self._connections: dict[asyncio.Task, Connection] = {}

    async def start(self, host: str | None, ports: Sequence[int]) -> list[int]:
        """Bind every port (0 picks a free one); returns the bound port numbers, in order."""
        bound = []
        loop = asyncio.get_running_loop()
        try:
            for port in ports:
                server = await loop.create_server(
                    self._protocol, host or None, port, ssl=self.ssl_context,
                    reuse_port=self.reuse_port or None, backlog=1024,
                )
                self._servers.append(server)
                bound.append(server.sockets[0].getsockname()[1])
        except BaseException:
            await self.stop()
            raise
        return bound

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        self.stopping = True
        self.stopped.set()
        for server in self._servers:
            server.close()
        for task, connection in list(self._connections.items()):
            if not connection.busy:
                task.cancel()
        if self._connections:
            _, late = await asyncio.wait(list(self._connections), timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def _protocol(self) -> asyncio.StreamReaderProtocol:
        """What asyncio.start_server makes per connection, with our StreamReader."""
        return asyncio.StreamReaderProtocol(StreamReader(limit=BUFFER_LIMIT), self._accept)

    def _make_room(self) -> bool:
        """At maxConnections: close the longest-open connection not handing events over.
        False if every connection is busy (the new one is refused then)."""
        self.counters.connection_limit += 1
        for task, connection in self._connections.items():
            if not connection.busy and not connection.evicted:
                connection.evicted = True
                task.cancel()
                self.warnings.warn(log, "connection-limit", "%s: %d connections (maxConnections): closed the one "
                                   "from %s", self.name, len(self._connections), connection.peer_ip)
                return True
        return False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert isinstance(reader, StreamReader), "_protocol makes our StreamReader"
        connection = Connection(self, reader, writer)
        if self.stopping or (self.ip_filter and not await self.ip_filter.accepts(connection.peer_ip)):
            self.warnings.warn(log, "refused-connection", "%s: refused connection from %s",
                               self.name, connection.peer_ip)
            writer.close()
            return
        if len(self._connections) >= self.max_connections and not self._make_room():
            self.warnings.warn(log, "connection-limit", "%s: refused a connection from %s: %d connections "
                               "(maxConnections), all busy", self.name, connection.peer_ip, len(self._connections))
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None, "a connection is served in a task"
        self._connections[task] = connection
        self.counters.open_connections += 1
        try:
            await self.serve(connection)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the client went away, possibly mid-frame: nothing of that frame was acknowledged
        except FrameError as error:
            self.counters.event_read_fail += 1
            self.warnings.warn(log, "bad-frame", "%s: closing connection from %s: %s",
                               self.name, connection.peer_ip, error)
        except ReadTimedOut as error:
            self.counters.read_timeouts += 1
            self.warnings.warn(log, "read-timeout", "%s: closing connection from %s: %s",
                               self.name, connection.peer_ip, error)
        except asyncio.CancelledError:
            if not (self.stopping or connection.evicted):
                raise
        finally:
            self.counters.open_connections -= 1
            del self._connections[task]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def server_for(source: Source, serve: Callable[[Connection], Awaitable[None]], config: ConnectionConfig,
               **options: Any) -> TcpServer:
    """The TCP server of `source`, with the keys every TCP source shares (`reusePort`, and
    `readTimeout`, `maxConnections`: see ConnectionKeys); `options`: TLS context, IP filter."""
    return TcpServer(source.name, source.counters, serve, reuse_port=config.reuse_port,
                     read_timeout=config.read_timeout, max_connections=config.max_connections,
                     warnings=source.warnings, **options)


async def deliver_until_accepted(source: Source, events: list[Event], stopped: asyncio.Event,
                                 batch_size: int | None = None,
                                 retry: type[ChannelError] = ChannelError) -> bool:
    """Backpressure for sources that cannot answer "failed": hand `events` over in channel-sized
    batches (at most `batch_size` events each, if given), retrying a batch refused with `retry`
    until it is accepted or `stopped` is set (False then). A TCP caller reads no more from its
    socket meanwhile, so the sender's window closes instead of data being lost. Each refusal
    counts a ChannelWriteFail; the events count as received once. Other errors propagate.
    """
    for batch in batches(events, batch_limit(source.processor.max_batch, batch_size)):
        source.count_received(len(batch))
        delay = 0.01
        while True:
            try:
                await source.store(batch)
                break
            except retry as error:
                if stopped.is_set():
                    return False
                log.debug("%s: channel refused %d events, retrying: %s", source.name, len(batch), error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), delay)
                delay = min(delay * 2, 1.0)
    return True


class Outcome:
    """What became of an RPC call's events; the source maps it to its protocol's answer."""

    STORED = "stored"
    REFUSED = "refused"  # the channel said no (full, or a batch over transactionCapacity)
    FAILED = "failed"  # anything else went wrong (an interceptor raised...)


DEFAULT_MAX_BATCH_EVENTS = 10_000


@dataclass(frozen=True)
class ConnectionKeys(Config):
    """The keys a TCP source's server reads (sources.base.ConnectionConfig), declared once for them all."""

    reuse_port: bool = declared_key(REUSE_PORT_KEY)
    read_timeout: float = declared_key(READ_TIMEOUT_KEY)
    max_connections: int = declared_key(MAX_CONNECTIONS_KEY)


# The default of the RPC and HTTP sources' `max-request-bytes`: what one call may make us hold.
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024

# The `max-batch-events` key of the RPC and HTTP sources.
MAX_BATCH_EVENTS_KEY = Key(
    "max-batch-events", positive_integer, DEFAULT_MAX_BATCH_EVENTS,
    doc="most events one call may carry: larger calls are refused, and decoding stops as soon as a call "
        "holds more values than that many events would (some 14 headers each)")


async def deliver_call(source: Source, events: list[Event], *, single: bool = False,
                       max_events: int | None = None) -> str:
    """Deliver the events of one RPC call (Avro/Thrift `append`, `appendBatch`, Scribe `Log`).

    Counted the Flume way: a single `append` moves to AppendReceived/AppendAccepted instead of the
    batch counters that `deliver` keeps. A call of more than `max_events` events is refused
    without reaching the channels (an EventReadFail), as the channel would refuse one larger
    than its transactionCapacity.
    """
    counters = source.counters
    if max_events is not None and len(events) > max_events:
        source.warnings.warn(log, "too-many-events", "%s: refused a call of %d events, more than max-batch-events = %d",
                     source.name, len(events), max_events)
        source.count_received(len(events))
        counters.event_read_fail += 1
        return Outcome.REFUSED
    try:
        await source.deliver(events, single=single)
        outcome = Outcome.STORED
    except ChannelError as error:
        log.debug("%s: channel refused %d events: %s", source.name, len(events), error)
        outcome = Outcome.REFUSED
    except Exception:
        source.warnings.warn(log, "processing-failed", "%s: could not process %d events", source.name, len(events),
                             exc_info=True)
        counters.generic_processing_fail += 1
        outcome = Outcome.FAILED
    return outcome
