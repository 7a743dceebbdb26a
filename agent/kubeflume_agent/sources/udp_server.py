"""A UDP socket feeding a source in batches (syslogudp, netcatudp).

Datagrams are queued as they arrive and one task turns whatever is queued into a batch of
events and delivers it, retrying while the channel is full. UDP cannot push back on a sender,
so the queue is bounded (`max_pending` datagrams and `max_pending_bytes`, since a datagram may
be 64 KiB): beyond it datagrams are dropped and counted as `ChannelWriteFail`, which is where
Flume counts the events it drops on a full channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from kubeflume_agent.core.batches import take_batch
from kubeflume_agent.core.counters import SourceCounters
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.log_limit import RateLimitedWarnings
from kubeflume_agent.sources.base import Source
from kubeflume_agent.sources.tcp_server import deliver_until_accepted

log = logging.getLogger(__name__)

RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
MAX_PENDING_BYTES = 64 * 1024 * 1024
MAX_DATAGRAM_BYTES = 65535
READS_PER_WAKE_UP = 1000

Datagram = tuple[bytes, str, int]  # payload, sender IP, sender port
MakeEvents = Callable[[list[Datagram]], Awaitable[list[Event]]]
# Store events, retrying while the channel is full; False if the server stopped first.
Deliver = Callable[[list[Event], asyncio.Event], Awaitable[bool]]


class UdpServer:
    """Datagrams of one port to `make_events`, whose events go to `deliver` in batches of `batch_size`."""

    def __init__(self, name: str, counters: SourceCounters, make_events: MakeEvents, deliver: Deliver, *,
                 batch_size: int, warnings: RateLimitedWarnings, reuse_port: bool = False, max_pending: int = 100_000,
                 max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self.name = name
        self.counters = counters
        self.warnings = warnings
        self.make_events = make_events
        self.deliver = deliver
        self.batch_size = batch_size
        self.reuse_port = reuse_port
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.stopped = asyncio.Event()
        self.pending_bytes = 0
        self._pending: deque[Datagram] = deque()  # a flood's backlog: taken from the front in O(batch)
        self._wake = asyncio.Event()
        self._socket: socket.socket | None = None
        self._consumer: asyncio.Task | None = None

    async def start(self, host: str | None, ports: Sequence[int]) -> list[int]:
        """Bind the one port of a UDP source (0 picks a free one); returns it, as TcpServer does."""
        (port,) = ports
        loop = asyncio.get_running_loop()
        family, _, _, _, address = (await loop.getaddrinfo(host or "0.0.0.0", port, type=socket.SOCK_DGRAM))[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            with contextlib.suppress(OSError):  # a larger kernel buffer is a wish, not a need
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            sock.setblocking(False)
            sock.bind(address)
        except BaseException:
            sock.close()
            raise
        self._socket = sock
        loop.add_reader(sock.fileno(), self._read_all)
        self._consumer = asyncio.create_task(self._consume(), name=f"{self.name}-udp")
        return [sock.getsockname()[1]]

    async def stop(self) -> None:
        """Stop receiving, deliver what is queued (unless the channel stays full), then return."""
        if self._socket is not None:
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None
        self.stopped.set()
        self._wake.set()
        if self._consumer is not None:
            await self._consumer

    def _read_all(self) -> None:
        """What the socket holds, up to READS_PER_WAKE_UP datagrams. The event loops' own UDP
        transports take one (asyncio) or 32 (uvloop) datagrams per wake-up: while the loop also
        parses and writes, too few to keep a flood from overflowing the kernel's buffer."""
        if self._socket is None:  # stopped
            return
        receive = self._socket.recvfrom
        for _ in range(READS_PER_WAKE_UP):
            try:
                data, address = receive(MAX_DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # e.g. ICMP port unreachable reported on the socket
                log.debug("%s: UDP error: %s", self.name, error)
                return
            self.received(data, address)

    def received(self, data: bytes, address: tuple) -> None:
        pending = self._pending
        if len(pending) >= self.max_pending or self.pending_bytes + len(data) > self.max_pending_bytes:
            self.counters.channel_write_fail += 1
            return
        pending.append((data, address[0], address[1]))
        self.pending_bytes += len(data)
        if len(pending) == 1:
            self._wake.set()

    async def _consume(self) -> None:
        step = self.batch_size
        while True:
            if not self._pending:
                if self.stopped.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = take_batch(self._pending, step)
            self.pending_bytes -= sum(len(payload) for payload, _, _ in batch)
            try:
                events = await self.make_events(batch)
            except Exception:  # a bug in parsing must not stop the socket, nor a flood of such datagrams fill the log
                self.warnings.warn(log, "bad-datagrams", "%s: could not turn %d datagrams into events", self.name,
                                   len(batch), exc_info=True)
                self.counters.event_read_fail += len(batch)
                continue
            if events and not await self.deliver(events, self.stopped):
                self.counters.channel_write_fail += len(events) + len(self._pending)
                log.warning("%s: stopped with a full channel; %d events not stored",
                            self.name, len(events) + len(self._pending))
                return


def server_for(source: Source, make_events: MakeEvents, *, reuse_port: bool) -> UdpServer:
    """The UDP server of `source`: its `reusePort` key, its channels' batch size, backpressure by retrying."""

    async def deliver(events: list[Event], stopped: asyncio.Event) -> bool:
        return await deliver_until_accepted(source, events, stopped)

    return UdpServer(source.name, source.counters, make_events, deliver, batch_size=source.processor.max_batch,
                     warnings=source.warnings, reuse_port=reuse_port)
