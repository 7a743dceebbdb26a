"""Flume's `logger` sink (LoggerSink): every event logged at INFO, for trying out a pipeline.

Each line is what Flume's EventHelper.dumpEvent prints, so logs read the same after a move:
`Event: { headers:{k=v} body: 68 65 6C 6C 6F ... hello }`, a Commons IO hex dump of the first
`maxBytesToLog` body bytes (16 to a row, printable ASCII beside it) without the first row's offset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from kubeflume_agent.config.keys import key, non_negative_integer
from kubeflume_agent.core.channel import Channel
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.serializers import java_map_string
from kubeflume_agent.sinks.base import Sink, SinkKeys

log = logging.getLogger(__name__)

ROW_BYTES = 16
FIRST_OFFSET = "00000000"
# bytes.translate table: printable ASCII stays, everything else becomes "." (as Commons IO HexDump)
PRINTABLE = bytes(b if 32 <= b < 127 else ord(".") for b in range(256))


def hex_dump(data: bytes) -> str:
    """Commons IO `HexDump.dump(data, 0, out, 0)` as Flume trims it: no first offset, no last newline."""
    rows = []
    for start in range(0, len(data), ROW_BYTES):
        row = data[start:start + ROW_BYTES]
        hex_part = "".join(f"{byte:02X} " for byte in row) + "   " * (ROW_BYTES - len(row))
        rows.append(f"{start:08X} {hex_part}{row.translate(PRINTABLE).decode('ascii')}")
    return "\n".join(rows).removeprefix(FIRST_OFFSET)


def dump_event(event: Event, max_bytes: int) -> str:
    """Flume's EventHelper.dumpEvent: headers as Java's Map.toString, then the body's hex dump."""
    return f"{{ headers:{java_map_string(event.headers)} body:{hex_dump(event.body[:max_bytes])} }}"


@dataclass(frozen=True)
class LoggerSinkConfig(SinkKeys):
    max_bytes: int = key("maxBytesToLog", non_negative_integer, 16, doc="body bytes shown in each event's hex dump")


class LoggerSink(Sink[LoggerSinkConfig]):
    """Flume's `logger` sink: logs each event at INFO (headers and a hex dump of the body's start)."""

    def __init__(self, name: str, config: LoggerSinkConfig, channel: Channel) -> None:
        super().__init__(name, config, channel)
        self.max_bytes = self.config.max_bytes

    async def write(self, events: Sequence[Event]) -> None:
        # Formatting is the whole cost of this sink: skip it when INFO is off, as log4j would.
        if not log.isEnabledFor(logging.INFO):
            return
        max_bytes = self.max_bytes
        for event in events:
            log.info("Event: %s", dump_event(event, max_bytes))
