"""Listening sockets and their connections, shared by every TCP source (syslog, Avro, Thrift...).

What a source gives its server: a framer per connection, which finds whole messages (lines,
frames, calls) in the bytes that arrive, and an async handler for whole messages, which hands
their events over and answers the client. What it gets: binding (several ports, `reusePort`, TLS,
`ipFilterRules`), connection counters, and a stop that lets in-flight batches finish: idle
connections are closed at once, a connection busy with a delivery completes it (and answers)
before it is closed.

A connection is a plain asyncio Protocol: bytes go to the framer as they arrive, and a task runs
only while a delivery is in flight (none at all when the channel takes the batch at once). An
open connection holding nothing costs its socket, its transport and a few hundred bytes; one
sending half a message adds that half and an entry in its server's deadlines.

Clients that cost nothing to run and hold resources for ever are cut off here, once for every
source: a message that has begun must be complete within `readTimeout` seconds of its first byte,
however slowly its bytes trickle in; and at `maxConnections` open connections a new one closes
the longest-open connection that is not handing events to the channel, or is refused if every
one is. Both are counted (`ReadTimeoutCount`, `ConnectionLimitCount`), and both live in
sources.connection_limits, shared with the HTTP server (`Deadlines`: one timer per server, a
dict entry per connection whose message has begun; `ConnectionTable`). A connection with
nothing half-sent is kept, as in Flume: RPC clients hold connections open between batches.

What one connection can make us hold is bounded: what arrives while a delivery is in flight
(reading pauses past HELD_LIMIT: backpressure, the sender's window closes, nothing is dropped or
answered early) plus the message being received, which each source bounds (`max-request-bytes`
for the RPC sources, `max-line-length` for netcat, `eventSize` for syslog).

A malformed frame (`FrameError`) or a decode error closes only that connection, with one
rate-limited log line and an `EventReadFail`; the server keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kubeflume_agent.config.keys import Config, Key, declared_key, positive_integer, positive_number
from kubeflume_agent.core.batches import batch_limit, batches
from kubeflume_agent.core.counters import SourceCounters
from kubeflume_agent.core.eager import run_eagerly
from kubeflume_agent.core.errors import ChannelError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.log_limit import RateLimitedWarnings
from kubeflume_agent.protocols.framing import FrameError
from kubeflume_agent.protocols.ipfilter import IpFilter
from kubeflume_agent.sources.base import REUSE_PORT_KEY, ConnectionConfig, Source
from kubeflume_agent.sources.connection_limits import ProtocolServer

log = logging.getLogger(__name__)

HELD_LIMIT = 128 * 1024  # bytes a connection may receive while a delivery is in flight before reading pauses
# Bytes a connection may read before the event loop lets everything else run once (reading
# pauses until then): a client sending flat out cannot fill the channel faster than sinks empty it.
TURN_BYTES = 128 * 1024
# A client that streams in small writes (a read of STREAM_BYTES to TURN_BYTES brought whole messages
# and it was answered nothing: syslog, netcat without acks, thriftLegacy) is read again only after
# GATHER_SECONDS: each read then hands over hundreds of events instead of dozens, which halves the
# CPU per event of such a stream for at most a millisecond of latency. Clients answered per call
# are read at once, and so are larger reads (they gather enough by themselves).
STREAM_BYTES = 4 * 1024
GATHER_SECONDS = 0.001
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


class Framer(Protocol):
    """Finds whole messages in the bytes one connection sends (the source makes one per connection)."""

    @property
    def partial(self) -> bool:
        """Part of a message is held: its clock (readTimeout) runs."""

    def feed(self, data: bytes) -> list[Any]:
        """The messages `data` completes, in order; FrameError refuses the stream."""

    def flush(self) -> list[Any]:
        """At the end of the stream: what the client sent without its terminator (or nothing)."""


MakeFramer = Callable[["Connection"], Framer]
# Hands whole messages over and answers them; False closes the connection.
Handle = Callable[["Connection", list[Any]], Awaitable[bool]]


class Connection(asyncio.Protocol):
    """One accepted client. `busy` while a delivery is in flight: stop waits for it, and the
    longest-open connection that is not busy is the one closed at maxConnections."""

    __slots__ = ("_answered", "_held", "_paused", "_turn", "_writable", "busy", "eof", "framer", "lost", "peer_ip",
                 "server", "task", "transport")

    def __init__(self, server: TcpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.framer: Framer = None  # type: ignore[assignment]  # made once the connection is accepted
        self.peer_ip = ""
        self.busy = False
        self.task: asyncio.Task | None = None  # a delivery that had to wait
        self.eof = False  # the client has sent everything
        self.lost = False  # the transport is gone
        self._held: list[bytes] | None = None  # what arrived while a delivery was in flight
        self._turn = 0  # bytes read since the event loop last let the others (sinks) run
        self._paused = False
        self._answered = False  # the last delivery wrote to the client (which may be waiting for it)
        self._writable: asyncio.Future | None = None  # set while the transport's write buffer is full

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport: create_server
        self.peer_ip = (transport.get_extra_info("peername") or ("",))[0]
        self.server.accept(self)

    def data_received(self, data: bytes) -> None:
        if self.busy:
            self._hold(data)
            return
        messages = self._framed(data)
        self._answered = False
        self._hand_over(messages)
        self._turn += len(data)
        if messages and not self._answered and STREAM_BYTES <= len(data) < TURN_BYTES and not self.busy:
            self.pause()  # a client streaming without waiting for answers: let a millisecond of it gather
            self.server.loop.call_later(GATHER_SECONDS, self._next_turn)
        elif self._turn >= TURN_BYTES:
            self.pause()
            self.server.loop.call_soon(self._next_turn)

    def eof_received(self) -> bool:
        self.eof = True
        if not self.busy:
            self._hand_over(self._flushed())
        return self.server.ssl_context is None  # keep the socket open for the answers (TLS cannot)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.server.deadlines.stop(self)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if not self.busy:
            self.server.forget(self)

    def pause_writing(self) -> None:
        self._writable = self.server.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # --- for the source's handler --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._answered = True
        self.transport.write(data)

    async def send(self, data: bytes) -> None:
        """Write `data`, waiting while the client does not read what it was sent."""
        if self.transport.is_closing():
            raise ConnectionResetError("connection closed")
        self._answered = True
        self.transport.write(data)
        if self._writable is not None:
            await self._writable

    def close(self) -> None:
        self.transport.close()

    def evict(self) -> None:
        """Closed to make room under maxConnections (ConnectionTable)."""
        self.close()

    # --- reading ---------------------------------------------------------------------------

    def _framed(self, data: bytes) -> list[Any]:
        """The messages `data` completes; starts or stops the clock of a begun message."""
        try:
            messages = self.framer.feed(data)
        except FrameError as error:
            self._refuse(error)
            return []
        if not messages:  # (with messages, a delivery starts, which stops the clock)
            self._tick()
        return messages

    def _flushed(self) -> list[Any]:
        try:
            return self.framer.flush()
        except FrameError as error:
            self._refuse(error)
            return []

    def _hold(self, data: bytes) -> None:
        """Keep what arrives during a delivery; past HELD_LIMIT, stop reading until it is done."""
        held = self._held
        if held is None:
            self._held = held = []
        held.append(data)
        if len(held) > 1 and sum(map(len, held)) >= HELD_LIMIT:
            self.pause()

    def _received(self) -> list[Any]:
        """After a delivery: the messages of what arrived meanwhile, and at the end of the stream,
        what the client left without a terminator."""
        messages: list[Any] = []
        if self._held:
            data = b"".join(self._held) if len(self._held) > 1 else self._held[0]
            self._held = None
            if not self.transport.is_closing():
                messages = self._framed(data)
        if not messages and self.eof and not self.transport.is_closing():
            messages = self._flushed()
        return messages

    # --- the deadline of a begun message -------------------------------------------------------

    def _tick(self) -> None:
        """Start the clock when a message has begun, stop it when none has."""
        deadlines = self.server.deadlines
        if self.framer.partial:
            if self not in deadlines:
                deadlines.start(self, self.server.read_timeout)
        elif self in deadlines:
            deadlines.stop(self)

    def deadline_passed(self) -> None:
        """Its message is not complete within readTimeout (connection_limits.Deadlines)."""
        server = self.server
        server.counters.read_timeouts += 1
        server.warn("read-timeout", "closing connection from %s: no complete message within readTimeout = %g s",
                    self.peer_ip, server.read_timeout)
        self.close()

    # --- delivering ------------------------------------------------------------------------

    def _hand_over(self, messages: list[Any]) -> None:
        """Deliver `messages`; a task is made only if the delivery has to wait (a full channel, a slow client)."""
        if not messages:
            if self.eof and not self.transport.is_closing():
                self.close()
            return
        self.busy = True
        self.server.deadlines.stop(self)  # no clock while this connection is not read
        self.task = run_eagerly(self._deliver(messages), self.server.loop)

    async def _deliver(self, messages: list[Any]) -> None:
        """Hand `messages` to the source, then what arrived meanwhile, until nothing whole is left."""
        server = self.server
        try:
            while messages:
                if not await server.handle(self, messages) or server.stopping:
                    self.close()
                    break
                messages = self._received()
        except FrameError as error:
            self._refuse(error)
        except (ConnectionError, ssl.SSLError):
            self.close()  # the client went away: nothing it did not hear about was acknowledged
        except asyncio.CancelledError:
            self.transport.abort()  # stop's grace is over
        except Exception:
            server.warn("connection-failed", "closing connection from %s: unexpected error", self.peer_ip,
                        exc_info=True)
            self.close()
        finally:
            self.busy = False
            self.task = None
        if self.lost:
            server.forget(self)
        elif self.eof and not self.transport.is_closing():
            self.close()
        else:
            self._tick()
            self.resume()

    def pause(self) -> None:
        if not self._paused and not self.transport.is_closing():
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        """Read again, unless a delivery is in flight (its end resumes)."""
        if self._paused and not self.busy and not self.transport.is_closing():
            self._paused = False
            self.transport.resume_reading()

    def _next_turn(self) -> None:
        self._turn = 0
        self.resume()

    def _refuse(self, error: FrameError) -> None:
        self.server.counters.event_read_fail += 1
        self.server.warn("bad-frame", "closing connection from %s: %s", self.peer_ip, error)
        self.close()


class TcpServer(ProtocolServer):
    def __init__(
        self,
        name: str,
        counters: SourceCounters,
        framer: MakeFramer,
        handle: Handle,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        ip_filter: IpFilter | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        warnings: RateLimitedWarnings | None = None,
    ) -> None:
        super().__init__(name, counters, warnings or RateLimitedWarnings(), max_connections=max_connections,
                         ssl_context=ssl_context, reuse_port=reuse_port)
        self.framer = framer
        self.handle = handle
        self.ip_filter = ip_filter
        self.read_timeout = read_timeout
        self.stopped = asyncio.Event()
        self._all_gone: asyncio.Future | None = None  # while stop waits for the last connection

    def _new_connection(self) -> Connection:
        return Connection(self)

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        self.stopping = True
        self.stopped.set()
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            if not connection.busy:
                connection.close()
        if not await self._connections_gone(grace):
            for connection in list(self.connections):
                if connection.task is not None:
                    connection.task.cancel()
                connection.transport.abort()
            await self._connections_gone(None)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def _connections_gone(self, timeout: float | None) -> bool:
        """Whether every connection is gone (within `timeout` seconds)."""
        if not len(self.connections):
            return True
        self._all_gone = self.loop.create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._all_gone), timeout)
        return not len(self.connections)

    def warn(self, kind: str, message: str, *args: object, exc_info: bool = False) -> None:
        """One of this source's rate-limited warnings about a client."""
        self.warnings.warn(log, kind, "%s: " + message, self.name, *args, exc_info=exc_info)

    def accept(self, connection: Connection) -> None:
        """A new connection: refused while stopping, at maxConnections if every one is busy, or by
        ipFilterRules; otherwise counted and given its framer."""
        if self.stopping:
            connection.close()
            return
        if not self.connections.admit(connection):
            connection.close()
            return
        connection.framer = self.framer(connection)
        if self.ip_filter is not None:
            connection.pause()
            connection.task = self.loop.create_task(self._filter(connection, self.ip_filter))

    async def _filter(self, connection: Connection, ip_filter: IpFilter) -> None:
        accepted = await ip_filter.accepts(connection.peer_ip)
        connection.task = None
        if connection.transport.is_closing():
            return
        if accepted:
            connection.resume()
        else:
            self.warn("refused-connection", "refused connection from %s", connection.peer_ip)
            connection.close()

    def forget(self, connection: Connection) -> None:
        """A connection is closed and has nothing in flight."""
        self.connections.remove(connection)
        if not len(self.connections) and self._all_gone is not None and not self._all_gone.done():
            self._all_gone.set_result(None)


def server_for(source: Source, framer: MakeFramer, handle: Handle, config: ConnectionConfig,
               **options: Any) -> TcpServer:
    """The TCP server of `source`, with the keys every TCP source shares (`reusePort`, and
    `readTimeout`, `maxConnections`: see ConnectionKeys); `options`: TLS context, IP filter."""
    return TcpServer(source.name, source.counters, framer, handle, reuse_port=config.reuse_port,
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
    source.count_received(len(events), single=single)
    try:
        await source.store(events, single=single)  # Source.deliver, one coroutine less per call
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
