"""netcatudp with real datagrams: body up to the first LF, Flume's address header, no loss while
the channel is briefly full."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from kubeflume_agent.core.counters import SourceCounters
from kubeflume_agent.core.log_limit import RateLimitedWarnings
from kubeflume_agent.sources.udp_server import UdpServer
from tests.integration.source_harness import collect, memory_channel, running_source, take_all, wait_for

pytestmark = pytest.mark.timeout(60)


def sender() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.mark.parametrize("key", ["remoteAddress", "remoteAddressHeader"])
async def test_datagram_to_event_with_address_header(key):
    async with running_source("netcatudp", {"bind": "127.0.0.1", "port": "0", key: "from"}) as (source, channel):
        with sender() as sock:
            sock.sendto(b"hello\nignored rest", ("127.0.0.1", source.bound_ports[0]))
            sock.sendto(b"no newline", ("127.0.0.1", source.bound_ports[0]))
            events = await collect(channel, 2)
            address = f"/127.0.0.1:{sock.getsockname()[1]}"
    assert [(e.body, e.headers) for e in events] == [
        (b"hello", {"from": address}), (b"no newline", {"from": address})]


async def test_without_address_key_there_are_no_headers():
    async with running_source("netcatudp", {"bind": "127.0.0.1", "port": "0"}) as (source, channel):
        with sender() as sock:
            sock.sendto(b"x" * 60000, ("127.0.0.1", source.bound_ports[0]))  # beyond Netty's 2048 bytes
            [event] = await collect(channel, 1)
    assert event.headers == {} and len(event.body) == 60000


async def test_full_channel_is_retried_not_dropped():
    channel = memory_channel(capacity=5, transaction_capacity=5, keep_alive="0.05")
    async with running_source("netcatudp", {"bind": "127.0.0.1", "port": "0"}, channel) as (source, _):
        with sender() as sock:
            for i in range(20):
                sock.sendto(b"%d" % i, ("127.0.0.1", source.bound_ports[0]))
        await wait_for(lambda: source.counters.channel_write_fail > 0, what="a refused batch")
        received = []
        while len(received) < 20:
            received += await take_all(channel)
            await asyncio.sleep(0.01)
    assert sorted(int(e.body) for e in received) == list(range(20))


async def test_what_waits_for_a_full_channel_is_bounded_in_bytes():
    """A flood of large datagrams while the channel is full: beyond max_pending_bytes they are
    dropped and counted (UDP cannot push back), the rest is delivered once there is room."""
    channel = memory_channel(capacity=1, transaction_capacity=1, keep_alive="0.05")
    async with running_source("netcatudp", {"bind": "127.0.0.1", "port": "0"}, channel) as (source, _):
        source.server.max_pending_bytes = 5000
        with sender() as sock:
            for i in range(50):
                sock.sendto(b"%02d" % i + b"x" * 998, ("127.0.0.1", source.bound_ports[0]))
        await wait_for(lambda: source.counters.channel_write_fail >= 40, what="the flood to be dropped")
        assert source.server.pending_bytes <= 5000
        received = []
        while source.server.pending_bytes:
            received += await take_all(channel)
            await asyncio.sleep(0.01)
        received += await take_all(channel)
    assert 1 <= len(received) <= 7  # one in the channel, one in flight, at most five waiting
    assert all(len(e.body) == 1000 for e in received)


async def test_one_wake_up_takes_every_datagram_the_socket_holds():
    """An event loop's own UDP transport reads 1 (asyncio) or 32 (uvloop) datagrams per wake-up;
    a flood then overflows the kernel's buffer while the loop parses and writes."""
    async def no_events(datagrams):
        return []

    async def deliver(events, stopped):
        return True

    server = UdpServer("r1", SourceCounters(), no_events, deliver, batch_size=1000, warnings=RateLimitedWarnings())
    (port,) = await server.start("127.0.0.1", [0])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for i in range(500):
                client.sendto(b"line %d" % i, ("127.0.0.1", port))
        server._read_all()  # before the event loop gets a turn
        assert [payload for payload, _, _ in server._pending] == [b"line %d" % i for i in range(500)]
    finally:
        await server.stop()


async def test_datagrams_that_cannot_become_events_are_counted_and_their_log_is_rate_limited(caplog):
    """A sender can make every datagram fail at will: each batch is counted, but only the first few
    failures are logged (with their traceback), so the log cannot be flooded through it."""
    async def failing(datagrams):
        raise ValueError("cannot parse")

    async def deliver(events, stopped):
        return True

    counters = SourceCounters()
    server = UdpServer("r1", counters, failing, deliver, batch_size=1,
                       warnings=RateLimitedWarnings(burst=3, window=3600))
    (port,) = await server.start("127.0.0.1", [0])
    try:
        with caplog.at_level(logging.WARNING, logger="kubeflume_agent.sources.udp_server"), sender() as sock:
            for i in range(50):
                sock.sendto(b"bad %d" % i, ("127.0.0.1", port))
            await wait_for(lambda: counters.event_read_fail == 50)
    finally:
        await server.stop()
    failures = [r for r in caplog.records if "could not turn" in r.getMessage()]
    assert len(failures) == 3 and all(r.exc_info and r.exc_info[0] is ValueError for r in failures)


async def test_a_backlog_longer_than_a_batch_goes_out_in_order_in_batch_sized_pieces():
    """The consumer takes `batch_size` datagrams off the front of the backlog at a time."""
    made: list[list[bytes]] = []

    async def events_of(datagrams):
        made.append([payload for payload, _, _ in datagrams])
        return []

    async def deliver(events, stopped):
        return True

    server = UdpServer("r1", SourceCounters(), events_of, deliver, batch_size=3, warnings=RateLimitedWarnings())
    (port,) = await server.start("127.0.0.1", [0])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for i in range(8):
                client.sendto(b"line %d" % i, ("127.0.0.1", port))
        server._read_all()  # all 8 queued before the consumer gets a turn
        await wait_for(lambda: sum(map(len, made)) == 8, what="every datagram made into events")
        assert [len(batch) for batch in made] == [3, 3, 2]
        assert [payload for batch in made for payload in batch] == [b"line %d" % i for i in range(8)]
        assert server.pending_bytes == 0
    finally:
        await server.stop()
