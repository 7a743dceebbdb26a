"""The compiled readers of Avro and Thrift `appendBatch` calls (protocols/_rpc_fast.pyx) against
the reference decoders (fastavro, thriftpy2): whatever they read, they read into the events the
reference gives, and whatever the reference refuses (a cut or corrupted call, a call over the
decode budget) they leave to it."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.accelerators import compiled
from kubeflume_agent.protocols.avro_rpc import _META, _STRING, AvroProtocol, Requestor, _read
from kubeflume_agent.protocols.thrift_rpc import FLUME, PROTOCOLS, compact_batch_reader, read_call, write_call
from kubeflume_agent.sources.thrift import flume_event

AVRO_PROTOCOL = AvroProtocol.packaged("AvroSourceProtocol")
avro_append_batch = compiled("_rpc_fast", "avro_append_batch")
thrift_append_batch = compact_batch_reader()

HEADERS = st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4)
EVENTS = st.lists(st.tuples(HEADERS, st.binary(max_size=30)), max_size=40)
# a cut and a few overwritten bytes, so calls that are not whole or not well formed come along
DAMAGE = st.tuples(st.none() | st.integers(0, 2000), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)),
                                                                max_size=3))


def damaged(data: bytes, damage) -> bytes:
    cut, changes = damage
    data = bytearray(data if cut is None else data[:cut])
    for position, value in changes:
        if position < len(data):
            data[position] = value
    return bytes(data)


def test_the_readers_are_built():
    assert avro_append_batch is not None and thrift_append_batch is not None


def avro_reference(payload: bytes) -> list[Event] | None:
    """What the responder reads from an established session's request, or None if it refuses it."""
    buffer = io.BytesIO(payload)
    try:
        _read(buffer, _META)
        if _read(buffer, _STRING) != "appendBatch":
            return None
        params = _read(buffer, AVRO_PROTOCOL.messages["appendBatch"].request)
    except Exception:
        return None
    return [Event(record["body"], record["headers"]) for record in params["events"]]


@settings(max_examples=300)
@given(EVENTS, st.booleans(), DAMAGE)
def test_avro_batches_read_as_fastavro_reads_them(events, damage_it, damage):
    requestor = Requestor(AVRO_PROTOCOL)
    requestor.connected = True
    payload = requestor.request("appendBatch", {"events": [{"headers": h, "body": b} for h, b in events]})
    if damage_it:
        payload = damaged(payload, damage)
    fast = avro_append_batch(payload, event_type=Event)
    if not damage_it:
        assert fast is not None, "a well-formed batch is read by the compiled reader"
    if fast is not None:
        reference = avro_reference(payload)
        assert fast == reference
        assert [list(e.headers.items()) for e in fast] == [list(e.headers.items()) for e in reference]


def thrift_reference(frame: bytes, max_reads: int):
    """(seqid, events) of an appendBatch call as the source reads it, or None if it is none or refused."""
    try:
        call, _ = read_call(frame, PROTOCOLS["compact"], FLUME.ThriftSourceProtocol, max_reads)
        if call.name != "appendBatch" or call.args is None:
            return None
        return call.seqid, [flume_event(e) for e in call.args.events or []]
    except Exception:
        return None


@settings(max_examples=300)
@given(EVENTS, st.integers(0, 2**31 - 1), st.booleans(), DAMAGE, st.integers(1, 2000))
def test_thrift_batches_read_as_thriftpy2_reads_them(events, seqid, damage_it, damage, max_reads):
    frame = write_call(PROTOCOLS["compact"], FLUME.ThriftSourceProtocol, "appendBatch", seqid,
                       events=[FLUME.ThriftFlumeEvent(headers=h, body=b) for h, b in events])
    if damage_it:
        frame = damaged(frame, damage)
    fast = thrift_append_batch(frame, max_reads)
    reference = thrift_reference(frame, max_reads)
    if not damage_it and reference is not None:
        assert fast is not None, "a well-formed batch within the budget is read by the compiled reader"
    if fast is not None:
        assert reference is not None and (fast.seqid, fast.events) == reference
        assert [list(e.headers.items()) for e in fast.events] == [list(e.headers.items()) for e in reference[1]]
