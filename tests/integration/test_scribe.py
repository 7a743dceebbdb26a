"""The scribe source against a Scribe sender written with the Apache Thrift library (framed binary
protocol, as scribe clients use it), byte-checked where Flume's lenient protocol shows."""

from __future__ import annotations

import asyncio
import struct

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TMessageType, TType
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TFramedTransport, TMemoryBuffer

from tests.integration.source_harness import collect, memory_channel, running_source

pytestmark = pytest.mark.timeout(60)

OK, TRY_LATER = 0, 1


def log_call(entries: list[tuple[str | bytes | None, str | bytes]], strict: bool, seqid: int = 1) -> bytes:
    """A `Log(messages)` call encoded by the Apache library."""
    buffer = TMemoryBuffer()
    p = TBinaryProtocol(buffer, strictRead=strict, strictWrite=strict)
    p.writeMessageBegin("Log", TMessageType.CALL, seqid)
    p.writeStructBegin("Log_args")
    p.writeFieldBegin("messages", TType.LIST, 1)
    p.writeListBegin(TType.STRUCT, len(entries))
    for category, message in entries:
        p.writeStructBegin("LogEntry")
        if category is not None:
            p.writeFieldBegin("category", TType.STRING, 1)
            p.writeBinary(category if isinstance(category, bytes) else category.encode())
            p.writeFieldEnd()
        p.writeFieldBegin("message", TType.STRING, 2)
        p.writeBinary(message if isinstance(message, bytes) else message.encode())
        p.writeFieldEnd()
        p.writeFieldStop()
        p.writeStructEnd()
    p.writeListEnd()
    p.writeFieldEnd()
    p.writeFieldStop()
    p.writeStructEnd()
    p.writeMessageEnd()
    return buffer.getvalue()


def send_log(port: int, entries, strict: bool) -> tuple[bytes, int]:
    """(the raw reply, its ResultCode) through the Apache library's framed socket transport."""
    transport = TFramedTransport(TSocket("127.0.0.1", port))
    transport.open()
    try:
        transport.write(log_call(entries, strict))
        transport.flush()
        raw = transport.read(4096)
        p = TBinaryProtocol(TMemoryBuffer(raw), strictRead=False)
        name, message_type, _ = p.readMessageBegin()
        assert (name, message_type) == ("Log", TMessageType.REPLY)
        p.readStructBegin()
        assert p.readFieldBegin()[1:] == (TType.I32, 0)
        return raw, p.readI32()
    finally:
        transport.close()


@pytest.mark.parametrize("strict", [False, True], ids=["unversioned-client", "versioned-client"])
async def test_log_becomes_events_with_category(strict):
    entries = [("access", "GET / 200"), (None, "no category"), ("app", "caf\u00e9")]
    async with running_source("scribe", {"bind": "127.0.0.1", "port": "0"}) as (source, channel):
        raw, code = await asyncio.to_thread(send_log, source.bound_ports[0], entries, strict)
        events = await collect(channel, 3)
    assert code == OK
    assert raw.startswith(struct.pack(">i", 3) + b"Log" + bytes([TMessageType.REPLY]))  # old unversioned header
    assert [(e.headers, e.body) for e in events] == [
        ({"category": "access"}, b"GET / 200"), ({}, b"no category"), ({"category": "app"}, "caf\u00e9".encode())]
    assert source.counters.append_batch_accepted == 1 and source.counters.events_accepted == 3


async def test_full_channel_answers_try_later_and_stores_nothing():
    full = memory_channel(capacity=2, transaction_capacity=10, keep_alive="0.05")
    async with running_source("scribe", {"bind": "127.0.0.1", "port": "0"}, full) as (source, channel):
        _, code = await asyncio.to_thread(send_log, source.bound_ports[0], [("c", "m")] * 3, False)
        assert code == TRY_LATER
        assert channel.size == 0
        _, code = await asyncio.to_thread(send_log, source.bound_ports[0], [("c", "m")] * 2, False)
        assert code == OK
    assert source.counters.channel_write_fail == 1


async def test_garbage_closes_only_that_connection():
    async with running_source("scribe", {"bind": "127.0.0.1", "port": "0"}) as (source, channel):
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        writer.write(struct.pack(">I", 6) + b"\x80\x01\x00\x01\xff\xff")  # a versioned header cut short
        assert await reader.read() == b""
        writer.close()
        _, code = await asyncio.to_thread(send_log, source.bound_ports[0], [("c", "after")], False)
        assert code == OK
        assert len(await collect(channel, 1)) == 1
    assert source.counters.event_read_fail == 1


async def test_oversized_frame_closes_the_connection():
    params = {"bind": "127.0.0.1", "port": "0", "maxReadBufferBytes": "100"}
    async with running_source("scribe", params) as (source, channel):
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        big = log_call([("c", "x" * 200)], False)
        writer.write(struct.pack(">I", len(big)) + big)
        assert await reader.read() == b""
        writer.close()
        _, code = await asyncio.to_thread(send_log, source.bound_ports[0], [("c", "small")], False)
        assert code == OK
        assert len(await collect(channel, 1)) == 1
    assert source.counters.event_read_fail == 1


async def test_bytes_that_are_not_utf8():
    """The message keeps the bytes sent; the category header is text (replacement characters)."""
    async with running_source("scribe", {"bind": "127.0.0.1", "port": "0"}) as (source, channel):
        _, code = await asyncio.to_thread(send_log, source.bound_ports[0], [(b"cat\xff", b"raw \xfe")], False)
        [event] = await collect(channel, 1)
    assert code == OK
    assert (event.headers, event.body) == ({"category": "cat\ufffd"}, b"raw \xfe")


async def test_a_call_above_max_batch_events_is_try_later():
    params = {"bind": "127.0.0.1", "port": "0", "max-batch-events": "2"}
    async with running_source("scribe", params) as (source, channel):
        _, code = await asyncio.to_thread(send_log, source.bound_ports[0], [("c", "m")] * 3, False)
        assert code == TRY_LATER
        assert channel.size == 0
        _, code = await asyncio.to_thread(send_log, source.bound_ports[0], [("c", "m")] * 2, False)
        assert code == OK
        assert len(await collect(channel, 2)) == 2
    assert source.counters.event_read_fail == 1
