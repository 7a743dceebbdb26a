"""The netcat source over real TCP connections: OK only after commit, Flume's FAILED reply for an
over-long line, backpressure on a full channel, and the counters."""

from __future__ import annotations

import asyncio

import pytest
from source_harness import collect, memory_channel, running_source, take_all, wait_for

from kubeflume_agent.config.keys import Config
from kubeflume_agent.interceptors.base import Interceptor

TOO_LONG = b"FAILED: Event exceeds the maximum length (%d chars, including newline)\n"


def params(**extra: str) -> dict[str, str]:
    return {"bind": "127.0.0.1", "port": "0", **extra}


async def connect(source) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", source.bound_ports[0])


async def read_replies(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    return [await asyncio.wait_for(reader.readline(), 20) for _ in range(count)]


async def test_each_line_is_an_event_answered_ok_in_order():
    async with running_source("netcat", params()) as (source, channel):
        reader, writer = await connect(source)
        writer.write(b"first\nsecond\r\n\nthird\n")
        assert await read_replies(reader, 4) == [b"OK\n"] * 4
        events = await take_all(channel)
        assert [e.body for e in events] == [b"first", b"second\r", b"", b"third"]
        assert all(e.headers == {} for e in events)
        assert (source.counters.events_received, source.counters.events_accepted) == (4, 4)
        writer.close()


async def test_ok_is_sent_only_for_lines_already_in_the_channel():
    async with running_source("netcat", params()) as (source, channel):
        reader, writer = await connect(source)
        for i in range(50):
            writer.write(b"line %d\n" % i)
            await writer.drain()
            assert await read_replies(reader, 1) == [b"OK\n"]
            assert channel.size == i + 1
        writer.close()


async def test_a_line_over_max_line_length_is_answered_failed_and_closes_the_connection_as_in_flume():
    # 10 characters including the LF: 9 characters fit, 10 do not.
    async with running_source("netcat", params(**{"max-line-length": "10"})) as (source, channel):
        reader, writer = await connect(source)
        writer.write(b"123456789\n1234567890\nafter\n")
        assert await read_replies(reader, 2) == [b"OK\n", TOO_LONG % 10]
        assert await reader.read() == b""  # closed: nothing after the long line is read
        assert [e.body for e in await take_all(channel)] == [b"123456789"]
        assert source.counters.event_read_fail == 1
        writer.close()


async def test_an_endless_line_is_refused_while_it_arrives():
    async with running_source("netcat", params(**{"max-line-length": "100"})) as (source, channel):
        reader, writer = await connect(source)
        writer.write(b"x" * 5000)
        assert await read_replies(reader, 1) == [TOO_LONG % 100]
        assert await reader.read() == b""
        assert await take_all(channel) == []
        writer.close()


async def test_max_line_length_counts_characters_not_bytes():
    async with running_source("netcat", params(**{"max-line-length": "5"})) as (source, channel):
        reader, writer = await connect(source)
        writer.write("ääää\nåååååå\n".encode())  # 4 and 6 characters, 8 and 12 bytes
        assert await read_replies(reader, 2) == [b"OK\n", TOO_LONG % 5]
        assert [e.body for e in await take_all(channel)] == ["ääää".encode()]
        writer.close()


async def test_without_ack_every_event_only_failures_are_answered():
    config = params(**{"ack-every-event": "false", "max-line-length": "6"})
    async with running_source("netcat", config) as (source, channel):
        reader, writer = await connect(source)
        writer.write(b"one\ntwo\n")
        assert [e.body for e in await collect(channel, 2)] == [b"one", b"two"]
        writer.write(b"too long\n")
        assert await reader.read() == TOO_LONG % 6  # and no OK was ever sent
        writer.close()


@pytest.mark.parametrize(("encoding", "mark", "codec"), [
    ("UTF-16", b"\xfe\xff", "utf-16-be"),  # Java's UTF-16 writer: a big-endian BOM, once
    ("UTF-16LE", b"", "utf-16-le"),
    ("UTF-32", b"", "utf-32-be"),
])
async def test_a_wide_encoding_is_read_counted_and_answered_in_that_encoding(encoding, mark, codec):
    async with running_source("netcat", params(encoding=encoding, **{"max-line-length": "6"})) as (source, ch):
        reader, writer = await connect(source)
        sent = "héllo\nwörld\n".encode(codec)
        for offset in range(0, len(sent), 3):  # characters cut across reads
            writer.write(sent[offset:offset + 3])
            await writer.drain()
        ok = "OK\n".encode(codec)
        assert await reader.readexactly(len(mark) + 2 * len(ok)) == mark + ok + ok
        writer.write("toolong\n".encode(codec))  # 8 characters with its LF, over 6
        assert await reader.read() == (TOO_LONG % 6).decode().encode(codec)
        assert [e.body for e in await take_all(ch)] == ["héllo".encode(), "wörld".encode()]


async def test_utf16_without_a_byte_order_mark_is_big_endian_as_in_java():
    async with running_source("netcat", params(encoding="UTF-16")) as (source, channel):
        reader, writer = await connect(source)
        writer.write("ok\n".encode("utf-16-be"))
        assert await reader.readexactly(8) == b"\xfe\xff" + "OK\n".encode("utf-16-be")
        assert [e.body for e in await take_all(channel)] == [b"ok"]
        writer.close()


class Doubling(Interceptor):
    """A user's interceptor that makes two events of each: more than a transaction may hold."""

    def __init__(self) -> None:
        super().__init__(Config())

    def intercept(self, events):
        return [copy for event in events for copy in (event, event)]


class Failing(Interceptor):
    """A user's interceptor whose lookup service is down."""

    def __init__(self) -> None:
        super().__init__(Config())

    def intercept(self, events):
        raise RuntimeError("lookup service down")


@pytest.mark.parametrize(("interceptor", "reason"), [
    (Doubling(), b"FAILED: Put queue for transaction of capacity 4 full"),
    (Failing(), b"FAILED: lookup service down"),
])
async def test_a_channel_error_that_is_not_full_is_answered_failed_line_by_line_and_the_connection_goes_on(
        interceptor, reason):
    channel = memory_channel(capacity=100, transaction_capacity=4)
    async with running_source("netcat", params(), channel, interceptors=[interceptor]) as (source, _):
        reader, writer = await connect(source)
        writer.write(b"a\nb\nc\n")
        replies = await read_replies(reader, 3)
        assert all(reply.startswith(reason) for reply in replies), replies
        assert await take_all(channel) == []
        writer.write(b"d\n" if isinstance(interceptor, Doubling) else b"")
        if isinstance(interceptor, Doubling):
            assert await read_replies(reader, 1) == [b"OK\n"]  # the same connection serves on
            assert [e.body for e in await take_all(channel)] == [b"d", b"d"]
        writer.close()


async def test_bodies_are_stored_as_utf8_whatever_the_encoding():
    async with running_source("netcat", params(encoding="ISO-8859-1")) as (source, channel):
        reader, writer = await connect(source)
        writer.write("café\n".encode("latin-1"))
        assert await read_replies(reader, 1) == [b"OK\n"]
        assert [e.body for e in await take_all(channel)] == ["café".encode()]
        writer.close()


async def test_a_last_line_without_newline_is_stored_when_the_client_closes():
    async with running_source("netcat", params()) as (source, channel):
        reader, writer = await connect(source)
        writer.write(b"complete\nunterminated")
        writer.write_eof()
        assert await read_replies(reader, 2) == [b"OK\n", b"OK\n"]
        assert [e.body for e in await take_all(channel)] == [b"complete", b"unterminated"]


async def test_a_full_channel_stops_reading_and_every_ok_line_is_in_the_channel():
    channel = memory_channel(capacity=100, transaction_capacity=100, keep_alive="0.05")
    async with running_source("netcat", params(), channel) as (source, channel):
        reader, writer = await connect(source)
        lines = [b"event %05d" % i for i in range(1000)]
        writer.write(b"".join(line + b"\n" for line in lines))
        await wait_for(lambda: channel.size == 100, what="a full channel")
        await wait_for(lambda: source.counters.channel_write_fail, what="a put refused by the full channel")
        assert await read_replies(reader, 100) == [b"OK\n"] * 100
        assert source.counters.events_accepted == 100  # answered exactly what was stored, and it stored no more
        stored = [e.body for e in await take_all(channel)]
        while len(stored) < len(lines):  # the sink side makes room: the rest comes in, in order
            await wait_for(lambda: channel.size, what="more lines after the channel had room")
            stored += [e.body for e in await take_all(channel)]
        assert stored == lines
        writer.write_eof()
        assert await read_replies(reader, 900) == [b"OK\n"] * 900
        assert await asyncio.wait_for(reader.read(), 20) == b""  # no OK without its stored line
        writer.close()


async def test_stopping_during_backpressure_acknowledges_nothing_more():
    channel = memory_channel(capacity=10, transaction_capacity=10, keep_alive="0.05")
    async with running_source("netcat", params(), channel) as (source, channel):
        reader, writer = await connect(source)
        writer.write(b"".join(b"%d\n" % i for i in range(50)))
        assert await read_replies(reader, 10) == [b"OK\n"] * 10
        await wait_for(lambda: source.counters.channel_write_fail, what="the channel to refuse")
        await source.stop()
        assert await asyncio.wait_for(reader.read(), 20) == b""  # closed without another OK
        assert channel.size == 10


async def test_many_idle_connections_do_not_block_a_busy_one():
    async with running_source("netcat", params()) as (source, _):
        idle = [await connect(source) for _ in range(50)]
        reader, writer = await connect(source)
        writer.write(b"through\n")
        assert await read_replies(reader, 1) == [b"OK\n"]
        await wait_for(lambda: source.counters.open_connections == 51, what="51 open connections")
        for _, idle_writer in [*idle, (reader, writer)]:
            idle_writer.close()


@pytest.mark.parametrize("bad", [{"port": "99999"}, {"max-line-length": "0"}, {"ack-every-event": "maybe"},
                                 {"encoding": "no-such-charset"}])
def test_bad_settings_are_reported(bad):
    from kubeflume_agent.config.keys import resolve
    from kubeflume_agent.core.registry import lookup

    _, problems = resolve(lookup("source", "netcat").config_class, {**params(), **bad})
    assert [p.key for p in problems if p.severity == "error"] == list(bad)
