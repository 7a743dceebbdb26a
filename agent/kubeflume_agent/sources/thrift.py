"""Flume's `thrift` source: ThriftSourceProtocol (`append`, `appendBatch`) over framed transport.

Compact protocol by default (as Flume's source and SDK client), `protocol = binary` for the
binary one. `OK` is answered only after the channel committed; `FAILED` when it refused.
Frames above `max-request-bytes` or that do not decode close that connection only.
Kerberos (`kerberos = true`, SASL transport) is not supported; the config check says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kubeflume_agent.config.keys import (
    boolean,
    key,
    one_of,
    positive_integer,
)
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols import tls
from kubeflume_agent.protocols.framing import FrameError, LengthPrefixedFramer, decode_budget, length_prefixed
from kubeflume_agent.protocols.thrift_rpc import (
    FLUME,
    INCOMPLETE,
    PROTOCOLS,
    ThriftCall,
    compact_batch_reader,
    read_call,
    text,
    write_reply,
    write_unknown_method,
)
from kubeflume_agent.sources.base import ListeningSource
from kubeflume_agent.sources.rpc_keys import RpcSourceKeys
from kubeflume_agent.sources.tcp_server import (
    DEFAULT_MAX_REQUEST_BYTES,
    Connection,
    Outcome,
    deliver_call,
    server_for,
)

Answer = Callable[[ThriftCall], Awaitable[Any]]
BatchReader = Callable[[bytes, int], ThriftCall | None]


async def answer_frames(connection: Connection, frames: list[bytes], factory, service, max_reads: int,
                        answer: Answer, *, batch_reader: BatchReader | None = None) -> bool:
    """Answer the framed Thrift calls of one read, in order; `answer` returns the result value of a
    known method. What a frame decodes into is bounded by `max_reads` (framing.decode_budget).
    `batch_reader` reads a usual appendBatch straight into events, or returns None for any frame it
    does not read (then thriftpy2 reads it)."""
    for frame in frames:
        call = decode_frame(frame, factory, service, max_reads, batch_reader)
        if call.args is None and call.events is None:
            reply = write_unknown_method(factory, call)
        else:
            reply = write_reply(factory, service, call, await answer(call))
        await connection.send(length_prefixed(reply))
    return True


def decode_frame(frame: bytes, factory, service, max_reads: int, batch_reader: BatchReader | None = None
                 ) -> ThriftCall:
    """The one call a frame holds (read by `batch_reader` first, if given and if it can); FrameError
    if the frame holds less, or no Thrift message."""
    call = batch_reader(frame, max_reads) if batch_reader is not None else None
    if call is not None:
        return call
    try:
        return read_call(frame, factory, service, max_reads)[0]
    except INCOMPLETE as error:
        raise FrameError(f"Thrift message cut short by its frame: {error!r}") from error


def thrift_events(call: ThriftCall) -> list[Event]:
    """The events of an `append` or `appendBatch` call of ThriftSourceProtocol."""
    if call.events is not None:
        return call.events
    if call.name == "append":
        return [flume_event(call.args.event)]
    return [flume_event(e) for e in call.args.events or []]


def flume_event(thrift_event: Any) -> Event:
    if thrift_event is None:
        raise FrameError("null event")
    headers = {text(key): text(value) for key, value in (thrift_event.headers or {}).items()}
    return Event(thrift_event.body or b"", headers)


@dataclass(frozen=True)
class ThriftSourceConfig(RpcSourceKeys):
    protocol: str = key("protocol", one_of("compact", "binary"), "compact", doc="Thrift protocol of the clients")
    max_request_bytes: int = key("max-request-bytes", positive_integer, DEFAULT_MAX_REQUEST_BYTES,
                                 doc="largest frame accepted; larger ones close the connection")
    kerberos: bool = key("kerberos", boolean, False, doc="not supported")
    agent_principal: str | None = key("agent-principal", str, None, doc="not supported (kerberos)")
    agent_keytab: str | None = key("agent-keytab", str, None, doc="not supported (kerberos)")

    def problems(self) -> list[tuple[str, str]]:
        problems = tls.validate_server(self)
        if self.kerberos:
            problems.append(("kerberos", "Kerberos (SASL) transport is not supported; use ssl"))
        return problems


class ThriftSource(ListeningSource[ThriftSourceConfig]):
    def __init__(self, name: str, config: ThriftSourceConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.factory = PROTOCOLS[config.protocol]
        self.batch_reader = compact_batch_reader() if config.protocol == "compact" else None
        self.max_reads = decode_budget(config.max_batch_events)
        self.server = server_for(self, self._framer, self._handle, config, ssl_context=tls.server_context(config))

    def _framer(self, connection: Connection) -> LengthPrefixedFramer:
        return LengthPrefixedFramer(self.config.max_request_bytes, "Thrift frame")

    async def _handle(self, connection: Connection, frames: list[bytes]) -> bool:
        return await answer_frames(connection, frames, self.factory, FLUME.ThriftSourceProtocol, self.max_reads,
                                   self._answer, batch_reader=self.batch_reader)

    async def _answer(self, call: ThriftCall) -> int:
        single = call.name == "append"
        outcome = await deliver_call(self, thrift_events(call), single=single,
                                     max_events=self.config.max_batch_events)
        return FLUME.Status.OK if outcome == Outcome.STORED else FLUME.Status.FAILED
