"""Flume's `netcat` source: every LF-terminated line on a TCP connection is one event.

Each stored line is answered `OK` (unless `ack-every-event = false`), and only after the channel
transaction holding it has committed, so an `OK` is an acknowledgement a client can rely on. A
line over `max-line-length` is answered `FAILED: Event exceeds the maximum length ...`, as in
Flume, and nothing of it is stored.

Differences from Flume, on purpose:
* a full channel is backpressure: the connection is not read until the channel takes the lines
  (Flume answers `FAILED` and drops them), so nothing is lost and nothing is answered early;
* lines are handled in batches (one transaction per read), which is what makes it fast;
* a last line without LF when the client closes is stored too;
* `reusePort` lets several agent processes share the port (SO_REUSEPORT) to use more cores.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from kubeflume_agent.config.keys import Key, Settings, boolean, charset, port_number, positive_integer
from kubeflume_agent.event import Event
from kubeflume_agent.protocols.lines import TOO_LONG, BoundedLineSplitter
from kubeflume_agent.sources.base import REUSE_PORT_KEY, ListeningSource
from kubeflume_agent.sources.tcp_server import (
    CONNECTION_KEYS,
    READ_SIZE,
    Connection,
    deliver_until_accepted,
    server_for,
)

log = logging.getLogger(__name__)

OK = b"OK\n"


class NetcatSource(ListeningSource):
    keys: ClassVar = (
        Key("bind", str, required=True, doc="address to bind"),
        Key("port", port_number, required=True),
        Key("max-line-length", positive_integer, 512, doc="longest line in characters, counting its LF"),
        Key("ack-every-event", boolean, True, doc="answer OK for every stored line"),
        Key("encoding", charset, "utf-8", doc="charset of the received text; bodies are stored as UTF-8"),
        REUSE_PORT_KEY,
        *CONNECTION_KEYS,
    )

    def __init__(self, name: str, settings: Settings, processor) -> None:
        super().__init__(name, settings, processor)
        self.max_line_length: int = settings["max-line-length"]
        self.ack = settings["ack-every-event"]
        self.encoding: str = settings["encoding"]
        self.too_long_reply = (
            f"FAILED: Event exceeds the maximum length ({self.max_line_length} chars, including newline)\n"
        ).encode()
        self.server = server_for(self, self._serve)

    async def _serve(self, connection: Connection) -> None:
        splitter = BoundedLineSplitter(self.max_line_length, self.encoding)
        read = connection.read
        while connection.open:
            data = await read(READ_SIZE, midway=splitter.partial)
            lines = splitter.feed(data) if data else splitter.flush()
            if lines:
                connection.busy = True
                if not await self._store_and_answer(lines, connection):
                    return
                connection.busy = False
            if not data:
                return

    async def _store_and_answer(self, lines: list[bytes | None], connection: Connection) -> bool:
        """Store the lines of one read, then answer them in order, one channel transaction at a
        time, so a client under backpressure still hears about what is stored. False: stopping."""
        step = self.processor.max_batch
        for start in range(0, len(lines), step):
            chunk = lines[start:start + step] if len(lines) > step else lines
            events = self._events(chunk)
            refused = len(chunk) - len(events)
            if refused:
                self.counters.event_read_fail += refused
                log.warning("%s: refused %d lines from %s longer than %d characters", self.name, refused,
                            connection.peer_ip, self.max_line_length)
            if events and not await deliver_until_accepted(self, events, self.server.stopped):
                return False
            reply = self._replies(chunk, refused)
            if reply:
                await connection.send(reply)
        return True

    def _events(self, lines: list[bytes | None]) -> list[Event]:
        """One event per line that was not refused; bodies are UTF-8."""
        if TOO_LONG in lines:
            lines = [line for line in lines if line is not TOO_LONG]
        if self.encoding != "utf-8":
            lines = [line.decode(self.encoding, "replace").encode() for line in lines]
        return list(map(Event, lines))

    def _replies(self, lines: list[bytes | None], refused: int) -> bytes:
        if not refused:
            return OK * len(lines) if self.ack else b""
        ok = OK if self.ack else b""
        return b"".join(self.too_long_reply if line is TOO_LONG else ok for line in lines)
