"""The agent's own HTTP/1.1 server (sources/http_server.py) through the http source, over real
sockets: pipelining, chunked bodies, 100-continue, the bounds (head, body, readTimeout,
maxConnections), TLS, a graceful stop; and the metrics server's bounds."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from kubeflume_agent.core.event import Event
from kubeflume_agent.runtime.metrics import MetricsServer
from tests.integration.source_harness import collect, running_source, take_all, wait_for
from tests.network import free_port
from tests.tls import tls_files

pytestmark = pytest.mark.timeout(60)

LOCAL = {"bind": "127.0.0.1", "port": "0"}


def post(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{header}\r\n" for header in headers)
    return (f"POST / HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def events_body(*bodies: str) -> bytes:
    return ("[" + ",".join(f'{{"body": "{body}"}}' for body in bodies) + "]").encode()


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-cased names, body) of one response with a Content-Length
    (`head`: the answer to a HEAD request, which has no body)."""
    status_line = await reader.readline()
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b"" if head else await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def connect(source, **options) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", source.bound_ports[0], **options)


async def test_pipelined_requests_are_answered_in_order():
    async with running_source("http", LOCAL) as (source, channel):
        reader, writer = await connect(source)
        writer.write(post(events_body("1", "2")) + post(b"[{") + post(events_body("3")))  # one write, three requests
        statuses = [(await read_response(reader))[0] for _ in range(3)]
        writer.close()
        events = await collect(channel, 3)
    assert statuses == [200, 400, 200]
    assert [e.body for e in events] == [b"1", b"2", b"3"]


async def test_an_http_1_0_client_is_kept_alive_only_when_it_asks():
    async with running_source("http", LOCAL) as (source, channel):
        reader, writer = await connect(source)
        body = events_body("one")
        writer.write(b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        status, headers, _ = await read_response(reader)
        assert (status, headers["connection"]) == (200, "keep-alive")
        body = events_body("two")
        writer.write(b"POST / HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        status, headers, _ = await read_response(reader)
        assert (status, headers["connection"]) == (200, "close")
        assert await reader.read() == b""
        writer.close()
        assert [e.body for e in await collect(channel, 2)] == [b"one", b"two"]


async def test_a_chunked_body_arriving_in_pieces():
    async with running_source("http", LOCAL) as (source, channel):
        reader, writer = await connect(source)
        body = events_body("chunked", "body")
        writer.write(b"POST / HTTP/1.1\r\nHost: agent\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(body), 7):
            piece = body[start:start + 7]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        status, _, _ = await read_response(reader)
        writer.close()
        events = await collect(channel, 2)
    assert status == 200 and [e.body for e in events] == [b"chunked", b"body"]


async def test_expect_100_continue_is_answered_before_the_body_and_refused_when_too_large():
    async with running_source("http", {**LOCAL, "max-request-bytes": "100"}) as (source, channel):
        reader, writer = await connect(source)
        body = events_body("after continue")
        writer.write(post(body, "Expect: 100-continue")[:-len(body)])
        assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert await reader.readline() == b"\r\n"
        writer.write(body)
        assert (await read_response(reader))[0] == 200
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n")
        status, headers, _ = await read_response(reader)  # no 100 first: the body is not wanted
        assert status == 413 and headers["connection"] == "close"
        assert await reader.read() == b""
        writer.close()
        [event] = await collect(channel, 1)
    assert event.body == b"after continue"
    assert source.counters.event_read_fail == 1


async def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_stored():
    async with running_source("http", {**LOCAL, "max-request-bytes": "64"}) as (source, channel):
        reader, writer = await connect(source)
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(10):
            writer.write(b"10\r\n" + b"x" * 16 + b"\r\n")
        status, _, text = await read_response(reader)
        assert await reader.read() == b""
        writer.close()
        assert await take_all(channel) == []
    assert status == 413 and b"64" in text


async def test_a_request_head_that_never_ends_is_refused_at_the_head_limit():
    params = {**LOCAL, "HttpConfiguration.requestHeaderSize": "1024"}
    async with running_source("http", params) as (source, _):
        reader, writer = await connect(source)
        writer.write(b"POST / HTTP/1.1\r\nX-Endless: ")
        refused = asyncio.ensure_future(reader.read())
        while not refused.done():  # a header that grows without end, one piece at a time
            writer.write(b"a" * 100)
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.close()
    assert refused.result().startswith(b"HTTP/1.0 400")
    assert source.counters.event_read_fail == 1


async def test_slow_headers_are_answered_408_closed_and_counted_while_an_idle_connection_is_not_counted():
    async with running_source("http", {**LOCAL, "readTimeout": "0.5"}) as (source, channel):
        slow_reader, slow = await connect(source)
        idle_reader, idle = await connect(source)
        slow.write(b"POST / HTTP/1.1\r\nHost: agent\r\nX-Slow: a")
        answer = await slow_reader.read()
        assert answer.startswith(b"HTTP/1.1 408") and b"readTimeout" in answer
        assert await idle_reader.read() == b""  # kept alive with nothing begun: closed, not counted
        good_reader, good = await connect(source)
        good.write(post(events_body("still served")))
        assert (await read_response(good_reader))[0] == 200
        for writer in (slow, idle, good):
            writer.close()
        assert [e.body for e in await collect(channel, 1)] == [b"still served"]
    assert source.counters.read_timeouts == 1
    assert source.counters.event_read_fail == 0


async def test_max_connections_closes_the_longest_open_idle_connection():
    async with running_source("http", {**LOCAL, "maxConnections": "2"}) as (source, channel):
        oldest_reader, oldest = await connect(source)
        _, younger = await connect(source)
        await wait_for(lambda: source.counters.open_connections == 2, what="two connections")
        reader, writer = await connect(source)
        writer.write(post(events_body("room was made")))
        assert (await read_response(reader))[0] == 200
        assert await oldest_reader.read() == b""
        for other in (oldest, younger, writer):
            other.close()
        assert [e.body for e in await collect(channel, 1)] == [b"room was made"]
    assert source.counters.connection_limit == 1


async def test_max_connections_refuses_a_newcomer_when_every_connection_is_handing_events_over():
    """No connection is closed while its request is being stored: with all of them busy, the new
    one is refused instead, counted, and the busy ones are answered as usual."""
    params = {**LOCAL, "maxConnections": "2", "handler": "tests.integration.test_http_server.GatedHandler"}
    async with running_source("http", params) as (source, channel):
        busy = []
        for name in ("first", "second"):
            source.handler.entered.clear()
            reader, writer = await connect(source)
            writer.write(post(name.encode()))
            await source.handler.entered.wait()
            busy.append((reader, writer))
        newcomer_reader, newcomer = await connect(source)
        try:
            refused_with = await asyncio.wait_for(newcomer_reader.read(), 10)  # a hang is a failure
        except ConnectionResetError:
            refused_with = b""
        source.handler.gate.set()
        statuses = [(await read_response(reader))[0] for reader, _ in busy]
        for _, writer in busy:
            writer.close()
        newcomer.close()
        events = await collect(channel, 2)
    assert refused_with == b""
    assert statuses == [200, 200]
    assert sorted(e.body for e in events) == [b"first", b"second"]
    assert source.counters.connection_limit == 1


async def test_keep_alive_over_tls():
    with tls_files("127.0.0.1") as (cert, key, ca):
        params = {**LOCAL, "ssl": "true", "ssl-certfile": cert, "ssl-keyfile": key}
        async with running_source("http", params) as (source, channel):
            client = ssl.create_default_context(cafile=ca)
            reader, writer = await connect(source, ssl=client, server_hostname="127.0.0.1")
            for number in range(3):  # one connection, three requests
                writer.write(post(events_body(f"tls {number}")))
                assert (await read_response(reader))[0] == 200
            writer.close()
            events = await collect(channel, 3)
    assert [e.body for e in events] == [b"tls 0", b"tls 1", b"tls 2"]


class GatedHandler:
    """A handler that holds its request until the test opens the gate."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.entered, self.gate = asyncio.Event(), asyncio.Event()

    async def get_events(self, request) -> list[Event]:
        self.entered.set()
        await self.gate.wait()
        return [Event(await request.read())]


async def test_a_stop_lets_the_request_in_flight_finish_and_closes_idle_connections():
    params = {**LOCAL, "handler": "tests.integration.test_http_server.GatedHandler"}
    async with running_source("http", params) as (source, channel):
        reader, writer = await connect(source)
        idle_reader, idle = await connect(source)
        writer.write(post(b"in flight"))
        await source.handler.entered.wait()
        stopping = asyncio.create_task(source.server.stop())
        assert await idle_reader.read() == b""
        source.handler.gate.set()
        status, headers, _ = await read_response(reader)
        await stopping
        writer.close()
        idle.close()
        [event] = await take_all(channel)
    assert status == 200 and headers["connection"] == "close"
    assert event.body == b"in flight"


async def test_requests_after_one_whose_handler_waits_are_answered_after_it_in_order():
    """The first request's answer begins outside any Task; once its handler waits, it goes on in
    one, and the requests pipelined behind it wait their turn."""
    params = {**LOCAL, "handler": "tests.integration.test_http_server.GatedHandler"}
    async with running_source("http", params) as (source, channel):
        reader, writer = await connect(source)
        writer.write(post(b"first") + post(b"second") + post(b"third"))
        await source.handler.entered.wait()
        assert channel.size == 0
        source.handler.gate.set()
        statuses = [(await read_response(reader))[0] for _ in range(3)]
        writer.close()
        events = await collect(channel, 3)
    assert statuses == [200, 200, 200]
    assert [e.body for e in events] == [b"first", b"second", b"third"]


async def test_a_whole_request_whose_handler_waits_past_read_timeout_is_answered_and_kept_alive():
    """readTimeout bounds receiving a request, not answering it: its deadline may pass while the
    handler waits (the channel full), and the answer then comes as any other."""
    params = {**LOCAL, "readTimeout": "0.2", "handler": "tests.integration.test_http_server.GatedHandler"}
    async with running_source("http", params) as (source, channel):
        reader, writer = await connect(source)
        writer.write(post(b"slow to store"))
        await source.handler.entered.wait()
        await asyncio.sleep(0.6)  # the request's deadline, armed at its first byte, passes meanwhile
        source.handler.gate.set()
        first = await read_response(reader)
        writer.write(post(b"next"))
        second = await read_response(reader)
        writer.close()
        events = await collect(channel, 2)
    assert (first[0], second[0]) == (200, 200)
    assert [e.body for e in events] == [b"slow to store", b"next"]
    assert source.counters.read_timeouts == 0


async def test_the_metrics_server_closes_slow_requests_and_caps_its_connections():
    server = MetricsServer(dict, lambda: True, "a1", "127.0.0.1", 0, read_timeout=0.5, max_connections=2)
    await server.start()
    try:
        slow_reader, slow = await asyncio.open_connection("127.0.0.1", server.port)
        slow.write(b"GET /metrics HTTP/1.1\r\nHost: ")
        assert (await slow_reader.read()).startswith(b"HTTP/1.1 408")
        oldest_reader, oldest = await asyncio.open_connection("127.0.0.1", server.port)
        _, younger = await asyncio.open_connection("127.0.0.1", server.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\nHEAD /readyz HTTP/1.1\r\nHost: agent\r\n\r\n")
        status, _, body = await read_response(reader)
        assert (status, body) == (200, b"ok")
        status, headers, _ = await read_response(reader, head=True)
        assert status == 200 and headers["content-length"] == str(len("ready"))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n")  # nothing of the HEAD's body came first
        status, _, body = await read_response(reader)
        assert (status, body) == (200, b"ok")
        assert await oldest_reader.read() == b""
        for writer_ in (slow, oldest, younger, writer):
            writer_.close()
    finally:
        await server.stop()


async def test_reuse_port_lets_two_sources_share_a_port():
    port = str(free_port())
    shared = {"bind": "127.0.0.1", "port": port, "reusePort": "true"}
    async with running_source("http", shared) as (first, first_channel), \
            running_source("http", shared) as (second, second_channel):
        assert first.bound_ports == second.bound_ports == [int(port)]
        for number in range(20):  # a connection each: the kernel picks a listener per connection
            reader, writer = await connect(first)
            writer.write(post(events_body(f"e{number}"), "Connection: close"))
            assert (await read_response(reader))[0] == 200
            writer.close()
        events = await take_all(first_channel) + await take_all(second_channel)
    assert sorted(e.body for e in events) == sorted(f"e{n}".encode() for n in range(20))
