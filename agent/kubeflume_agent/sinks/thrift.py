"""Flume's `thrift` sink: `appendBatch` calls to a thrift source over framed transport.

Compact protocol by default, as Flume's ThriftRpcClient; `protocol = binary` for the other.
A batch counts as delivered only when the source answered `OK`. The guide spells the reset
key `connection-reset-interval`; both it and `reset-connection-interval` are read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from kubeflume_agent.config.keys import boolean, key, non_negative_integer, one_of
from kubeflume_agent.core.errors import EventDeliveryError
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.framing import length_prefixed, read_length_prefixed
from kubeflume_agent.protocols.thrift_rpc import FLUME, PROTOCOLS, read_reply, write_call
from kubeflume_agent.sinks.rpc_client import RpcClientConfig, RpcSink

MAX_RESPONSE_BYTES = 1024 * 1024
_STATUS_NAMES = {value: name for name, value in vars(FLUME.Status).items() if isinstance(value, int)}


class ThriftTransport:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, factory) -> None:
        self._reader = reader
        self._writer = writer
        self._factory = factory
        self._seqid = 0

    async def append_batch(self, events: Sequence[Event]) -> None:
        self._seqid += 1
        thrift_events = [FLUME.ThriftFlumeEvent(headers=e.headers, body=e.body) for e in events]
        call = write_call(self._factory, FLUME.ThriftSourceProtocol, "appendBatch", self._seqid,
                          events=thrift_events)
        self._writer.write(length_prefixed(call))
        await self._writer.drain()
        reply = await read_length_prefixed(self._reader, MAX_RESPONSE_BYTES, "Thrift reply")
        status = read_reply(reply, self._factory, FLUME.ThriftSourceProtocol, "appendBatch")
        if status != FLUME.Status.OK:
            raise EventDeliveryError(
                f"next agent answered {_STATUS_NAMES.get(status, status)} to a batch of {len(events)} events")

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


@dataclass(frozen=True)
class ThriftSinkConfig(RpcClientConfig):
    protocol: str = key("protocol", one_of("compact", "binary"), "compact", doc="Thrift protocol of the source")
    connection_reset_interval: int = key("connection-reset-interval", non_negative_integer, 0,
                                         doc="the guide's spelling of reset-connection-interval")
    kerberos: bool = key("kerberos", boolean, False, doc="not supported")
    client_principal: str | None = key("client-principal", str, None, doc="not supported (kerberos)")
    client_keytab: str | None = key("client-keytab", str, None, doc="not supported (kerberos)")
    server_principal: str | None = key("server-principal", str, None, doc="not supported (kerberos)")

    @property
    def reset_seconds(self) -> int:
        return self.reset_connection_interval or self.connection_reset_interval

    def problems(self) -> list[tuple[str, str]]:
        problems = super().problems()
        if self.kerberos:
            problems.append(("kerberos", "Kerberos (SASL) transport is not supported; use ssl"))
        return problems


class ThriftSink(RpcSink[ThriftSinkConfig]):
    def __init__(self, name: str, config: ThriftSinkConfig, channel) -> None:
        super().__init__(name, config, channel)
        self.factory = PROTOCOLS[self.config.protocol]

    async def open_transport(self, host: str, port: int) -> ThriftTransport:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=self.ssl_context, server_hostname=host if self.ssl_context else None,
        )
        return ThriftTransport(reader, writer, self.factory)
