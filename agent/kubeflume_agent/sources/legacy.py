"""Flume's legacy sources: events from Flume OG (0.9.x) agents' avro and thrift sinks.

An OG event's fields become headers as in Flume 1.11: `host`, `timestamp`, `pri` (the priority
name, e.g. `INFO`), `nanos`, every entry of `fields` (decoded as UTF-8), and `FlumeOG = yes`.

* `avroLegacy`: Avro IPC over HTTP (Avro's HttpServer: POST, buffers framed by lengths, a
  handshake in every request). Flume answers null even when the channel refused the event (and
  drops it); we answer with an Avro error, so the OG sink sees the failure and retries. Flume
  renders `fields` values with ByteBuffer.toString(); we decode them as UTF-8 like thriftLegacy.
* `thriftLegacy`: `oneway append` over an unframed binary Thrift stream. One-way calls have no
  answer to refuse with, so a full channel stops the reading of that connection until the
  channel takes the events (Flume drops them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeflume_agent.config.keys import key, positive_integer
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.avro_rpc import (
    AvroProtocol,
    Call,
    Responder,
    Session,
    http_buffers,
    parse_http_buffers,
)
from kubeflume_agent.protocols.framing import FrameError, decode_budget
from kubeflume_agent.protocols.thrift_rpc import FLUME_OG, INCOMPLETE, PROTOCOLS, read_call, text, write_reply
from kubeflume_agent.sources.base import HostPortKeys, ListeningSource
from kubeflume_agent.sources.http_server import HttpRequest, HttpResponse, HttpServer, http_server_for
from kubeflume_agent.sources.tcp_server import (
    DEFAULT_MAX_REQUEST_BYTES,
    Connection,
    ConnectionKeys,
    Outcome,
    TcpServer,
    deliver_call,
    deliver_until_accepted,
    server_for,
)

# OG calls carry one event: thousands of `fields` decode, millions (a hostile message) do not.
MAX_READS_PER_CALL = decode_budget(1_000)
_PRIORITY_NAMES = {value: name for name, value in vars(FLUME_OG.Priority).items() if isinstance(value, int)}

@dataclass(frozen=True)
class LegacySourceConfig(HostPortKeys, ConnectionKeys):
    max_request_bytes: int = key("max-request-bytes", positive_integer, DEFAULT_MAX_REQUEST_BYTES,
                                 doc="largest request accepted")


def og_event(body: bytes, host: str | None, timestamp: int, priority: str, nanos: int,
             fields: dict[Any, Any] | None) -> Event:
    headers = {"host": text(host or ""), "timestamp": str(timestamp), "pri": priority, "nanos": str(nanos)}
    for name, value in (fields or {}).items():
        headers[text(name)] = text(value)
    headers["FlumeOG"] = "yes"
    return Event(body or b"", headers)


def og_avro_event(call: Call) -> Event:
    """The event of an OG avro `append` call."""
    assert call.params is not None, "a call that is not a handshake reply has params"
    evt = call.params["evt"]
    return og_event(evt["body"], evt["host"], evt["timestamp"], evt["priority"], evt["nanos"], evt["fields"])


def decode_og_stream(buffer: bytes, factory) -> tuple[list[Event], list[bytes], bytes]:
    """Every complete OG Thrift message in `buffer`: (events, replies to two-way calls, the rest)."""
    events, replies = [], []
    service = FLUME_OG.ThriftFlumeEventServer
    while buffer:
        try:
            call, used = read_call(buffer, factory, service, MAX_READS_PER_CALL)
        except INCOMPLETE:
            break
        buffer = buffer[used:]
        if call.name == "append" and call.args is not None and call.args.evt is not None:
            evt = call.args.evt
            events.append(og_event(evt.body, evt.host, evt.timestamp or 0,
                                   _PRIORITY_NAMES.get(evt.priority, "INFO"), evt.nanos or 0, evt.fields))
        elif call.name == "close" and call.args is not None:
            replies.append(write_reply(factory, service, call, None))
        else:
            raise FrameError(f"unexpected call {call.name!r}")
    return events, replies, buffer


class OgStream:
    """A thriftLegacy connection's framer: (events, replies) of the whole OG messages each read
    completes; a message still incomplete past `limit` bytes is refused."""

    __slots__ = ("_buffer", "factory", "limit")

    def __init__(self, factory, limit: int) -> None:
        self.factory = factory
        self.limit = limit
        self._buffer = b""

    @property
    def partial(self) -> bool:
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[tuple[list[Event], list[bytes]]]:
        events, replies, self._buffer = decode_og_stream(self._buffer + data, self.factory)
        if len(self._buffer) > self.limit:
            raise FrameError(f"a message longer than {self.limit} bytes")
        return [(events, replies)] if events or replies else []

    def flush(self) -> list[tuple[list[Event], list[bytes]]]:
        return []


class AvroLegacySource(ListeningSource[LegacySourceConfig]):
    def __init__(self, name: str, config: LegacySourceConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.responder = Responder(AvroProtocol.packaged("FlumeOGEventAvroServer"), MAX_READS_PER_CALL)
        self.server: HttpServer = http_server_for(self, self._handle, self.config,
                                                  max_body=self.config.max_request_bytes)

    async def _handle(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(405, headers=[("Allow", "POST")])
        try:
            call = self.responder.read_call(parse_http_buffers(request.body), Session())
        except FrameError as error:
            self.server.refused(400, request.remote, error)
            return HttpResponse.text(400, str(error))
        if call.reply is not None:
            reply = call.reply
        else:
            outcome = await deliver_call(self, [og_avro_event(call)], single=True)
            reply = (self.responder.response(call, None) if outcome == Outcome.STORED
                     else self.responder.error(call, "event not stored: channel refused it"))
        return HttpResponse(200, http_buffers(reply), "avro/binary")


class ThriftLegacySource(ListeningSource[LegacySourceConfig]):
    def __init__(self, name: str, config: LegacySourceConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.factory = PROTOCOLS["binary"]
        self.server: TcpServer = server_for(self, self._framer, self._handle, self.config)

    def _framer(self, connection: Connection) -> OgStream:
        return OgStream(self.factory, self.config.max_request_bytes)

    async def _handle(self, connection: Connection, messages: list[tuple[list[Event], list[bytes]]]) -> bool:
        """Store the events of one read (one-way calls: backpressure while the channel is full), then
        answer its `close` calls."""
        for events, replies in messages:
            if events and not await deliver_until_accepted(self, events, self.server.stopped):
                return False
            if replies:
                await connection.send(b"".join(replies))
        return True
