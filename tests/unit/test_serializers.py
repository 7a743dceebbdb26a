"""Flume's event serializers: the bytes they write, read back with independent readers."""

from __future__ import annotations

import io
import struct

import fastavro
import pytest

from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.serializers import (
    AvroEventSerializer,
    HeaderAndTextSerializer,
    SequenceFileConfig,
    SequenceFileSerializer,
    TextSerializer,
    create_serializer,
    hadoop_vint,
    serializer_problems,
)

EVENTS = [Event(b"first", {"host": "a", "n": "1"}), Event(b"second"), Event(b"\x00\xffbinary", {"k": "v"})]


def whole_file(serializer, *batches) -> bytes:
    return serializer.begin() + b"".join(serializer.encode(batch) for batch in batches) + serializer.end()


def test_text_writes_bodies_with_newlines_and_drops_headers():
    serializer = create_serializer("text", {})
    assert isinstance(serializer, TextSerializer)
    assert whole_file(serializer, EVENTS[:2], EVENTS[2:]) == b"first\nsecond\n\x00\xffbinary\n"


def test_text_without_newline():
    serializer = create_serializer("TEXT", {"appendNewline": "false"})
    assert whole_file(serializer, EVENTS) == b"firstsecond\x00\xffbinary"


def test_text_encodes_an_empty_batch_as_nothing():
    assert create_serializer("text", {}).encode([]) == b""


def test_header_and_text_renders_headers_like_java_map_to_string():
    serializer = create_serializer("header_and_text", {})
    assert isinstance(serializer, HeaderAndTextSerializer)
    assert serializer.encode(EVENTS[:2]) == b"{host=a, n=1} first\n{} second\n"


def test_fully_qualified_flume_class_names_resolve():
    name = "org.apache.flume.serialization.BodyTextEventSerializer$Builder"
    assert isinstance(create_serializer(name, {}), TextSerializer)


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_avro_event_is_a_container_file_of_flume_events(codec):
    serializer = create_serializer("avro_event", {"compressionCodec": codec})
    assert isinstance(serializer, AvroEventSerializer)
    data = whole_file(serializer, EVENTS[:1], EVENTS[1:])
    reader = fastavro.reader(io.BytesIO(data))
    assert reader.codec == codec
    assert reader.writer_schema["name"] == "Event"
    assert list(reader) == [{"headers": e.headers, "body": e.body} for e in EVENTS]


def test_avro_event_every_batch_ends_a_block_so_a_file_cut_after_any_batch_is_readable():
    serializer = create_serializer("avro_event", {})
    header = serializer.begin()
    first = serializer.encode(EVENTS[:1])
    serializer.encode(EVENTS[1:])
    assert list(fastavro.reader(io.BytesIO(header + first))) == [{"headers": EVENTS[0].headers, "body": b"first"}]


def test_avro_event_each_file_gets_its_own_header():
    serializer = create_serializer("avro_event", {})
    one = whole_file(serializer, EVENTS[:1])
    two = whole_file(serializer, EVENTS[1:2])
    assert [r["body"] for r in fastavro.reader(io.BytesIO(two))] == [b"second"]
    assert one[:4] == two[:4] == b"Obj\x01"


def test_avro_encode_before_begin_is_a_clear_error():
    with pytest.raises(RuntimeError, match="before begin"):
        create_serializer("avro_event", {}).encode(EVENTS)


def test_bad_parameters_are_reported_with_their_full_key():
    assert serializer_problems("text", {"appendNewline": "maybe"}) == [
        ("serializer.appendNewline", "expected true or false, got 'maybe'")]
    assert serializer_problems("avro_event", {"compressionCodec": "lz4"})[0][0] == "serializer.compressionCodec"
    with pytest.raises(ValueError, match=r"serializer\.syncIntervalBytes"):
        create_serializer("avro_event", {"syncIntervalBytes": "-1"})


def test_unknown_serializer_type_names_the_choices():
    [(key, message)] = serializer_problems("parquet", {})
    assert key == "serializer"
    assert "avro_event, header_and_text, text" in message
    with pytest.raises(ValueError, match="unknown serializer type"):
        create_serializer("parquet", {})


def test_a_class_that_is_not_a_serializer_is_refused():
    with pytest.raises(ValueError, match="not an EventSerializer"):
        create_serializer("kubeflume_agent.core.event:Event", {})


@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (127, b"\x7f"), (-112, b"\x90"), (128, b"\x8f\x80"), (300, b"\x8e\x01\x2c"),
    (-113, b"\x87\x70"), (1 << 40, b"\x8a\x01\x00\x00\x00\x00\x00"),
])
def test_hadoop_vint_matches_writable_utils(value, encoded):
    assert hadoop_vint(value) == encoded


def read_sequence_file(data: bytes) -> tuple[str, str, list[tuple[int, bytes]]]:
    """A reader written from Hadoop's SequenceFile format description (version 6, uncompressed)."""
    stream = io.BytesIO(data)
    assert stream.read(4) == b"SEQ\x06"

    def text() -> str:
        length = stream.read(1)[0]
        assert length < 0x80, "class names are short"
        return stream.read(length).decode()

    key_class, value_class = text(), text()
    assert stream.read(2) == b"\x00\x00", "not compressed"
    assert struct.unpack(">i", stream.read(4)) == (0,), "no metadata"
    sync = stream.read(16)
    records = []
    while header := stream.read(4):
        (record_length,) = struct.unpack(">i", header)
        if record_length == -1:
            assert stream.read(16) == sync
            continue
        (key_length,) = struct.unpack(">i", stream.read(4))
        (key,) = struct.unpack(">q", stream.read(key_length))
        records.append((key, stream.read(record_length - key_length)))
    return key_class, value_class, records


def test_sequence_file_writable_values_are_bytes_writable():
    serializer = SequenceFileSerializer(SequenceFileConfig(write_format="writable"))
    events = [Event(b"abc", {"timestamp": "1700000000000"}), Event(b"", {"timestamp": "5"})]
    key_class, value_class, records = read_sequence_file(whole_file(serializer, events[:1], events[1:]))
    assert key_class == "org.apache.hadoop.io.LongWritable"
    assert value_class == "org.apache.hadoop.io.BytesWritable"
    assert records == [(1700000000000, b"\x00\x00\x00\x03abc"), (5, b"\x00\x00\x00\x00")]


def test_sequence_file_text_values_and_missing_timestamp_uses_now():
    serializer = SequenceFileSerializer(SequenceFileConfig(write_format="text"))
    _, value_class, [(key, value)] = read_sequence_file(whole_file(serializer, [Event(b"hi")]))
    assert value_class == "org.apache.hadoop.io.Text"
    assert value == b"\x02hi"
    assert key > 1_600_000_000_000


def test_sequence_file_refuses_a_timestamp_that_is_not_a_number():
    serializer = SequenceFileSerializer(SequenceFileConfig(write_format="writable"))
    serializer.begin()
    with pytest.raises(ValueError, match="not epoch milliseconds"):
        serializer.encode([Event(b"x", {"timestamp": "yesterday"})])
