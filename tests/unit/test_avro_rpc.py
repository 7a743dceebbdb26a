"""Avro IPC pieces: Flume's protocol identity, the handshake state machine both ways, byte-exact
requests, Netty and HTTP framing limits, and the deflate stream."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from kubeflume_agent.protocols.avro_rpc import (
    AvroProtocol,
    AvroRpcError,
    Deflater,
    InflatingNettyFramer,
    InflatingReader,
    NettyFramer,
    Requestor,
    Responder,
    Session,
    http_buffers,
    netty_frame,
    parse_http_buffers,
    read_netty_frame,
)
from kubeflume_agent.protocols.framing import DecodeBudgetExceeded, FrameError, decode_budget

FLUME = AvroProtocol.packaged("AvroSourceProtocol")


def test_packaged_protocol_has_flumes_md5():
    assert FLUME.md5.hex() == "86aadae2c45474c0fe93ffd0f2350a65"
    assert sorted(FLUME.messages) == ["append", "appendBatch"]


def test_first_request_is_byte_exact():
    request = Requestor(FLUME).request("appendBatch", {"events": [{"headers": {"k": "v"}, "body": b"abc"}]})
    assert request == (FLUME.md5 + b"\x00" + FLUME.md5 + b"\x00"  # handshake: hash, null, hash, null
                       + b"\x00" + b"\x16appendBatch"  # empty call meta, name
                       + b"\x02" + b"\x02\x02k\x02v\x00" + b"\x06abc" + b"\x00")  # one event, end of array


def test_both_match_then_stateful_connection():
    requestor, responder, session = Requestor(FLUME), Responder(FLUME), Session()
    call = responder.read_call(requestor.request("append", {"event": {"headers": {}, "body": b"x"}}), session)
    assert call.handshake == b"\x00\x00\x00\x00"
    assert requestor.read_response("append", responder.response(call, "OK")) == (True, "OK")
    second = requestor.request("append", {"event": {"headers": {}, "body": b"y"}})
    assert second == b"\x00\x0cappend\x00\x02y"  # no handshake once connected
    call = responder.read_call(second, session)
    assert requestor.read_response("append", responder.response(call, "FAILED")) == (True, "FAILED")


def test_unknown_client_gets_none_then_resends_with_its_protocol():
    other = AvroProtocol(FLUME.text.replace("Licensed", "LICENSED"))
    requestor, responder, session = Requestor(other), Responder(FLUME), Session()
    event = {"event": {"headers": {}, "body": b"x"}}
    first = responder.read_call(requestor.request("append", event), session)
    assert first.reply is not None and first.message is None
    assert requestor.read_response("append", first.reply) == (False, None)  # resend with protocol
    second = responder.read_call(requestor.request("append", event), session)
    assert second.handshake == b"\x00\x00\x00\x00"  # BOTH: the client now knows the server's hash
    assert requestor.read_response("append", responder.response(second, "OK")) == (True, "OK")


def test_handshake_ping_and_unknown_message():
    responder, session = Responder(FLUME), Session()
    ping = responder.read_call(FLUME.md5 + b"\x00" + FLUME.md5 + b"\x00" + b"\x00" + b"\x00", session)
    assert ping.reply == b"\x00\x00\x00\x00"
    unknown = responder.read_call(b"\x00\x06foo", session)
    with pytest.raises(AvroRpcError, match="No such remote message: foo"):
        requestor = Requestor(FLUME)
        requestor.connected = True
        requestor.read_response("append", unknown.reply)


def test_garbage_is_a_frame_error():
    with pytest.raises(FrameError):
        Responder(FLUME).read_call(b"\x01\x02", Session())


def stream(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_netty_frame_round_trip_and_multi_buffer():
    assert await read_netty_frame(stream(netty_frame(9, b"payload")), 100) == (9, b"payload")
    two = struct.pack(">iii", 3, 2, 2) + b"ab" + struct.pack(">i", 1) + b"c"
    assert await read_netty_frame(stream(two), 100) == (3, b"abc")


@pytest.mark.parametrize("frame", [
    struct.pack(">ii", 1, 0),  # Java never completes an empty list
    struct.pack(">ii", 1, -1),
    struct.pack(">ii", 1, 1_000_000),  # too many buffers for the limit
    struct.pack(">iii", 1, 1, 101),  # one buffer above the limit
    struct.pack(">iii", 1, 2, 60) + b"x" * 60 + struct.pack(">i", 60),  # the sum above the limit
])
async def test_netty_frame_limits(frame):
    with pytest.raises(FrameError):
        await read_netty_frame(stream(frame + b"x" * 200), 100)


@pytest.mark.parametrize("frame", [
    struct.pack(">ii", 1, 0),
    struct.pack(">ii", 1, 1_000_000),
    struct.pack(">iii", 1, 1, 101),
    struct.pack(">iii", 1, 2, 60) + b"x" * 60 + struct.pack(">i", 60),
])
def test_the_sources_framer_refuses_a_claim_over_the_limit_as_soon_as_it_arrives(frame):
    with pytest.raises(FrameError):
        NettyFramer(100).feed(frame)


def test_the_sources_framer_finds_frames_in_pieces_and_keeps_what_is_incomplete():
    framer = NettyFramer(100)
    data = netty_frame(1, b"one") + struct.pack(">iii", 2, 2, 1) + b"t" + struct.pack(">i", 2) + b"wo"
    assert framer.feed(data[:5]) == [] and framer.partial
    assert framer.feed(data[5:-1]) == [(1, b"one")] and framer.partial
    assert framer.feed(data[-1:]) == [(2, b"two")] and not framer.partial


def test_the_inflating_framer_inflates_no_further_than_the_next_whole_frame():
    """Thousands of small frames compressed into a few bytes are handed out a chunk at a time."""
    frames = netty_frame(7, b"x") * 100_000
    framer = InflatingNettyFramer(1000)
    first = framer.feed(Deflater()(frames))
    assert 0 < len(first) < 10_000 and framer.partial
    handed_out = len(first)
    while more := framer.more():
        handed_out += len(more)
    assert handed_out == 100_000 and not framer.partial


def test_inflating_framer_refuses_a_bomb_and_bad_data():
    bomb = zlib.compress(struct.pack(">iii", 1, 1, 2_000_000_000) + b"\x00" * 50_000_000)
    with pytest.raises(FrameError):
        InflatingNettyFramer(1_000_000).feed(bomb)
    with pytest.raises(FrameError):
        InflatingNettyFramer(1_000_000).feed(b"not zlib at all")


def test_http_buffers():
    assert parse_http_buffers(http_buffers(b"abc")) == b"abc"
    assert parse_http_buffers(struct.pack(">i", 1) + b"a" + struct.pack(">i", 2) + b"bc" + b"\x00" * 4) == b"abc"
    for bad in (b"", struct.pack(">i", 5) + b"ab", struct.pack(">i", -1)):
        with pytest.raises(FrameError):
            parse_http_buffers(bad)


async def test_deflate_stream_round_trip_in_pieces():
    deflate = Deflater(6)
    compressed = deflate(netty_frame(1, b"a" * 1000)) + deflate(netty_frame(2, b"b"))
    reader = InflatingReader(stream(compressed))
    assert await read_netty_frame(reader, 10_000) == (1, b"a" * 1000)
    assert await read_netty_frame(reader, 10_000) == (2, b"b")


async def test_inflating_a_bomb_stops_at_the_frame_limit():
    bomb = zlib.compress(struct.pack(">iii", 1, 1, 2_000_000_000) + b"\x00" * 50_000_000)
    with pytest.raises(FrameError):
        await read_netty_frame(InflatingReader(stream(bomb)), 1_000_000)


async def test_bad_deflate_data():
    with pytest.raises(FrameError):
        await InflatingReader(stream(b"not zlib at all")).readexactly(4)


def test_a_large_call_beyond_the_decode_budget_is_refused():
    responder = Responder(FLUME, max_reads=decode_budget(100))
    handshake = FLUME.md5 + b"\x00" + FLUME.md5 + b"\x00"
    empty_events = b"\x80\x89\x7a" + b"\x00\x00" * 1_000_000 + b"\x00"  # 1 000 000 events, 2 MB
    with pytest.raises(DecodeBudgetExceeded):
        responder.read_call(handshake + b"\x00\x16appendBatch" + empty_events, Session())
    small = responder.read_call(handshake + b"\x00\x16appendBatch" + b"\x80\x0f" + b"\x00\x00" * 960 + b"\x00",
                                Session())  # 960 events in 2 kB: below the counted size, decoded
    assert len(small.params["events"]) == 960
