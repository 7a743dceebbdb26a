"""syslogtcp, syslogudp and multiport_syslogtcp against real senders (util-linux `logger`) and raw
sockets, with the headers Flume 1.11 would produce."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time

import pytest

from tests.integration.source_harness import collect, memory_channel, running_source, take_all, wait_for
from tests.network import free_port
from tests.tls import tls_files

pytestmark = pytest.mark.timeout(60)

HOST = socket.gethostname().split(".")[0]


def logger(*args: str) -> None:
    subprocess.run(["logger", "-t", "app", "-p", "local3.warning", *args], check=True, timeout=20)


def local_millis(stamp: str, fraction_ms: int = 0) -> str:
    """What java.text.SimpleDateFormat makes of a zone-less local time."""
    return str(int(time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))) * 1000 + fraction_ms)


async def send_tcp(port: int, payload: bytes, **kwargs) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port, **kwargs)
    writer.write(payload)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_logger_rfc3164_over_tcp_gives_flume_headers():
    async with running_source("syslogtcp", {"host": "127.0.0.1", "port": "0"}) as (source, channel):
        before = time.time()
        await asyncio.to_thread(logger, "--rfc3164", "-n", "127.0.0.1", "-P", str(source.bound_ports[0]),
                                "-T", "hello world")
        [event] = await collect(channel, 1)
    assert event.body == b"app: hello world"
    stamp = int(event.headers.pop("timestamp"))
    assert int(before) * 1000 - 1000 <= stamp <= time.time() * 1000 + 1000  # logger's clock, whole seconds
    assert event.headers == {"Facility": "19", "Severity": "4", "priority": "156", "host": HOST}
    assert source.counters.events_accepted == 1


@pytest.mark.parametrize("framing", [[], ["--octet-count"]], ids=["lf", "octet-counted"])
async def test_logger_rfc5424_over_tcp(framing):
    async with running_source("syslogtcp", {"host": "127.0.0.1", "port": "0"}) as (source, channel):
        await asyncio.to_thread(logger, "--rfc5424", *framing, "-n", "127.0.0.1",
                                "-P", str(source.bound_ports[0]), "-T", "first")
        await asyncio.to_thread(logger, "--rfc5424", *framing, "-n", "127.0.0.1",
                                "-P", str(source.bound_ports[0]), "-T", "second")
        events = await collect(channel, 2)
    assert [e.body for e in events] == [
        b'app - - [timeQuality tzKnown="1" isSynced="0"] first',
        b'app - - [timeQuality tzKnown="1" isSynced="0"] second',
    ]
    for event in events:
        assert {k: v for k, v in event.headers.items() if k != "timestamp"} == {
            "Facility": "19", "Severity": "4", "priority": "156", "version": "1", "host": HOST}
        assert event.headers["timestamp"].isdigit()


async def test_exact_rfc5424_timestamp_rules_over_tcp():
    """Flume's quirks, end to end: a fraction is milliseconds and makes the zone ignored."""
    lines = (b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 - An application event\n"
             b"<165>1 2003-08-24T05:14:15.52-07:00 192.0.2.1 myproc 8710 - - %% It's time\n"
             b"<165>1 2003-08-24T05:14:15-07:00 host1 myproc - - - no fraction\n"
             b"<165>1 - - - - - - nil stamp and host\n")
    async with running_source("syslogtcp", {"host": "127.0.0.1", "port": "0"}) as (source, channel):
        await send_tcp(source.bound_ports[0], lines)
        events = await collect(channel, 4)
    assert [e.headers.get("timestamp") for e in events] == [
        local_millis("2003-10-11T22:14:15", 3),
        local_millis("2003-08-24T05:14:15", 52),
        "1061727255000",  # zone honoured without a fraction: 12:14:15Z
        None,
    ]
    assert [e.headers.get("host") for e in events] == ["mymachine.example.com", "192.0.2.1", "host1", None]
    assert [e.body for e in events] == [b"evntslog - ID47 - An application event", b"myproc 8710 - - %% It's time",
                                        b"myproc - - - no fraction", b"- - - - nil stamp and host"]


async def test_invalid_incomplete_and_crlf_lines():
    payload = (b"no priority here\n"
               b"<13>not a syslog format\n"
               b"<13>Nov 22 05:40:03 host app: a line far longer than the event size\n"
               b"<13>Nov 22 05:40:03 host crlf\r\n")
    async with running_source("syslogtcp", {"host": "127.0.0.1", "port": "0", "eventSize": "40"}) as (
            source, channel):
        await send_tcp(source.bound_ports[0], payload)
        events = await collect(channel, 5)
    invalid, unparsed, cut, rest, crlf = events
    assert (invalid.headers, invalid.body) == (
        {"Facility": "0", "Severity": "0", "flume.syslog.status": "Invalid"}, b"no priority here")
    assert (unparsed.headers, unparsed.body) == ({"Facility": "1", "Severity": "5"}, b"<13>not a syslog format")
    assert cut.body == b"app: a line far"  # the first 40 bytes of the line, parsed
    assert cut.headers["flume.syslog.status"] == "Incomplete"
    assert cut.headers["host"] == "host" and cut.headers["priority"] == "13"
    assert rest.headers["flume.syslog.status"] == "Invalid"
    assert rest.body == b" longer than the event size"
    assert crlf.body == b"<13>Nov 22 05:40:03 host crlf\r"  # Java's `.` stops at \r: no format matches
    assert "host" not in crlf.headers


@pytest.mark.parametrize(("keep", "body"), [
    ("all", b"<13>1 2003-10-11T22:14:15Z web1 app - - msg"),
    ("priority hostname", b"<13>web1 app - - msg"),
    ("version timestamp", b"1 2003-10-11T22:14:15Z app - - msg"),
    ("none", b"app - - msg"),
])
async def test_keep_fields(keep, body):
    params = {"host": "127.0.0.1", "port": "0", "keepFields": keep}
    async with running_source("syslogtcp", params) as (source, channel):
        await send_tcp(source.bound_ports[0], b"<13>1 2003-10-11T22:14:15Z web1 app - - msg\n")
        [event] = await collect(channel, 1)
    assert event.body == body


async def test_client_ip_header_and_hostname_header():
    params = {"host": "127.0.0.1", "port": "0", "clientIPHeader": "ip", "clientHostnameHeader": "peer"}
    async with running_source("syslogtcp", params) as (source, channel):
        await send_tcp(source.bound_ports[0], b"<13>Nov 22 05:40:03 host app: x\n")
        [event] = await collect(channel, 1)
    assert event.headers["ip"] == "127.0.0.1"
    assert event.headers["peer"] == socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)[0]


@pytest.mark.parametrize(("kind", "params"), [("syslogtcp", {"host": "127.0.0.1", "port": "0"}),
                                            ("multiport_syslogtcp", {"host": "127.0.0.1", "ports": "0"})])
async def test_full_channel_stops_reading_and_loses_nothing(kind, params):
    """Flume drops events on a full channel; we stop reading the socket and retry the batch."""
    channel = memory_channel(capacity=50, transaction_capacity=50, keep_alive="0.05")
    count = 2000
    payload = b"".join(b"<13>Nov 22 05:40:03 host app: seq=%d\n" % i for i in range(count))
    async with running_source(kind, params, channel) as (source, _):
        sender = asyncio.create_task(send_tcp(source.bound_ports[0], payload))
        await wait_for(lambda: source.counters.channel_write_fail > 0, what="a refused batch")
        assert channel.size == 50
        received = []
        while len(received) < count:
            received += await take_all(channel)
            await asyncio.sleep(0.01)
        await sender
    assert [e.body for e in received] == [b"app: seq=%d" % i for i in range(count)]
    assert source.counters.events_accepted == count
    assert source.counters.events_received == count  # counted once, however often a batch was retried


async def test_idle_connections_do_not_block_others_and_huge_lines_are_bounded():
    async with running_source("syslogtcp", {"host": "127.0.0.1", "port": "0", "eventSize": "100"}) as (
            source, channel):
        port = source.bound_ports[0]
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(100)]
        await wait_for(lambda: source.counters.open_connections == 100, what="100 idle connections")
        await send_tcp(port, b"x" * 100_000)  # one 100 kB "line" without LF
        await asyncio.to_thread(logger, "--rfc3164", "-n", "127.0.0.1", "-P", str(port), "-T", "still served")
        events = await collect(channel, 1001)
        for _, writer in idle:
            writer.close()
    assert all(len(e.body) <= 100 for e in events)
    assert events[-1].body == b"app: still served"


async def test_tls():
    with tls_files("127.0.0.1") as (cert, key, ca):
        params = {"host": "127.0.0.1", "port": "0", "ssl": "true", "ssl-certfile": cert, "ssl-keyfile": key}
        async with running_source("syslogtcp", params) as (source, channel):
            client = ssl.create_default_context(cafile=ca)
            await send_tcp(source.bound_ports[0], b"<13>Nov 22 05:40:03 host app: secret\n", ssl=client,
                           server_hostname="127.0.0.1")
            [event] = await collect(channel, 1)
    assert event.body == b"app: secret"


@pytest.mark.parametrize(("rfc", "body"), [("--rfc3164", b"app: over udp"),
                                         ("--rfc5424", b'app - - [timeQuality tzKnown="1" isSynced="0"] over udp')])
async def test_logger_over_udp(rfc, body):
    params = {"host": "127.0.0.1", "port": "0", "clientIPHeader": "ip"}
    async with running_source("syslogudp", params) as (source, channel):
        await asyncio.to_thread(logger, rfc, "-n", "127.0.0.1", "-P", str(source.bound_ports[0]), "-d", "over udp")
        [event] = await collect(channel, 1)
    assert event.body == body
    assert event.headers.pop("timestamp").isdigit()
    version = {"version": "1"} if rfc == "--rfc5424" else {}
    assert event.headers == {"Facility": "19", "Severity": "4", "priority": "156", **version, "host": HOST,
                             "ip": "127.0.0.1"}
    assert (source.counters.events_received, source.counters.events_accepted) == (1, 1)


async def test_udp_invalid_datagram_then_a_good_one():
    async with running_source("syslogudp", {"host": "127.0.0.1", "port": "0"}) as (source, channel):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"no priority at all", ("127.0.0.1", source.bound_ports[0]))
            sender.sendto(b"<13>Nov 22 05:40:03 host app: fine", ("127.0.0.1", source.bound_ports[0]))
            bad, good = await collect(channel, 2)
    assert (bad.headers, bad.body) == ({"Facility": "0", "Severity": "0", "flume.syslog.status": "Invalid"},
                                       b"no priority at all")
    assert good.body == b"app: fine" and "flume.syslog.status" not in good.headers


async def test_udp_with_full_channel_queues_then_delivers():
    channel = memory_channel(capacity=10, transaction_capacity=10, keep_alive="0.05")
    async with running_source("syslogudp", {"host": "127.0.0.1", "port": "0"}, channel) as (source, _):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for i in range(30):
                sender.sendto(b"<13>Nov 22 05:40:03 host app: n=%d" % i, ("127.0.0.1", source.bound_ports[0]))
        await wait_for(lambda: source.counters.channel_write_fail > 0, what="a refused batch")
        received = []
        while len(received) < 30:
            received += await take_all(channel)
            await asyncio.sleep(0.01)
    assert sorted(int(e.body.split(b"=")[1]) for e in received) == list(range(30))


async def test_multiport_charsets_port_header_and_parser_headers():
    params = {"host": "127.0.0.1", "ports": "0 0", "portHeader": "port", "charset.default": "UTF-8",
              "batchSize": "10"}
    async with running_source("multiport_syslogtcp", params) as (source, channel):
        utf8_port, latin_port = source.bound_ports
        source._charsets[latin_port] = "iso8859-1"  # charset.port.<port> needs a fixed port number
        await send_tcp(utf8_port, "<14>1 2003-10-11T22:14:15.5+02:00 web1 app - - caf\u00e9\n".encode())
        await wait_for(lambda: channel.size == 1)
        await send_tcp(latin_port, "<14>Nov 22 05:40:03 web2 app: caf\u00e9\n".encode("latin-1"))
        await wait_for(lambda: channel.size == 2)
        await send_tcp(utf8_port, b"<14>Nov 22 05:40:03 web3 app: bad \xff byte\n")
        events = await collect(channel, 3)
    first, second, bad = events
    assert first.headers == {"Priority": "14", "Facility": "1", "Severity": "6", "Version": "1",
                             "timestamp": "1065903255500", "host": "web1", "port": str(utf8_port)}
    assert first.body == "app - - caf\u00e9".encode()
    assert second.headers["host"] == "web2" and second.headers["port"] == str(latin_port)
    assert second.body == "app: caf\u00e9".encode("latin-1")
    assert bad.headers == {"flume.syslog.status": "Invalid", "port": str(utf8_port)}
    assert source.counters.event_read_fail == 1


async def test_multiport_delivers_in_transactions_of_batch_size():
    params = {"host": "127.0.0.1", "ports": "0", "batchSize": "10"}
    lines = b"".join(b"<14>Nov 22 05:40:03 web2 app: n=%d\n" % i for i in range(35))
    async with running_source("multiport_syslogtcp", params) as (source, channel):
        await send_tcp(source.bound_ports[0], lines)  # one write: usually one read of 35 lines
        events = await collect(channel, 35)
    assert [e.body for e in events] == [b"app: n=%d" % i for i in range(35)]
    assert source.counters.append_batch_accepted >= 4  # no transaction above 10 events


async def test_multiport_configured_charset_per_port():
    port = free_port()
    params = {"host": "127.0.0.1", "ports": str(port), f"charset.port.{port}": "ISO-8859-1"}
    async with running_source("multiport_syslogtcp", params) as (_, channel):
        await send_tcp(port, "<14>Nov 22 05:40:03 web2 app: caf\u00e9\n".encode("latin-1"))
        [event] = await collect(channel, 1)
    assert event.body == "app: caf\u00e9".encode("latin-1")
    assert "flume.syslog.status" not in event.headers


async def test_reuse_port_lets_two_sources_share_a_port():
    params = {"host": "127.0.0.1", "port": "0", "reusePort": "true"}
    async with running_source("syslogtcp", params) as (first, _):
        shared = dict(params, port=str(first.bound_ports[0]))
        async with running_source("syslogtcp", shared) as (second, _):
            assert second.bound_ports == first.bound_ports
