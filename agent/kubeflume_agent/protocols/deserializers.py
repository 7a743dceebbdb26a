"""Flume's event deserializers for the spooling directory source: LINE, BLOB and AVRO.

A deserializer reads events from one open file and can say where it is (`tell()`) and go back
there (`seek()`), so the source saves a position only after the channel committed the events
before it, and a restart resumes exactly there. Positions are plain integers:
- LINE: the byte offset of the next line (or of the next piece of a line longer than `maxLineLength`);
- BLOB: the byte offset of the next piece (a file longer than `maxBlobLength` gives several events);
- AVRO: `block_offset << 24 | records already read from that block`.
"""

from __future__ import annotations

import codecs
import io
import json
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import fastavro
from fastavro.read import block_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

from kubeflume_agent.config.keys import Config, Configurable, charset, key, one_of, positive_integer
from kubeflume_agent.core.event import Event

SCHEMA_HASH_HEADER = "flume.avro.schema.hash"
SCHEMA_LITERAL_HEADER = "flume.avro.schema.literal"
AVRO_INDEX_BITS = 24
MAX_BYTES_PER_CHAR = 4  # UTF-8's worst case; enough for every charset Python decodes


class UndecodableInput(ValueError):
    """Bytes that are not valid in `inputCharset` while `decodeErrorPolicy` is FAIL."""


DeserializerConfigT = TypeVar("DeserializerConfigT", bound=Config)


class Deserializer(Configurable[DeserializerConfigT]):
    """Built from its typed config (the `deserializer.*` keys) and the file it reads."""

    def __init__(self, config: DeserializerConfigT, stream: BinaryIO, input_charset: str, decode_errors: str) -> None:
        self.config = config
        self.stream = stream
        self.input_charset = input_charset
        self.decode_errors = decode_errors  # "fail", "replace" or "ignore"

    def read_events(self, count: int) -> list[Event]:
        """Up to `count` events from the current position; [] at the end of the file."""
        raise NotImplementedError

    def tell(self) -> int:
        raise NotImplementedError

    def seek(self, position: int) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class LineDeserializerConfig(Config):
    max_line_length: int = key("maxLineLength", positive_integer, 2048,
                               doc="characters per event; longer lines are split")
    output_charset: str = key("outputCharset", charset, "utf-8", doc="charset of the event bodies")


class LineDeserializer(Deserializer[LineDeserializerConfig]):
    """One event per `\\n`-terminated line (the `\\n` dropped, a `\\r` kept), lines longer than
    `maxLineLength` characters split into several events; re-encoded in `outputCharset`."""

    def __init__(self, config: LineDeserializerConfig, stream: BinaryIO, input_charset: str,
                 decode_errors: str) -> None:
        super().__init__(config, stream, input_charset, decode_errors)
        self.max_chars = config.max_line_length
        self.output_charset = config.output_charset
        self._position = stream.tell()

    def read_events(self, count: int) -> list[Event]:
        events: list[Event] = []
        stream = self.stream
        stream.seek(self._position)
        limit = self.max_chars * MAX_BYTES_PER_CHAR + 1  # never hold more than one event's worth
        while len(events) < count:
            raw = stream.readline(limit)
            if not raw:
                break
            complete = raw.endswith(b"\n")
            text = self._decode(raw[:-1] if complete else raw, final=complete or len(raw) < limit)
            if complete and len(text) <= self.max_chars:
                events.append(Event(text.encode(self.output_charset)))
                self._position += len(raw)
                continue
            piece = text[: self.max_chars]  # the rest is read again as the next event
            events.append(Event(piece.encode(self.output_charset)))
            self._position += len(piece.encode(self.input_charset, "replace"))
            stream.seek(self._position)
        return events

    def _decode(self, data: bytes, final: bool) -> str:
        """Decode; unless `final`, a character cut off at the end of `data` is left for later."""
        errors = "strict" if self.decode_errors == "fail" else self.decode_errors
        decoder = codecs.getincrementaldecoder(self.input_charset)(errors)
        try:
            return decoder.decode(data, final)
        except UnicodeDecodeError as error:
            raise UndecodableInput(
                f"byte {error.start} of the line at offset {self._position} is not valid "
                f"{self.input_charset} ({error.reason})") from None

    def tell(self) -> int:
        return self._position

    def seek(self, position: int) -> None:
        self._position = position


@dataclass(frozen=True)
class BlobDeserializerConfig(Config):
    max_blob_length: int = key("maxBlobLength", positive_integer, 100000000, doc="most bytes per event")


class BlobDeserializer(Deserializer[BlobDeserializerConfig]):
    """The whole file as one event (body = the raw bytes), in pieces of at most `maxBlobLength`."""

    def __init__(self, config: BlobDeserializerConfig, stream: BinaryIO, input_charset: str,
                 decode_errors: str) -> None:
        super().__init__(config, stream, input_charset, decode_errors)
        self._position = stream.tell()
        self._sent_empty = False

    def read_events(self, count: int) -> list[Event]:
        self.stream.seek(self._position)
        events: list[Event] = []
        while len(events) < count:
            body = self.stream.read(self.config.max_blob_length)
            if not body:
                break
            events.append(Event(body))
            self._position += len(body)
        return events

    def tell(self) -> int:
        return self._position

    def seek(self, position: int) -> None:
        self._position = position


@dataclass(frozen=True)
class AvroDeserializerConfig(Config):
    schema_type: str = key("schemaType", one_of("HASH", "LITERAL"), "hash", doc="how events carry their schema")


class AvroDeserializer(Deserializer[AvroDeserializerConfig]):
    """One event per record of an Avro container file; body = the record in Avro binary with the
    file's schema, header `flume.avro.schema.hash` (CRC-64-AVRO fingerprint of the parsing form,
    hex, as Flume's Hex.encodeHexString gives it) or `flume.avro.schema.literal` (the schema JSON),
    as `schemaType` says. Blocks are read one at a time."""

    def __init__(self, config: AvroDeserializerConfig, stream: BinaryIO, input_charset: str,
                 decode_errors: str) -> None:
        super().__init__(config, stream, input_charset, decode_errors)
        self._records: list[Any] | None = None  # the records of the current block; None past the last
        self._offset = 0  # where the current block starts
        self._index = 0  # records of it already read
        stream.seek(0)
        self.schema = fastavro.reader(stream).writer_schema
        self.parsed_schema = fastavro.parse_schema(self.schema)
        if config.schema_type == "literal":
            self.schema_header = (SCHEMA_LITERAL_HEADER, json.dumps(self.schema, separators=(",", ":")))
        else:
            self.schema_header = (SCHEMA_HASH_HEADER, fingerprint(to_parsing_canonical_form(self.schema),
                                                                  "CRC-64-AVRO"))
        self.seek(0)

    def read_events(self, count: int) -> list[Event]:
        events: list[Event] = []
        name, value = self.schema_header
        while len(events) < count and self._records is not None:
            for record in self._records[self._index:self._index + count - len(events)]:
                body = io.BytesIO()
                fastavro.schemaless_writer(body, self.parsed_schema, record)
                events.append(Event(body.getvalue(), {name: value}))
                self._index += 1
            if self._index >= len(self._records):
                self._next_block()
        return events

    def tell(self) -> int:
        return self._offset << AVRO_INDEX_BITS | self._index

    def seek(self, position: int) -> None:
        """Go to a block by its offset, then skip the records already read from it."""
        offset, index = position >> AVRO_INDEX_BITS, position & ((1 << AVRO_INDEX_BITS) - 1)
        self.stream.seek(0)
        self._blocks = block_reader(self.stream)
        self._next_block()
        while self._records is not None and self._offset < offset:
            self._next_block()
        self._index = index if self._records is not None and self._offset == offset else 0

    def _next_block(self) -> None:
        block = next(self._blocks, None)
        self._index = 0
        if block is None:
            self._records = None
            self._offset = self.stream.seek(0, io.SEEK_END)  # past the last block: the end
        else:
            self._offset, self._records = block.offset, list(block)


DESERIALIZERS: dict[str, type[Deserializer[Any]]] = {
    "line": LineDeserializer,
    "avro": AvroDeserializer,
    "blob": BlobDeserializer,
    "org.apache.flume.serialization.linedeserializer$builder": LineDeserializer,
    "org.apache.flume.serialization.avroeventdeserializer$builder": AvroDeserializer,
    "org.apache.flume.sink.solr.morphline.blobdeserializer$builder": BlobDeserializer,
}


def deserializer_class(name: str) -> type[Deserializer[Any]]:
    try:
        return DESERIALIZERS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown deserializer {name!r}; expected LINE, BLOB or AVRO") from None
