"""The thrift source against the Apache Thrift Python library (a client written with its protocol
API, field by field as Flume's generated ThriftSourceProtocol.Client does), and the agent's own
thrift sink against the source."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.TSocket import TSocket
from thrift.transport.TSSLSocket import TSSLSocket
from thrift.transport.TTransport import TFramedTransport

from kubeflume_agent.core.errors import EventDeliveryError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.status import Status
from tests.integration.source_harness import collect, config_for, memory_channel, running_source, take_all
from tests.integration.thrift_frames import batch_of_empty_events
from tests.tls import tls_files

pytestmark = pytest.mark.timeout(60)

OK, FAILED = 0, 1


class ApacheFlumeClient:
    """ThriftSourceProtocol.Client, spelled out with the Apache library's protocol calls."""

    def __init__(self, port: int, protocol_class=TCompactProtocol, sock=None) -> None:
        self.transport = TFramedTransport(sock or TSocket("127.0.0.1", port))
        self.transport.open()
        self.protocol = protocol_class(self.transport)
        self.seqid = 0

    def _write_event(self, event: Event) -> None:
        p = self.protocol
        p.writeStructBegin("ThriftFlumeEvent")
        p.writeFieldBegin("headers", TType.MAP, 1)
        p.writeMapBegin(TType.STRING, TType.STRING, len(event.headers))
        for key, value in event.headers.items():
            p.writeBinary(key if isinstance(key, bytes) else key.encode())
            p.writeBinary(value if isinstance(value, bytes) else value.encode())
        p.writeMapEnd()
        p.writeFieldEnd()
        p.writeFieldBegin("body", TType.STRING, 2)
        p.writeBinary(event.body)
        p.writeFieldEnd()
        p.writeFieldStop()
        p.writeStructEnd()

    def call(self, method: str, events: list[Event]) -> int:
        p = self.protocol
        self.seqid += 1
        p.writeMessageBegin(method, TMessageType.CALL, self.seqid)
        p.writeStructBegin(f"{method}_args")
        if method == "append":
            p.writeFieldBegin("event", TType.STRUCT, 1)
            self._write_event(events[0])
        else:
            p.writeFieldBegin("events", TType.LIST, 1)
            p.writeListBegin(TType.STRUCT, len(events))
            for event in events:
                self._write_event(event)
            p.writeListEnd()
        p.writeFieldEnd()
        p.writeFieldStop()
        p.writeStructEnd()
        p.writeMessageEnd()
        self.transport.flush()
        return self.read_status()

    def read_status(self) -> int:
        p = self.protocol
        _, message_type, seqid = p.readMessageBegin()
        if message_type == TMessageType.EXCEPTION:
            error = TApplicationException()
            error.read(p)
            p.readMessageEnd()
            raise error
        assert seqid == self.seqid
        p.readStructBegin()
        _, field_type, field_id = p.readFieldBegin()
        assert (field_type, field_id) == (TType.I32, 0)
        status = p.readI32()
        p.readFieldEnd()
        assert p.readFieldBegin()[1] == TType.STOP
        p.readStructEnd()
        p.readMessageEnd()
        return status

    def close(self) -> None:
        self.transport.close()


EVENTS = [Event(b"first", {"host": "web1", "k": "v"}), Event(b"", {}), Event("caf\u00e9".encode(), {"x": "\u00e9"})]


@pytest.mark.parametrize(("protocol", "protocol_class"), [("compact", TCompactProtocol), ("binary", TBinaryProtocol)])
async def test_apache_client_append_and_batch(protocol, protocol_class):
    params = {"bind": "127.0.0.1", "port": "0", "protocol": protocol}
    async with running_source("thrift", params) as (source, channel):
        client = await asyncio.to_thread(ApacheFlumeClient, source.bound_ports[0], protocol_class)
        assert await asyncio.to_thread(client.call, "append", EVENTS[:1]) == OK
        assert await asyncio.to_thread(client.call, "appendBatch", EVENTS) == OK
        client.close()
        events = await collect(channel, 4)
    assert events == EVENTS[:1] + EVENTS
    assert source.counters.append_accepted == 1 and source.counters.append_batch_accepted == 1


async def test_full_channel_answers_failed():
    full = memory_channel(capacity=2, transaction_capacity=10, keep_alive="0.05")
    async with running_source("thrift", {"bind": "127.0.0.1", "port": "0"}, full) as (source, channel):
        client = await asyncio.to_thread(ApacheFlumeClient, source.bound_ports[0])
        assert await asyncio.to_thread(client.call, "appendBatch", EVENTS) == FAILED
        assert channel.size == 0
        assert await asyncio.to_thread(client.call, "appendBatch", EVENTS[:2]) == OK
        client.close()
    assert source.counters.channel_write_fail == 1


async def test_unknown_method_is_an_application_exception():
    async with running_source("thrift", {"bind": "127.0.0.1", "port": "0"}) as (source, _):
        client = await asyncio.to_thread(ApacheFlumeClient, source.bound_ports[0])
        with pytest.raises(TApplicationException) as raised:
            await asyncio.to_thread(client.call, "appendAll", EVENTS)
        assert raised.value.type == TApplicationException.UNKNOWN_METHOD
        assert await asyncio.to_thread(client.call, "append", EVENTS[:1]) == OK  # connection still usable
        client.close()


async def test_header_bytes_that_are_not_utf8_become_replacement_characters():
    """Java's readString decodes with replacement; a header is text whatever the client sends."""
    async with running_source("thrift", {"bind": "127.0.0.1", "port": "0"}) as (source, channel):
        client = await asyncio.to_thread(ApacheFlumeClient, source.bound_ports[0])
        odd = Event(b"\xff body bytes stay", {b"k\xff": b"v\xfe", "ok": "fine"})
        assert await asyncio.to_thread(client.call, "append", [odd]) == OK
        client.close()
        [event] = await collect(channel, 1)
    assert event == Event(b"\xff body bytes stay", {"k\ufffd": "v\ufffd", "ok": "fine"})


async def test_a_batch_above_max_batch_events_is_failed_and_the_connection_kept():
    params = {"bind": "127.0.0.1", "port": "0", "max-batch-events": "2"}
    async with running_source("thrift", params) as (source, channel):
        client = await asyncio.to_thread(ApacheFlumeClient, source.bound_ports[0])
        assert await asyncio.to_thread(client.call, "appendBatch", EVENTS) == FAILED
        assert channel.size == 0
        assert await asyncio.to_thread(client.call, "appendBatch", EVENTS[:2]) == OK
        client.close()
        assert await collect(channel, 2) == EVENTS[:2]
    assert source.counters.event_read_fail == 1 and source.counters.append_batch_accepted == 1




async def test_a_frame_of_a_million_tiny_events_is_refused_before_it_is_built(caplog):
    """1 MB that would decode into a million event objects: the decoding budget stops it."""
    params = {"bind": "127.0.0.1", "port": "0", "max-batch-events": "100"}
    async with running_source("thrift", params) as (source, channel):
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_ports[0])
        hostile = batch_of_empty_events("compact", 1_000_000)
        with caplog.at_level(logging.WARNING):
            writer.write(struct.pack(">I", len(hostile)) + hostile)
            assert await reader.read() == b""  # closed, not answered
        writer.close()
        good = await asyncio.to_thread(ApacheFlumeClient, source.bound_ports[0])
        assert await asyncio.to_thread(good.call, "appendBatch", EVENTS) == OK
        good.close()
        assert len(await collect(channel, 3)) == 3
    assert source.counters.event_read_fail == 1 and source.counters.events_received == 3
    assert "closing connection from 127.0.0.1" in caplog.text and "max-batch-events" in caplog.text


async def test_malformed_and_oversized_frames_close_only_that_connection(caplog):
    params = {"bind": "127.0.0.1", "port": "0", "max-request-bytes": "1000"}
    caplog.set_level(logging.WARNING)
    async with running_source("thrift", params) as (source, channel):
        port = source.bound_ports[0]
        good = await asyncio.to_thread(ApacheFlumeClient, port)
        for bad in (struct.pack(">I", 5) + b"\xff\xff\xff\xff\xff",  # not a message
                    struct.pack(">I", 2_000_000_000),  # claims 2 GB
                    struct.pack(">I", 3) + b"\x82\x21\x05"):  # a message cut short by its frame
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(bad)
            assert await reader.read() == b""
            writer.close()
        assert await asyncio.to_thread(good.call, "append", EVENTS[:1]) == OK
        good.close()
        assert len(await collect(channel, 1)) == 1
    assert source.counters.event_read_fail == 3
    assert caplog.text.count("closing connection from 127.0.0.1") == 3


async def test_tls_with_apache_ssl_socket():
    with tls_files("localhost") as (cert, key, ca):
        params = {"bind": "127.0.0.1", "port": "0", "ssl": "true", "ssl-certfile": cert, "ssl-keyfile": key}
        async with running_source("thrift", params) as (source, channel):
            def send() -> int:
                sock = TSSLSocket("localhost", source.bound_ports[0], ca_certs=ca)
                client = ApacheFlumeClient(0, sock=sock)
                try:
                    return client.call("appendBatch", EVENTS)
                finally:
                    client.close()

            assert await asyncio.to_thread(send) == OK
            assert await collect(channel, 3) == EVENTS


@pytest.mark.parametrize("protocol", ["compact", "binary"])
async def test_thrift_sink_to_source(protocol):
    async with running_source("thrift", {"bind": "127.0.0.1", "port": "0", "protocol": protocol}) as (
            source, received):
        channel = memory_channel()
        await channel.start()
        tx = channel.transaction()
        tx.put_all(EVENTS * 50)
        await tx.commit()
        sink_class, settings = config_for("sink", "thrift", {
            "hostname": "127.0.0.1", "port": str(source.bound_ports[0]), "protocol": protocol, "batch-size": "100"})
        sink = sink_class("k1", settings, channel)
        await sink.start()
        assert await sink.process() == Status.READY
        assert await sink.process() == Status.READY
        assert channel.size == 0
        await sink.stop()
        assert await collect(received, 150) == EVENTS * 50


async def test_thrift_sink_keeps_batch_when_source_refuses():
    full = memory_channel(capacity=2, transaction_capacity=10, keep_alive="0.05")
    async with running_source("thrift", {"bind": "127.0.0.1", "port": "0"}, full) as (source, _):
        channel = memory_channel()
        await channel.start()
        tx = channel.transaction()
        tx.put_all(EVENTS)
        await tx.commit()
        sink_class, settings = config_for("sink", "thrift", {
            "hostname": "127.0.0.1", "port": str(source.bound_ports[0]), "connection-reset-interval": "60"})
        sink = sink_class("k1", settings, channel)
        await sink.start()
        with pytest.raises(EventDeliveryError, match="FAILED"):
            await sink.process()
        assert channel.size == 3
        await sink.stop()
        assert await take_all(full) == []
        assert sink.client.hosts[0].reset_interval == 60


def test_kerberos_is_refused_by_the_config_check():
    source_class, settings = config_for("source", "thrift", {"bind": "h", "port": "1", "kerberos": "true"})
    assert source_class.config_problems(settings) == [
        ("kerberos", "Kerberos (SASL) transport is not supported; use ssl")]




async def test_thrift_sink_over_tls():
    with tls_files("127.0.0.1") as (cert, key, ca):
        params = {"bind": "127.0.0.1", "port": "0", "ssl": "true", "ssl-certfile": cert, "ssl-keyfile": key}
        async with running_source("thrift", params) as (source, received):
            channel = memory_channel()
            await channel.start()
            tx = channel.transaction()
            tx.put_all(EVENTS)
            await tx.commit()
            sink_class, settings = config_for("sink", "thrift", {
                "hostname": "127.0.0.1", "port": str(source.bound_ports[0]), "ssl": "true", "truststore": ca,
                "truststore-type": "PEM"})
            sink = sink_class("k1", settings, channel)
            await sink.start()
            assert await sink.process() == Status.READY
            await sink.stop()
            assert await collect(received, 3) == EVENTS
