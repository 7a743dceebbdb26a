"""Flume OG clients: the thriftLegacy source fed by the Apache Thrift library exactly as an OG
thrift sink writes (unframed binary, oneway append), and the avroLegacy source fed Avro IPC over
HTTP by curl."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TMessageType, TType
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TBufferedTransport

from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.avro_rpc import AvroProtocol, Requestor, http_buffers, parse_http_buffers
from tests.integration.source_harness import collect, memory_channel, running_source, take_all, wait_for

pytestmark = pytest.mark.timeout(60)

INFO, ERROR = 3, 1


def write_og_append(p: TBinaryProtocol, body: bytes, priority: int, fields: dict[str, bytes]) -> None:
    p.writeMessageBegin("append", TMessageType.ONEWAY, 0)
    p.writeStructBegin("append_args")
    p.writeFieldBegin("evt", TType.STRUCT, 1)
    p.writeStructBegin("ThriftFlumeEvent")
    for name, ttype, fid, value, write in (
        ("timestamp", TType.I64, 1, 1_300_000_000_123, p.writeI64),
        ("priority", TType.I32, 2, priority, p.writeI32),
        ("body", TType.STRING, 3, body, p.writeBinary),
        ("nanos", TType.I64, 4, 42, p.writeI64),
        ("host", TType.STRING, 5, "oghost", p.writeString),
    ):
        p.writeFieldBegin(name, ttype, fid)
        write(value)
        p.writeFieldEnd()
    p.writeFieldBegin("fields", TType.MAP, 6)
    p.writeMapBegin(TType.STRING, TType.STRING, len(fields))
    for key, value in fields.items():
        p.writeString(key)
        p.writeBinary(value)
    p.writeMapEnd()
    p.writeFieldEnd()
    p.writeFieldStop()
    p.writeStructEnd()
    p.writeFieldEnd()
    p.writeFieldStop()
    p.writeStructEnd()
    p.writeMessageEnd()


def og_thrift_send(port: int, count: int) -> None:
    transport = TBufferedTransport(TSocket("127.0.0.1", port))
    transport.open()
    p = TBinaryProtocol(transport)
    try:
        for i in range(count):
            write_og_append(p, b"og %d" % i, INFO if i % 2 == 0 else ERROR, {"app": b"web", "n": b"%d" % i})
            transport.flush()
        p.writeMessageBegin("close", TMessageType.CALL, 1)  # close() is two-way: wait for its reply
        p.writeStructBegin("close_args")
        p.writeFieldStop()
        p.writeStructEnd()
        p.writeMessageEnd()
        transport.flush()
        assert p.readMessageBegin() == ("close", TMessageType.REPLY, 1)
    finally:
        transport.close()


def og_headers(i: int) -> dict[str, str]:
    return {"host": "oghost", "timestamp": "1300000000123", "pri": "INFO" if i % 2 == 0 else "ERROR",
            "nanos": "42", "app": "web", "n": str(i), "FlumeOG": "yes"}


async def test_thrift_legacy_og_events():
    async with running_source("thriftLegacy", {"host": "127.0.0.1", "port": "0"}) as (source, channel):
        await asyncio.to_thread(og_thrift_send, source.bound_ports[0], 3)
        events = await collect(channel, 3)
    assert events == [Event(b"og %d" % i, og_headers(i)) for i in range(3)]


async def test_thrift_legacy_full_channel_stops_reading_instead_of_dropping():
    full = memory_channel(capacity=5, transaction_capacity=5, keep_alive="0.05")
    async with running_source("thriftLegacy", {"host": "127.0.0.1", "port": "0"}, full) as (source, _):
        sending = asyncio.create_task(asyncio.to_thread(og_thrift_send, source.bound_ports[0], 40))
        await wait_for(lambda: source.counters.channel_write_fail > 0, what="a refused batch")
        received = []
        while len(received) < 40:
            received += await take_all(full)
            await asyncio.sleep(0.01)
        await sending
    assert [e.body for e in received] == [b"og %d" % i for i in range(40)]


async def test_thrift_legacy_garbage_closes_the_connection():
    async with running_source("thriftLegacy", {"host": "127.0.0.1", "port": "0"}) as (source, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        writer.write(b"\x80\x01\x00\x01\x00\x00\x00\x03bad\x00\x00\x00\x01\x00")  # an unknown call
        assert await reader.read() == b""
        writer.close()
    assert source.counters.event_read_fail == 1


def og_avro_request(body: bytes) -> bytes:
    """What an OG avro sink POSTs: a handshake and the `append` call in Avro's HTTP framing."""
    requestor = Requestor(AvroProtocol.packaged("FlumeOGEventAvroServer"))
    event = {"timestamp": 1_300_000_000_123, "priority": "WARN", "body": body, "nanos": 7, "host": "oghost",
             "fields": {"app": b"web"}}
    return http_buffers(requestor.request("append", {"evt": event}))


async def curl_post(url: str, path) -> tuple[int, bytes]:
    def run():
        done = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-H", "Content-Type: avro/binary",
                               "--data-binary", f"@{path}", url], capture_output=True, check=True, timeout=30)
        body, _, status = done.stdout.rpartition(b"\n")
        return int(status), body
    return await asyncio.to_thread(run)


async def test_avro_legacy_over_http(tmp_path):
    request = tmp_path / "request.bin"
    request.write_bytes(og_avro_request(b"from og"))
    async with running_source("avroLegacy", {"host": "127.0.0.1", "port": "0"}) as (source, channel):
        status, answer = await curl_post(f"http://127.0.0.1:{source.bound_ports[0]}/", request)
        [event] = await collect(channel, 1)
    assert status == 200
    assert parse_http_buffers(answer) == b"\x00\x00\x00\x00" + b"\x00\x00"  # BOTH; no meta, no error, null
    assert event == Event(b"from og", {"host": "oghost", "timestamp": "1300000000123", "pri": "WARN", "nanos": "7",
                                       "app": "web", "FlumeOG": "yes"})


async def test_avro_legacy_full_channel_is_an_avro_error(tmp_path):
    request = tmp_path / "request.bin"
    request.write_bytes(og_avro_request(b"x"))
    full = memory_channel(capacity=1, transaction_capacity=1, keep_alive="0.05")
    async with running_source("avroLegacy", {"host": "127.0.0.1", "port": "0"}, full) as (source, _):
        url = f"http://127.0.0.1:{source.bound_ports[0]}/"
        assert parse_http_buffers((await curl_post(url, request))[1]).endswith(b"\x00\x00")
        refused = parse_http_buffers((await curl_post(url, request))[1])
    assert refused[4:6] == b"\x00\x01"  # after the handshake: no meta, error flag set
    assert b"channel refused" in refused
    assert full.size == 1


async def test_avro_legacy_garbage_is_a_400_and_counted(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(http_buffers(b"\xff" * 20))
    async with running_source("avroLegacy", {"host": "127.0.0.1", "port": "0"}) as (source, channel):
        url = f"http://127.0.0.1:{source.bound_ports[0]}/"
        status, _ = await curl_post(url, garbage)
        assert status == 400
        good = tmp_path / "good.bin"
        good.write_bytes(og_avro_request(b"still served"))
        assert (await curl_post(url, good))[0] == 200
        [event] = await collect(channel, 1)
    assert event.body == b"still served"
    assert source.counters.event_read_fail == 1
