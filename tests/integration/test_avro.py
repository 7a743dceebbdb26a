"""The avro source against byte-exact frames built from the Avro spec, and against the agent's own
avro sink (the way two Flume tiers talk), including deflate, TLS, backpressure, bad input, and
the failover / load-balancing clients."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import struct
import zlib

import pytest
import trustme

from kubeflume_agent.config.keys import Config
from kubeflume_agent.core.errors import EventDeliveryError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.status import Status
from kubeflume_agent.interceptors.base import Interceptor
from tests.integration.source_harness import (
    collect,
    memory_channel,
    running_sink,
    running_source,
    take_all,
    wait_for,
)
from tests.tls import tls_files

pytestmark = pytest.mark.timeout(60)

FLUME_PROTOCOL_MD5 = bytes.fromhex("86aadae2c45474c0fe93ffd0f2350a65")


def frame(serial: int, *buffers: bytes) -> bytes:
    """Netty framing: serial, buffer count, then length-prefixed buffers (all big-endian int32)."""
    out = struct.pack(">ii", serial, len(buffers))
    for buffer in buffers:
        out += struct.pack(">i", len(buffer)) + buffer
    return out


def avro_string(text: bytes) -> bytes:
    assert len(text) < 64  # one-byte zig-zag length
    return bytes([len(text) * 2]) + text


HANDSHAKE_KNOWN = FLUME_PROTOCOL_MD5 + b"\x00" + FLUME_PROTOCOL_MD5 + b"\x00"  # hash, null protocol, hash, null meta
BATCH_OF_TWO = (
    b"\x00" + avro_string(b"appendBatch")  # call meta (empty map), message name
    + b"\x04"  # array block of 2 events
    + b"\x02" + avro_string(b"k") + avro_string(b"v") + b"\x00" + avro_string(b"abc")  # {k: v}, "abc"
    + b"\x00" + avro_string(b"")  # no headers, empty body
    + b"\x00"  # end of array
)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    serial, count = struct.unpack(">ii", await reader.readexactly(8))
    payload = b""
    for _ in range(count):
        (length,) = struct.unpack(">i", await reader.readexactly(4))
        payload += await reader.readexactly(length)
    return serial, payload


async def test_byte_exact_handshake_and_batch():
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}) as (source, channel):
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        # As Java's client: handshake + metadata + name in one buffer, the parameters in another.
        writer.write(frame(1, HANDSHAKE_KNOWN + BATCH_OF_TWO[:13], BATCH_OF_TWO[13:]))
        serial, payload = await read_frame(reader)
        # BOTH, null protocol, null hash, null meta; empty meta; no error; Status.OK
        assert (serial, payload) == (1, b"\x00\x00\x00\x00" + b"\x00" + b"\x00" + b"\x00")
        # The connection is now stateful: the next call carries no handshake.
        writer.write(frame(2, b"\x00" + avro_string(b"append") + b"\x00" + avro_string(b"one")))
        assert await read_frame(reader) == (2, b"\x00\x00\x00")
        writer.close()
        events = await collect(channel, 3)
    assert events == [Event(b"abc", {"k": "v"}), Event(b"", {}), Event(b"one", {})]
    assert source.counters.append_batch_accepted == 1 and source.counters.append_accepted == 1
    assert source.counters.events_accepted == 3


async def test_unknown_client_protocol_gets_none_then_client_match():
    other_protocol = b'{"protocol":"P","namespace":"org.apache.flume.source.avro","types":[' \
        b'{"type":"record","name":"AvroFlumeEvent","fields":[{"name":"headers","type":' \
        b'{"type":"map","values":"string"}},{"name":"body","type":"bytes"}]},' \
        b'{"type":"enum","name":"Status","symbols":["OK","FAILED","UNKNOWN"]}],"messages":{"append":' \
        b'{"request":[{"name":"event","type":"AvroFlumeEvent"}],"response":"Status"}}}'
    other_hash = hashlib.md5(other_protocol).digest()
    call = b"\x00" + avro_string(b"append") + b"\x00" + avro_string(b"x")
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}) as (source, channel):
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        writer.write(frame(1, other_hash + b"\x00" + other_hash + b"\x00" + call))
        _, answer = await read_frame(reader)
        assert answer[0] == 4  # match NONE (enum index 2), and nothing after the handshake
        assert answer[1] == 2 and b"AvroSourceProtocol" in answer  # serverProtocol: our text
        assert answer.endswith(b"\x02" + FLUME_PROTOCOL_MD5 + b"\x00")
        length = len(other_protocol)
        protocol_field = b"\x02" + bytes([(length * 2) & 0x7F | 0x80, (length * 2) >> 7]) + other_protocol
        writer.write(frame(2, other_hash + protocol_field + other_hash + b"\x00" + call))
        _, answer = await read_frame(reader)
        assert answer[0] == 2  # CLIENT: our protocol is known to the server, the server hash differs
        assert answer.endswith(b"\x00\x00\x00")  # meta, no error, OK
        writer.close()
        [event] = await collect(channel, 1)
    assert event.body == b"x"


async def test_unknown_message_is_a_system_error():
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}) as (source, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        writer.write(frame(7, HANDSHAKE_KNOWN + b"\x00" + avro_string(b"nope")))
        serial, answer = await read_frame(reader)
        writer.close()
    assert serial == 7
    assert answer == b"\x00\x00\x00\x00" + b"\x00" + b"\x01" + b"\x00" + avro_string(b"No such remote message: nope")


def avro_sink(params: dict[str, str], events: list[Event]):
    return running_sink("avro", params, events=events)


def numbered(count: int) -> list[Event]:
    return [Event(b"event %d" % i, {"n": str(i)}) for i in range(count)]


@pytest.mark.parametrize("compression", ["none", "deflate"])
async def test_sink_to_source(compression):
    source_params = {"bind": "127.0.0.1", "port": "0", "compression-type": compression}
    async with running_source("avro", source_params) as (source, received):
        params = {"hostname": "127.0.0.1", "port": str(source.bound_ports[0]), "batch-size": "100",
                  "compression-type": compression}
        async with avro_sink(params, numbered(250)) as (sink, channel):
            for _ in range(3):
                assert await sink.process() == Status.READY
            assert await sink.process() == Status.BACKOFF
            assert channel.size == 0
        events = await collect(received, 250)
    assert events == numbered(250)
    assert sink.counters.drain_success == 250 and sink.counters.connections_created == 1


async def test_compression_mismatch_fails_and_keeps_the_batch():
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}) as (source, received):
        params = {"hostname": "127.0.0.1", "port": str(source.bound_ports[0]), "compression-type": "deflate",
                  "request-timeout": "2000"}
        async with avro_sink(params, numbered(5)) as (sink, channel):
            with pytest.raises(EventDeliveryError):
                await sink.process()
            assert channel.size == 5
        assert await take_all(received) == []


async def test_full_channel_answers_failed_and_the_sink_keeps_its_batch():
    full = memory_channel(capacity=10, transaction_capacity=10, keep_alive="0.05")
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}, full) as (source, _):
        params = {"hostname": "127.0.0.1", "port": str(source.bound_ports[0]), "batch-size": "10"}
        async with avro_sink(params, numbered(20)) as (sink, channel):
            assert await sink.process() == Status.READY
            with pytest.raises(EventDeliveryError, match="FAILED"):
                await sink.process()
            assert channel.size == 10  # rolled back: nothing lost
            assert source.counters.channel_write_fail == 1
            await take_all(full)
            assert await sink.process() == Status.READY
            assert channel.size == 0


async def test_tls_sink_to_source():
    with tls_files("127.0.0.1") as (cert, key, ca):
        source_params = {"bind": "127.0.0.1", "port": "0", "ssl": "true", "ssl-certfile": cert,
                         "ssl-keyfile": key}
        async with running_source("avro", source_params) as (source, received):
            params = {"hostname": "127.0.0.1", "port": str(source.bound_ports[0]), "ssl": "true",
                      "truststore": ca, "truststore-type": "PEM"}
            async with avro_sink(params, numbered(3)) as (sink, _):
                assert await sink.process() == Status.READY
            assert await collect(received, 3) == numbered(3)
            untrusting = {"hostname": "127.0.0.1", "port": str(source.bound_ports[0]), "ssl": "true"}
            async with avro_sink(untrusting, numbered(1)) as (sink, _):
                with pytest.raises(EventDeliveryError):
                    await sink.process()
                assert sink.counters.connections_failed == 1
            async with avro_sink(dict(untrusting, **{"trust-all-certs": "true"}), numbered(1)) as (sink, _):
                assert await sink.process() == Status.READY
            assert await collect(received, 1) == numbered(1)


async def test_pkcs12_keystore(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    key = serialization.load_pem_private_key(certificate.private_key_pem.bytes(), None)
    cert = x509.load_pem_x509_certificate(certificate.cert_chain_pems[0].bytes())
    keystore = tmp_path / "server.p12"
    keystore.write_bytes(pkcs12.serialize_key_and_certificates(
        b"server", key, cert, None, serialization.BestAvailableEncryption(b"secret")))
    params = {"bind": "127.0.0.1", "port": "0", "ssl": "true", "keystore": str(keystore),
              "keystore-password": "secret", "keystore-type": "PKCS12"}
    async with running_source("avro", params) as (source, received):
        with authority.cert_pem.tempfile() as ca:
            sink_params = {"hostname": "127.0.0.1", "port": str(source.bound_ports[0]), "ssl": "true",
                           "truststore": ca, "truststore-type": "PEM"}
            async with avro_sink(sink_params, numbered(2)) as (sink, _):
                assert await sink.process() == Status.READY
        assert len(await collect(received, 2)) == 2


async def test_ip_filter_refuses_denied_peers():
    params = {"bind": "127.0.0.1", "port": "0", "ipFilter": "true", "ipFilterRules": "deny:ip:127.*"}
    async with running_source("avro", params) as (source, received):
        sink_params = {"hostname": "127.0.0.1", "port": str(source.bound_ports[0]), "request-timeout": "2000"}
        async with avro_sink(sink_params, numbered(2)) as (sink, channel):
            with pytest.raises(EventDeliveryError):
                await sink.process()
            assert channel.size == 2
        assert await take_all(received) == []


async def test_a_batch_above_max_batch_events_is_failed_and_the_connection_kept():
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0", "max-batch-events": "1"}) as (
            source, received):
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        writer.write(frame(1, HANDSHAKE_KNOWN + BATCH_OF_TWO))
        assert await read_frame(reader) == (1, b"\x00\x00\x00\x00" + b"\x00\x00" + b"\x02")  # FAILED
        writer.write(frame(2, b"\x00" + avro_string(b"append") + b"\x00" + avro_string(b"one")))
        assert await read_frame(reader) == (2, b"\x00\x00\x00")  # the same connection, OK
        writer.close()
        assert await collect(received, 1) == [Event(b"one", {})]
    assert source.counters.event_read_fail == 1


def avro_long(value: int) -> bytes:
    zigzag, out = (value << 1) ^ (value >> 63), b""
    while zigzag > 0x7F:
        out += bytes([zigzag & 0x7F | 0x80])
        zigzag >>= 7
    return out + bytes([zigzag])


async def test_a_frame_of_a_million_empty_events_is_refused_before_it_is_built(caplog):
    """2 MB that fastavro would turn into a million dicts: the decoding budget stops it."""
    hostile = b"\x00" + avro_string(b"appendBatch") + avro_long(1_000_000) + b"\x00\x00" * 1_000_000 + b"\x00"
    params = {"bind": "127.0.0.1", "port": "0", "max-batch-events": "100"}
    caplog.set_level(logging.WARNING)
    async with running_source("avro", params) as (source, received):
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        writer.write(frame(1, HANDSHAKE_KNOWN + hostile))
        assert await reader.read() == b""  # closed, not answered
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        big_but_honest = [Event(b"x" * 10_000, {"n": str(i)}) for i in range(100)]  # 1 MB: counted, passes
        events = b"".join(b"\x02" + avro_string(b"n") + avro_string(e.headers["n"].encode()) + b"\x00"
                          + avro_long(len(e.body)) + e.body for e in big_but_honest)
        writer.write(frame(1, HANDSHAKE_KNOWN + b"\x00" + avro_string(b"appendBatch") + avro_long(100) + events
                           + b"\x00"))
        assert (await read_frame(reader))[1].endswith(b"\x00\x00\x00")  # OK
        writer.close()
        assert await collect(received, 100) == big_but_honest
    assert source.counters.event_read_fail == 1
    assert "closing connection from 127.0.0.1" in caplog.text and "max-batch-events" in caplog.text


async def test_malformed_and_oversized_frames_close_only_that_connection(caplog):
    params = {"bind": "127.0.0.1", "port": "0", "max-request-bytes": "1000"}
    caplog.set_level(logging.WARNING)
    async with running_source("avro", params) as (source, received):
        port = source.bound_ports[0]
        good_reader, good_writer = await asyncio.open_connection("127.0.0.1", port)
        for bad in (frame(1, b"\xff" * 40),  # not a handshake
                    struct.pack(">ii", 1, 1) + struct.pack(">i", 10_000_000),  # claims 10 MB
                    struct.pack(">ii", 1, 100_000_000)):  # claims 100 M buffers
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(bad)
            assert await reader.read() == b""  # closed by the server
            writer.close()
        good_writer.write(frame(1, HANDSHAKE_KNOWN + BATCH_OF_TWO))
        assert (await read_frame(good_reader))[1].endswith(b"\x00")
        good_writer.close()
        assert len(await collect(received, 2)) == 2
    assert source.counters.event_read_fail == 3
    assert caplog.text.count("closing connection from 127.0.0.1") == 3


async def test_stop_lets_an_in_flight_batch_answer():
    full = memory_channel(capacity=2, transaction_capacity=10, keep_alive="1.0")
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}, full) as (source, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        writer.write(frame(1, HANDSHAKE_KNOWN + BATCH_OF_TWO))
        await read_frame(reader)
        writer.write(frame(2, b"\x00" + BATCH_OF_TWO[1:]))  # waits for room (keep-alive 1 s)
        await wait_for(lambda: source.counters.events_received == 4, what="second batch in flight")
        stopping = asyncio.create_task(source.server.stop())
        serial, answer = await read_frame(reader)
        await stopping
    assert (serial, answer) == (2, b"\x00\x00\x02")  # FAILED, answered before the connection closed


async def test_failover_and_load_balancing_skip_a_dead_host():
    with contextlib.closing(__import__("socket").socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]  # bound, not listening: connections are refused
        async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}) as (source, received):
            alive = source.bound_ports[0]
            hosts = {"hosts": "h1 h2", "hosts.h1": f"127.0.0.1:{dead}", "hosts.h2": f"127.0.0.1:{alive}",
                     "batch-size": "5"}
            async with avro_sink(dict(hosts, **{"client.type": "default_failover"}), numbered(10)) as (sink, _):
                assert await sink.process() == Status.READY
                assert await sink.process() == Status.READY
                assert sink.counters.connections_failed == 1  # stays on h2 after the first failure
            balanced = dict(hosts, **{"client.type": "default_loadbalance", "backoff": "true"})
            async with avro_sink(balanced, numbered(10)) as (sink, _):
                assert await sink.process() == Status.READY
                assert await sink.process() == Status.READY
                assert sink.counters.connections_failed == 1  # h1 is backed off after failing once
            assert len(await collect(received, 20)) == 20


async def test_single_dead_host_raises_and_counts():
    async with avro_sink({"hostname": "127.0.0.1", "port": "1", "connect-timeout": "2000"}, numbered(1)) as (
            sink, channel):
        with pytest.raises(EventDeliveryError):
            await sink.process()
        assert channel.size == 1
        assert sink.counters.connections_failed == 1


async def test_a_stalled_half_frame_does_not_block_other_clients():
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}) as (source, received):
        port = source.bound_ports[0]
        stalled = []
        for _ in range(50):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(frame(1, HANDSHAKE_KNOWN + BATCH_OF_TWO)[:20])  # and then nothing more
            stalled.append(writer)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame(1, HANDSHAKE_KNOWN + BATCH_OF_TWO))
        assert await read_frame(reader) == (1, b"\x00\x00\x00\x00\x00\x00\x00")
        assert len(await collect(received, 2)) == 2
        assert source.counters.open_connections == 51
        for each in [*stalled, writer]:
            each.close()


async def test_reset_connection_interval_renews_the_connection():
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}) as (source, received):
        params = {"hostname": "127.0.0.1", "port": str(source.bound_ports[0]), "batch-size": "2",
                  "reset-connection-interval": "1"}
        async with avro_sink(params, numbered(4)) as (sink, _):
            assert await sink.process() == Status.READY
            await asyncio.sleep(1.1)  # past the interval: the next batch goes over a new connection
            assert await sink.process() == Status.READY
            assert (sink.counters.connections_created, sink.counters.connections_closed) == (2, 1)
        assert len(await collect(received, 4)) == 4


async def test_load_balancing_round_robin_alternates_and_random_reaches_every_host():
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}) as (first, first_received), \
            running_source("avro", {"bind": "127.0.0.1", "port": "0"}) as (second, second_received):
        hosts = {"client.type": "default_loadbalance", "hosts": "h1 h2", "batch-size": "5",
                 "hosts.h1": f"127.0.0.1:{first.bound_ports[0]}", "hosts.h2": f"127.0.0.1:{second.bound_ports[0]}"}
        async with avro_sink(hosts, numbered(20)) as (sink, _):
            for _ in range(4):
                assert await sink.process() == Status.READY
        assert await take_all(first_received) == numbered(5) + numbered(15)[10:]  # batches 1 and 3
        assert await take_all(second_received) == numbered(10)[5:] + numbered(20)[15:]  # batches 2 and 4
        async with avro_sink(dict(hosts, **{"host-selector": "random", "batch-size": "1"}), numbered(200)) as (
                sink, _):
            while not (first_received.size and second_received.size):
                assert await sink.process() == Status.READY  # 2**-199 to miss a host after all 200
        assert sink.counters.connections_created == 2


async def test_request_timeout_gives_up_on_a_silent_server_and_keeps_the_batch():
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads everything, answers nothing
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        params = {"hostname": "127.0.0.1", "port": str(port), "request-timeout": "300"}
        async with avro_sink(params, numbered(3)) as (sink, channel):
            with pytest.raises(EventDeliveryError):
                await sink.process()
            assert channel.size == 3
            assert (sink.counters.connections_created, sink.counters.connections_closed) == (1, 1)
            assert sink.counters.event_write_fail == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_deflate_stream_byte_exact():
    """The whole framed stream is one zlib stream (RFC 1950), sync-flushed per write (Netty's
    JZlibEncoder/Decoder as Flume sets them up), built here with zlib alone."""
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0", "compression-type": "deflate"}) as (
            source, received):
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        deflater, inflater = zlib.compressobj(6), zlib.decompressobj()
        writer.write(deflater.compress(frame(1, HANDSHAKE_KNOWN + BATCH_OF_TWO)) + deflater.flush(zlib.Z_SYNC_FLUSH))
        answer = b""
        while len(answer) < 19:  # serial, count, length, BOTH handshake + meta + flag + OK
            answer += inflater.decompress(await reader.read(1024))
        assert answer == frame(1, b"\x00\x00\x00\x00" + b"\x00\x00\x00")
        writer.close()
        assert len(await collect(received, 2)) == 2


class Refusing(Interceptor):
    """An interceptor that raises, as a buggy custom one would."""

    def __init__(self) -> None:
        super().__init__(Config())

    def intercept(self, events):
        raise RuntimeError("interceptor bug")


async def test_any_processing_failure_is_answered_failed_as_flume_does():
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}) as (source, received):
        source.processor.interceptors = (Refusing(),)
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        writer.write(frame(1, HANDSHAKE_KNOWN + BATCH_OF_TWO))
        assert await read_frame(reader) == (1, b"\x00\x00\x00\x00" + b"\x00\x00" + b"\x02")  # FAILED
        writer.close()
        assert await take_all(received) == []
    assert source.counters.generic_processing_fail == 1
