"""Flume's `avro` sink: `appendBatch` calls to the next agent's avro source (ours or Flume's).

Speaks Avro IPC exactly as Flume's NettyAvroRpcClient does (handshake on the first call of a
connection, Netty framing, optional whole-stream deflate), so it also feeds a Java Flume tier.
A batch counts as delivered only when the next agent answered `OK`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from kubeflume_agent.config.keys import InvalidValue, integer, key, one_of
from kubeflume_agent.core.errors import EventDeliveryError
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.avro_rpc import (
    AvroProtocol,
    Deflater,
    InflatingReader,
    Requestor,
    netty_frame,
    read_netty_frame,
)
from kubeflume_agent.sinks.rpc_client import RpcClientConfig, RpcSink

_PROTOCOL = AvroProtocol.packaged("AvroSourceProtocol")
MAX_RESPONSE_BYTES = 1024 * 1024


def compression_level(text: str) -> int:
    value = integer(text)
    if not 0 <= value <= 9:
        raise InvalidValue(f"expected a compression level from 0 to 9, got {text!r}")
    return value


class AvroTransport:
    """One Avro IPC connection; calls are sequential, serials count up from 1 as in Java."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, level: int | None) -> None:
        self._writer = writer
        self._reader = InflatingReader(reader) if level is not None else reader
        self._deflate = Deflater(level) if level is not None else None
        self._requestor = Requestor(_PROTOCOL)
        self._serial = 0

    async def append_batch(self, events: Sequence[Event]) -> None:
        params = {"events": [{"headers": event.headers, "body": event.body} for event in events]}
        status = await self._call("appendBatch", params)
        if status != "OK":
            raise EventDeliveryError(f"next agent answered {status} to a batch of {len(events)} events")

    async def _call(self, name: str, params: dict) -> object:
        while True:
            self._serial += 1
            frame = netty_frame(self._serial, self._requestor.request(name, params))
            self._writer.write(self._deflate(frame) if self._deflate else frame)
            await self._writer.drain()
            serial, payload = await read_netty_frame(self._reader, MAX_RESPONSE_BYTES)
            if serial != self._serial:
                raise EventDeliveryError(f"answer to call {serial} while waiting for {self._serial}")
            answered, value = self._requestor.read_response(name, payload)
            if answered:
                return value

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


@dataclass(frozen=True)
class AvroSinkConfig(RpcClientConfig):
    compression_type: str = key("compression-type", one_of("none", "deflate"), "none",
                                doc="deflate must match the source")
    compression_level: int = key("compression-level", compression_level, 6, doc="deflate level 0-9")


class AvroSink(RpcSink[AvroSinkConfig]):
    def __init__(self, name: str, config: AvroSinkConfig, channel) -> None:
        super().__init__(name, config, channel)
        self.level = self.config.compression_level if self.config.compression_type == "deflate" else None

    async def open_transport(self, host: str, port: int) -> AvroTransport:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=self.ssl_context, server_hostname=host if self.ssl_context else None,
        )
        return AvroTransport(reader, writer, self.level)
