"""Flume's scribe source: Scribe's `Log(list<LogEntry>)` over framed binary Thrift.

Each LogEntry becomes one event (body = message, header `category`); one call is one channel
transaction, answered `OK` after the commit and `TRY_LATER` when anything failed (Scribe
senders then buffer and retry). Replies use the old unversioned message header, as Flume's
lenient binary protocol does. A call of more than `max-batch-events` entries is answered
`TRY_LATER` and not stored (a sender should split it); frames above `maxReadBufferBytes` and
messages that would decode into far more values close that connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeflume_agent.config.keys import declared_key, key, port_number, positive_integer
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.framing import LengthPrefixedFramer, decode_budget
from kubeflume_agent.protocols.thrift_rpc import SCRIBE, SCRIBE_PROTOCOL, ThriftCall, text
from kubeflume_agent.sources.base import BindPortKeys, ListeningSource
from kubeflume_agent.sources.tcp_server import (
    MAX_BATCH_EVENTS_KEY,
    Connection,
    ConnectionKeys,
    Outcome,
    deliver_call,
    server_for,
)
from kubeflume_agent.sources.thrift import answer_frames


def _bytes(value: str | bytes | None) -> bytes:
    """A message's bytes: as sent (thriftpy2 keeps what is not UTF-8 as bytes)."""
    if value is None:
        return b""
    return value if isinstance(value, bytes) else value.encode()


def scribe_events(call: ThriftCall) -> list[Event]:
    """One event per LogEntry of a `Log` call: body = message, header `category`."""
    events = []
    for entry in call.args.messages or []:
        headers = {} if entry.category is None else {"category": text(entry.category)}
        events.append(Event(_bytes(entry.message), headers))
    return events


@dataclass(frozen=True)
class ScribeSourceConfig(BindPortKeys, ConnectionKeys):
    port: int = key("port", port_number, 1499)
    bind: str = key("bind", str, "0.0.0.0", doc="address to bind (Flume binds every interface)")
    max_read_buffer_bytes: int = key("maxReadBufferBytes", positive_integer, 16384000, doc="largest frame accepted")
    worker_threads: int = key("workerThreads", positive_integer, 5, doc="accepted for Flume compatibility; unused")
    max_batch_events: int = declared_key(MAX_BATCH_EVENTS_KEY)


class ScribeSource(ListeningSource[ScribeSourceConfig]):
    def __init__(self, name: str, config: ScribeSourceConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.max_reads = decode_budget(self.config.max_batch_events)
        self.server = server_for(self, self._framer, self._handle, self.config)

    def _framer(self, connection: Connection) -> LengthPrefixedFramer:
        return LengthPrefixedFramer(self.config.max_read_buffer_bytes, "Thrift frame")

    async def _handle(self, connection: Connection, frames: list[bytes]) -> bool:
        return await answer_frames(connection, frames, SCRIBE_PROTOCOL, SCRIBE.Scribe, self.max_reads, self._answer)

    async def _answer(self, call: ThriftCall) -> int:
        if call.args.messages is None:
            return SCRIBE.ResultCode.TRY_LATER
        outcome = await deliver_call(self, scribe_events(call), max_events=self.config.max_batch_events)
        return SCRIBE.ResultCode.OK if outcome == Outcome.STORED else SCRIBE.ResultCode.TRY_LATER
