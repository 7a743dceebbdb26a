"""Flume's `netcat` source: every LF-terminated line on a TCP connection is one event.

Each stored line is answered `OK` (unless `ack-every-event = false`), and only after the channel
transaction holding it has committed, so an `OK` is an acknowledgement a client can rely on.

As in Flume (NetcatSource):
* `encoding` is the charset of the whole conversation: lines are read in it (UTF-16 and UTF-32
  too, with Java's reading of byte order marks), `max-line-length` counts its characters, and the
  `OK`/`FAILED` replies are written in it; event bodies are the lines in UTF-8;
* a line over `max-line-length` is answered `FAILED: Event exceeds the maximum length (N chars,
  including newline)` and the connection is closed (nothing after that line is read or stored);
* when the channel fails with an error other than being full, every line of that transaction is
  answered `FAILED: <the error>` and the connection goes on (and so when an interceptor raises,
  where Flume's handler thread dies without an answer).

Differences from Flume, on purpose:
* a full channel is backpressure: the connection is not read until the channel takes the lines
  (Flume answers `FAILED` and drops them), so nothing is lost and nothing is answered early; a
  client that waits for each answer with a read timeout sees that timeout instead of `FAILED`;
* lines are handled in batches (one transaction per read), which is what makes it fast;
* a last line without LF when the client closes is stored too;
* `reusePort` lets several agent processes share the port (SO_REUSEPORT) to use more cores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from kubeflume_agent.config.keys import (
    boolean,
    charset,
    key,
    positive_integer,
)
from kubeflume_agent.core.batches import batches
from kubeflume_agent.core.errors import ChannelError, ChannelFull
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.java_charsets import java_encoder
from kubeflume_agent.protocols.lines import TOO_LONG, BoundedLineSplitter, TextLineSplitter, splits_at_lf_byte
from kubeflume_agent.sources.base import BindPortKeys, ListeningSource
from kubeflume_agent.sources.tcp_server import (
    Connection,
    ConnectionKeys,
    Framer,
    TcpServer,
    deliver_until_accepted,
    server_for,
)

log = logging.getLogger(__name__)

STOPPING = object()  # what `_deliver` returns when the source stops before the channel took the lines


@dataclass(frozen=True)
class NetcatSourceConfig(BindPortKeys, ConnectionKeys):
    max_line_length: int = key(
        "max-line-length", positive_integer, 512,
        doc="longest line in characters of `encoding`, counting its LF; a longer one closes the connection")
    ack_every_event: bool = key("ack-every-event", boolean, True, doc="answer OK for every stored line")
    encoding: str = key("encoding", charset, "utf-8",
                        doc="charset of the lines and of the replies; bodies are stored as UTF-8")


class NetcatSource(ListeningSource[NetcatSourceConfig]):
    """Lines of text over TCP, each answered `OK` once stored. A full channel is backpressure: the
    connection is not read until the channel has room, so a client waiting for `OK` with a read
    timeout sees that timeout where Flume would answer `FAILED` and drop the line."""

    def __init__(self, name: str, config: NetcatSourceConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.max_line_length = config.max_line_length
        self.ack = config.ack_every_event
        self.encoding = config.encoding
        self.reply_codec, self.reply_mark = java_encoder(self.encoding)
        self.ok = self._encode("OK\n") if self.ack else b""
        self.too_long_reply = self._encode(
            f"FAILED: Event exceeds the maximum length ({self.max_line_length} chars, including newline)\n")
        self.byte_lines = splits_at_lf_byte(self.encoding)
        self.server: TcpServer = server_for(self, self._framer, self._store_and_answer, config)

    def _encode(self, reply: str) -> bytes:
        return reply.encode(self.reply_codec, "replace")

    def _framer(self, connection: Connection) -> Framer:
        """The line splitter of a new connection (whose replies begin with a byte order mark in
        UTF-16, as Java's writer begins its stream)."""
        if self.reply_mark:
            connection.write(self.reply_mark)
        if self.byte_lines:
            return BoundedLineSplitter(self.max_line_length, self.encoding)
        return TextLineSplitter(self.max_line_length, self.encoding)

    async def _store_and_answer(self, connection: Connection, lines: Sequence[bytes | None]) -> bool:
        """Store the lines of one read, then answer them in order, one channel transaction at a
        time, so a client under backpressure still hears about what is stored. False: the
        connection ends (the source stops, or a line was too long)."""
        for chunk in batches(lines, self.processor.max_batch):
            too_long = TOO_LONG in chunk
            if too_long:
                chunk = chunk[:chunk.index(TOO_LONG)]
            outcome = await self._deliver(cast(Sequence[bytes], chunk)) if chunk else None  # no TOO_LONG left
            if outcome is STOPPING:
                return False
            reply = self._encode(f"FAILED: {outcome}\n") * len(chunk) if outcome else self.ok * len(chunk)
            if too_long:
                self.counters.event_read_fail += 1
                self.warnings.warn(log, "line-too-long", "%s: closing connection from %s: a line longer than %d "
                                   "characters", self.name, connection.peer_ip, self.max_line_length)
                await connection.send(reply + self.too_long_reply)
                return False
            if reply:
                await connection.send(reply)
        return True

    async def _deliver(self, lines: Sequence[bytes]) -> str | object | None:
        """Store `lines`: None once stored, STOPPING, or the error every line is answered FAILED with."""
        try:
            stored = await deliver_until_accepted(self, self._events(lines), self.server.stopped, retry=ChannelFull)
        except ChannelError as error:
            failure = str(error)
        except Exception as error:  # an interceptor that raised (Flume's handler thread dies)
            self.counters.generic_processing_fail += 1
            failure = str(error) or type(error).__name__
        else:
            return None if stored else STOPPING
        self.warnings.warn(log, "channel-error", "%s: %d lines answered FAILED: %s", self.name, len(lines), failure)
        return " ".join(failure.split()) or "channel error"

    def _events(self, lines: Sequence[bytes]) -> list[Event]:
        """One event per line; bodies are UTF-8."""
        if self.byte_lines and self.encoding != "utf-8":
            lines = [line.decode(self.encoding, "replace").encode() for line in lines]
        return list(map(Event, lines))
