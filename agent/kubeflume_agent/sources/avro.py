"""Flume's `avro` source: AvroSourceProtocol (`append`, `appendBatch`) over Avro IPC Netty framing.

Log4j appenders, the Flume SDK and upstream Flume agents' avro sinks connect unchanged. Each call
is one channel transaction; the answer is `OK` only after it committed, otherwise `FAILED` (a
full channel, an interceptor that raised: as Flume; the SDK raises EventDeliveryException and
the client retries).

Bounds against hostile clients: `max-request-bytes` per call (after inflating, with deflate) and
`max-batch-events` per call (a larger batch is answered `FAILED`; one that would decode into
far more values than that many events carry closes the connection); an oversized or
undecodable frame closes that connection only, with a log line and an EventReadFail.

Unlike Flume, a call whose strings are not valid UTF-8 is undecodable here and closes the
connection (Java's decoder replaces the bad bytes); Java clients always send valid UTF-8.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from kubeflume_agent.config.keys import (
    boolean,
    key,
    one_of,
    positive_integer,
)
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols import tls
from kubeflume_agent.protocols.accelerators import compiled
from kubeflume_agent.protocols.avro_rpc import (
    AvroProtocol,
    Call,
    InflatingNettyFramer,
    NettyFramer,
    Responder,
)
from kubeflume_agent.protocols.framing import decode_budget
from kubeflume_agent.protocols.ipfilter import IpFilter, IpRule, parse_rules
from kubeflume_agent.sources.base import ListeningSource
from kubeflume_agent.sources.rpc_keys import RpcSourceKeys
from kubeflume_agent.sources.tcp_server import (
    DEFAULT_MAX_REQUEST_BYTES,
    Connection,
    Outcome,
    deliver_call,
    server_for,
)


@dataclass(frozen=True)
class AvroSourceConfig(RpcSourceKeys):
    compression_type: str = key("compression-type", one_of("none", "deflate"), "none",
                                doc="deflate must match the client")
    ip_filter: bool = key("ipFilter", boolean, False, doc="apply ipFilterRules to connecting clients")
    ip_filter_rules: tuple[IpRule, ...] = key("ipFilterRules", parse_rules, (),
                                              doc="allow|deny:ip|name:pattern, comma-separated")
    max_request_bytes: int = key("max-request-bytes", positive_integer, DEFAULT_MAX_REQUEST_BYTES,
                                 doc="largest call accepted (bytes); larger frames close the connection")

    def problems(self) -> list[tuple[str, str]]:
        problems = tls.validate_server(self)
        if self.ip_filter and not self.ip_filter_rules:
            problems.append(("ipFilterRules", "ipFilter is on but no rules are given"))
        return problems


class AvroSource(ListeningSource[AvroSourceConfig]):
    protocol_name = "AvroSourceProtocol"

    def __init__(self, name: str, config: AvroSourceConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.max_batch_events = config.max_batch_events
        self.responder = Responder(AvroProtocol.packaged(self.protocol_name), decode_budget(self.max_batch_events),
                                   batch_reader=_compiled_batch_reader())
        self.deflate = config.compression_type == "deflate"
        self.max_request_bytes = config.max_request_bytes
        self.server = server_for(
            self, self._framer, self._handle, config, ssl_context=tls.server_context(config),
            ip_filter=IpFilter(config.ip_filter_rules) if config.ip_filter else None,
        )

    def _framer(self, connection: Connection) -> NettyFramer:
        return (InflatingNettyFramer if self.deflate else NettyFramer)(self.max_request_bytes)

    async def _handle(self, connection: Connection, frames: list[tuple[int, bytes]]) -> bool:
        """Answer each call in order (with deflate, also those the framer inflates meanwhile)."""
        stream = cast(NettyFramer, connection.framer)
        while frames:
            for serial, payload in frames:
                call = self.responder.read_call(payload, stream.session)
                reply = call.reply if call.reply is not None else await self._answer(call)
                await connection.send(stream.frame(serial, reply))
            frames = stream.more()
        return True

    async def _answer(self, call: Call) -> bytes:
        assert call.message is not None, "a call the responder did not answer itself names its message"
        single = call.message.name == "append"
        outcome = await deliver_call(self, avro_events(call), single=single, max_events=self.max_batch_events)
        return self.responder.response(call, "OK" if outcome == Outcome.STORED else "FAILED")


def avro_events(call: Call) -> list[Event]:
    """The events of an `append` or `appendBatch` call of AvroSourceProtocol."""
    if call.events is not None:
        return call.events
    assert call.message is not None and call.params is not None, "a call to answer has its message and params"
    if call.message.name == "append":
        return [_event(call.params["event"])]
    return [_event(e) for e in call.params["events"]]


def _compiled_batch_reader() -> Callable[[bytes], list[Event] | None] | None:
    """The compiled appendBatch reader (protocols/_rpc_fast.pyx), or None to decode with fastavro."""
    read = compiled("_rpc_fast", "avro_append_batch")
    return None if read is None else partial(read, event_type=Event)


def _event(record: dict[str, Any]) -> Event:
    return Event(record["body"], record["headers"])
