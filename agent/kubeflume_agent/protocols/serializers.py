"""Flume's event serializers: how a file sink (hdfs, file_roll) turns events into file bytes.

A serializer works on whole batches so the hot path stays in C (`bytes.join`, fastavro):
`begin()` gives the bytes that open a new file, `encode(events)` the bytes of one batch, `end()`
the bytes that finish the file. Sinks name a serializer as Flume does (`serializer = text`,
`serializer.appendNewline = false`) and pass the `serializer.*` keys with the prefix removed.
Hadoop's SequenceFile, the hdfs sink's default file type, is written through the same interface.
"""

from __future__ import annotations

import io
import os
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import fastavro
from fastavro.write import Writer

from kubeflume_agent.config.keys import (
    Config,
    Configurable,
    InvalidSetting,
    boolean,
    config_of,
    key,
    one_of,
    positive_integer,
    resolve,
)
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.registry import UnknownType, lookup

NEWLINE = b"\n"

# Flume's FlumeEventAvroEventSerializer writes records of this schema (flume-ng-core, Event.avsc).
FLUME_EVENT_SCHEMA = fastavro.parse_schema({
    "type": "record",
    "name": "Event",
    "fields": [
        {"name": "headers", "type": {"type": "map", "values": "string"}},
        {"name": "body", "type": "bytes"},
    ],
})


SerializerConfigT = TypeVar("SerializerConfigT", bound=Config)


class EventSerializer(Configurable[SerializerConfigT]):
    """Base of all serializers, built from their typed config (the `serializer.*` keys).
    Stateless text serializers only override `encode`."""

    def __init__(self, config: SerializerConfigT) -> None:
        self.config = config

    def begin(self) -> bytes:
        """Bytes that open a new file."""
        return b""

    def encode(self, events: Sequence[Event]) -> bytes:
        """The bytes of a whole batch; a sink appends them to the open file."""
        raise NotImplementedError

    def end(self) -> bytes:
        """Bytes that finish the file."""
        return b""


@dataclass(frozen=True)
class TextConfig(Config):
    append_newline: bool = key("appendNewline", boolean, True, doc="write a newline after each event body")


class TextSerializer(EventSerializer[TextConfig]):
    """Flume's `text` (BodyTextEventSerializer): the body, then a newline; headers are dropped."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__(config)
        self.append_newline = config.append_newline

    def encode(self, events: Sequence[Event]) -> bytes:
        return self._lines([event.body for event in events])

    def _lines(self, lines: list[bytes]) -> bytes:
        """`lines` joined, each followed by a newline if asked. The last newline comes from an
        empty last line, not a `+`: that would copy the whole batch (often 100 KiB+) once more."""
        if not lines:
            return b""
        if self.append_newline:
            lines.append(b"")
            return NEWLINE.join(lines)
        return b"".join(lines)


def java_map_string(headers: Mapping[str, str]) -> str:
    """Headers rendered as Java's `Map.toString()`: `{k1=v1, k2=v2}`.

    Java prints a HashMap in hash order; we print insertion order, which is what a reader sees
    as "the headers of the event" and is stable across runs.
    """
    return "{" + ", ".join(f"{key}={value}" for key, value in headers.items()) + "}"


class HeaderAndTextSerializer(TextSerializer):
    """Flume's `header_and_text` (HeaderAndBodyTextEventSerializer): `{k=v, ...} body`, newline."""

    def encode(self, events: Sequence[Event]) -> bytes:
        return self._lines([java_map_string(event.headers).encode() + b" " + event.body for event in events])


def _avro_codecs() -> tuple[str, ...]:
    """Codecs fastavro can write here: snappy needs the optional cramjam package."""
    codecs = ["null", "deflate"]
    try:
        import cramjam  # noqa: F401
    except ImportError:
        pass
    else:
        codecs.append("snappy")
    return tuple(codecs)


AVRO_CODECS = _avro_codecs()


@dataclass(frozen=True)
class AvroEventConfig(Config):
    sync_interval_bytes: int = key("syncIntervalBytes", positive_integer, 2048000,
                                   doc="approximate size of one Avro block")
    compression_codec: str = key("compressionCodec", one_of(*AVRO_CODECS), "null",
                                 doc="Avro block codec: " + ", ".join(AVRO_CODECS)
                                     + " (snappy needs the cramjam package)")


class AvroEventSerializer(EventSerializer[AvroEventConfig]):
    """Flume's `avro_event`: an Avro container file of Flume Event records.

    Like Flume (which flushes its DataFileWriter on every sink batch), each batch ends an Avro
    block, so everything a sink has written is a readable container file; `syncIntervalBytes`
    additionally cuts a block inside a batch that is larger than that.
    """

    def __init__(self, config: AvroEventConfig) -> None:
        super().__init__(config)
        self._buffer = io.BytesIO()
        self._writer: Writer | None = None

    def begin(self) -> bytes:
        self._buffer = io.BytesIO()
        self._writer = Writer(
            self._buffer,
            FLUME_EVENT_SCHEMA,
            codec=self.config.compression_codec,
            sync_interval=self.config.sync_interval_bytes,
        )
        return self._drain()

    def encode(self, events: Sequence[Event]) -> bytes:
        if self._writer is None:
            raise RuntimeError("avro_event serializer: encode() called before begin()")
        write = self._writer.write
        for event in events:
            write({"headers": event.headers, "body": event.body})
        self._writer.flush()
        return self._drain()

    def end(self) -> bytes:
        if self._writer is not None:
            self._writer.flush()
            self._writer = None
        return self._drain()

    def _drain(self) -> bytes:
        data = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return data


def hadoop_vint(value: int) -> bytes:
    """Hadoop's WritableUtils.writeVLong: one byte for -112..127, else a length byte and big-endian bytes."""
    if -112 <= value <= 127:
        return struct.pack(">b", value)
    length = -112
    if value < 0:
        value = ~value
        length = -120
    tmp = value
    while tmp:
        tmp >>= 8
        length -= 1
    size = -(length + 120) if length < -120 else -(length + 112)
    return struct.pack(">b", length) + value.to_bytes(size, "big")


def hadoop_text(text: str | bytes) -> bytes:
    """A Hadoop Text: vint length, then UTF-8 bytes."""
    data = text.encode() if isinstance(text, str) else text
    return hadoop_vint(len(data)) + data


@dataclass(frozen=True)
class SequenceFileConfig(Config):
    write_format: str = key("writeFormat", one_of("Writable", "Text"), "writable",
                            doc="value class: Writable = BytesWritable, Text = Text")


class SequenceFileSerializer(EventSerializer[SequenceFileConfig]):
    """Hadoop's SequenceFile (version 6, uncompressed), as Flume's hdfs sink writes it by default.

    Keys are LongWritable event times (the `timestamp` header, else now); values are the bodies as
    BytesWritable (`writeFormat` Writable) or Text. Each batch after the first starts with a sync
    marker, which lets readers split the file between batches.
    """

    KEY_CLASS = "org.apache.hadoop.io.LongWritable"
    VALUE_CLASSES = {"writable": "org.apache.hadoop.io.BytesWritable", "text": "org.apache.hadoop.io.Text"}

    def __init__(self, config: SequenceFileConfig) -> None:
        super().__init__(config)
        self.text_values = config.write_format == "text"
        self.sync = os.urandom(16)
        self._synced = False

    def begin(self) -> bytes:
        self.sync = os.urandom(16)
        self._synced = True
        value_class = self.VALUE_CLASSES["text" if self.text_values else "writable"]
        return (b"SEQ\x06" + hadoop_text(self.KEY_CLASS) + hadoop_text(value_class)
                + b"\x00\x00" + struct.pack(">i", 0) + self.sync)

    def encode(self, events: Sequence[Event]) -> bytes:
        parts = [] if self._synced else [struct.pack(">i", -1), self.sync]
        self._synced = False
        now = int(time.time() * 1000)
        pack = struct.pack
        for event in events:
            key = pack(">q", _event_time(event, now))
            body = event.body
            value = hadoop_text(body) if self.text_values else pack(">i", len(body)) + body
            parts.append(pack(">ii", 8 + len(value), 8))
            parts.append(key)
            parts.append(value)
        return b"".join(parts)


def _event_time(event: Event, now: int) -> int:
    raw = event.headers.get("timestamp")
    if raw is None:
        return now
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"event timestamp header {raw!r} is not epoch milliseconds") from None


def _serializer_class(type_name: str) -> type[EventSerializer[Any]]:
    try:
        cls = lookup("serializer", type_name)
    except UnknownType as error:
        raise ValueError(str(error)) from None
    if not (isinstance(cls, type) and issubclass(cls, EventSerializer)):
        raise ValueError(f"serializer {type_name!r} is not an EventSerializer")
    return cls


def serializer_problems(type_name: str, params: Mapping[str, str]) -> list[tuple[str, str]]:
    """Problems with a serializer's type and `serializer.*` keys, as (key, message) for validation."""
    try:
        cls = _serializer_class(type_name)
    except ValueError as error:
        return [("serializer", str(error))]
    _, problems = resolve(cls.config_class, params)
    return [("serializer." + p.key, p.message) for p in problems if p.severity == "error"]


def create_serializer(type_name: str, params: Mapping[str, str]) -> EventSerializer[Any]:
    """A serializer by Flume type name (`text`, `avro_event`...) with its keys resolved.

    Raises ValueError naming every bad key.
    """
    cls = _serializer_class(type_name)
    try:
        config = config_of(cls.config_class, params)
    except InvalidSetting as error:
        errors = [f"serializer.{key}: {message}" for key, message in error.problems]
        raise ValueError(f"bad {type_name} serializer settings: " + "; ".join(errors)) from None
    return cls(config)
