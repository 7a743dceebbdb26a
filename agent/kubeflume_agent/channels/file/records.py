"""The bytes of the file channel's data records: how a transaction is encoded, and read back.

    record       := magic:b"KFR\\x02" crc:u32 kind:u8 txid:u64 length:u32 payload[length]
    crc          := CRC-32 (zlib) of kind, txid, length and payload
    PUTS payload := count:u32 headers_length:u32 entry*count headers bodies
    entry        := back:u32 body_length:u32     (back: bytes from the record's start to the entry)
    headers      := JSON array of `count` header objects, UTF-8; empty when no event has headers
    bodies       := the event bodies, one after the other
    COMMIT       := put_count:u32 take_pointer:i64 ...
    PUT (kind 1) := headers_length:u32 headers:JSON object body   (one event; no longer written)

All integers are little-endian. A transaction is one PUTS record per ~`RECORD_TARGET` bytes of its
events, then its COMMIT record. An event's pointer is the position of its entry in the data log;
`back` leads from the entry to its record, whose CRC is checked before any event of it is read.

Why a record per batch rather than per event: every step of encoding is then one C-level call
over the whole batch (the bodies are joined once, all headers become one JSON array, the entries
are two array slices), so a put costs a few calls per transaction instead of per event, and the
CRC (computed by the writer thread, where zlib releases the GIL) runs beside the event loop.
The price is that a damaged record loses all its events, so records are kept to about 256 KiB.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import attrgetter

import orjson

from kubeflume_agent.core.event import Event

RECORD_MAGIC = b"KFR\x02"
CRC = struct.Struct("<I")
PREFIX = struct.Struct("<4sI")  # magic and CRC: what the writer puts before each record it is given
FIELDS = struct.Struct("<BQI")  # kind, txid, payload length: covered by the CRC
PUTS_FIELDS = struct.Struct("<BQIII")  # the same, plus a PUTS payload's count and headers length
PUTS_COUNTS = struct.Struct("<II")
U32 = struct.Struct("<I")
HEAD_SIZE = PREFIX.size + FIELDS.size
LENGTH_AT = HEAD_SIZE - U32.size
ENTRY_SIZE = 8
FIRST_ENTRY = HEAD_SIZE + PUTS_COUNTS.size  # where a PUTS record's entries start
PUT = 1
COMMIT = 2
PUTS = 3
KINDS = (PUT, COMMIT, PUTS)
RECORD_TARGET = 256 * 1024  # bytes of events per PUTS record (at least one event)
_BODY = attrgetter("body")
_HEADERS = attrgetter("headers")
_STEPS = array("q", range(0, ENTRY_SIZE * 65536, ENTRY_SIZE)).tobytes()  # 0, 8, 16, ... as i64
_BACKS = array("I", range(FIRST_ENTRY, FIRST_ENTRY + RECORD_TARGET, ENTRY_SIZE))  # every entry's `back`
_ONES = array("q", [1] * 65536).tobytes()


@dataclass
class EncodedTransaction:
    """A transaction's records without their magic and CRC (the writer adds them), and where
    its PUTS records' entries start relative to the transaction's first byte."""

    records: list[bytes]
    put_runs: list[tuple[int, int]]  # (offset of the first entry, number of events) per PUTS record
    size: int
    has_puts: bool
    sizes: array  # of the bodies, in order


def encode_transaction(txid: int, events: Sequence[Event], take_pointers: array) -> EncodedTransaction:
    bodies = list(map(_BODY, events))
    lengths = array("I", map(len, bodies))
    body_bytes = sum(lengths)
    records: list[bytes] = []
    put_runs: list[tuple[int, int]] = []
    size = 0
    for start, stop, record_bytes in _record_bounds(lengths, body_bytes):
        record = _encode_puts(txid, events[start:stop], bodies[start:stop], lengths[start:stop], record_bytes)
        put_runs.append((size + FIRST_ENTRY, stop - start))
        records.append(record)
        size += PREFIX.size + len(record)
    commit = FIELDS.pack(COMMIT, txid, U32.size + 8 * len(take_pointers)) + U32.pack(len(events)) \
        + take_pointers.tobytes()
    records.append(commit)
    return EncodedTransaction(records, put_runs, size + PREFIX.size + len(commit), bool(events), lengths)


def entry_pointers(first: int, count: int) -> array:
    """The pointers of a PUTS record's `count` events, `first` being the first one's.

    Adds `first` to every element of the progression 0, 8, 16, ... as one big-integer operation
    on the array's bytes (no element overflows its 64 bits, so none carries into the next), which
    is three times faster than an array built from a range: this runs for every committed batch.
    """
    pointers = array("q")
    for start in range(0, count, 65536):
        size = ENTRY_SIZE * min(65536, count - start)
        base = first + ENTRY_SIZE * start
        value = int.from_bytes(_STEPS[:size], "little") + base * int.from_bytes(_ONES[:size], "little")
        pointers.frombytes(value.to_bytes(size, "little"))
    return pointers


def _record_bounds(lengths: array, body_bytes: int) -> Iterator[tuple[int, int, int]]:
    """Cut a batch into runs of about RECORD_TARGET bytes (a bigger event gets a record of its own):
    (start, stop, body bytes) of each."""
    count = len(lengths)
    if body_bytes + ENTRY_SIZE * count <= RECORD_TARGET:
        if count:
            yield 0, count, body_bytes
        return
    ends = list(accumulate(map(ENTRY_SIZE.__add__, lengths)))
    start, base = 0, 0
    while start < count:
        stop = max(bisect_right(ends, base + RECORD_TARGET, start), start + 1)
        yield start, stop, ends[stop - 1] - base - ENTRY_SIZE * (stop - start)
        base, start = ends[stop - 1], stop


def _encode_puts(txid: int, events: Sequence[Event], bodies: list[bytes], lengths: array, body_bytes: int) -> bytes:
    count = len(bodies)
    headers = orjson.dumps(list(map(_HEADERS, events))) if any(map(_HEADERS, events)) else b""
    entries = array("I", bytes(ENTRY_SIZE * count))
    entries[0::2] = _BACKS[:count]  # a record holds at most RECORD_TARGET // ENTRY_SIZE events
    entries[1::2] = lengths
    length = PUTS_COUNTS.size + ENTRY_SIZE * count + len(headers) + body_bytes
    parts: list[bytes | array[int]] = [PUTS_FIELDS.pack(PUTS, txid, length, count, len(headers)), entries, headers]
    parts += bodies
    return b"".join(parts)


def prefixed(record: bytes) -> bytes:
    """The magic and CRC that go before `record` in the file."""
    return PREFIX.pack(RECORD_MAGIC, zlib.crc32(record))


def check(buffer, offset: int) -> tuple[int, int, int] | None:
    """(kind, txid, payload length) of a sound record at `offset`, else None."""
    if len(buffer) - offset < HEAD_SIZE or buffer[offset:offset + 4] != RECORD_MAGIC:
        return None
    kind, txid, length = FIELDS.unpack_from(buffer, offset + PREFIX.size)
    end = offset + HEAD_SIZE + length
    if kind not in KINDS or end > len(buffer):
        return None
    with memoryview(buffer) as view:
        crc = zlib.crc32(view[offset + PREFIX.size:end])
    if crc != CRC.unpack_from(buffer, offset + len(RECORD_MAGIC))[0]:
        return None
    return kind, txid, length


def puts_count(payload) -> int:
    return PUTS_COUNTS.unpack_from(payload)[0]


def decode_puts(payload: bytes) -> list[Event]:
    """Every event of a (CRC-checked) PUTS payload, in order."""
    count, headers_length = PUTS_COUNTS.unpack_from(payload)
    entries = array("I")
    entries.frombytes(payload[PUTS_COUNTS.size:PUTS_COUNTS.size + ENTRY_SIZE * count])
    headers_at = PUTS_COUNTS.size + ENTRY_SIZE * count
    bodies_at = headers_at + headers_length
    ends = list(accumulate(entries[1::2], initial=bodies_at))
    bodies = list(map(payload.__getitem__, map(slice, ends, ends[1:])))
    if not headers_length:
        return list(map(Event, bodies))
    return list(map(Event, bodies, orjson.loads(payload[headers_at:bodies_at])))


def decode_event(payload: bytes | memoryview) -> Event:
    """The event of a PUT record (kind 1, written by earlier versions)."""
    (headers_length,) = U32.unpack_from(payload)
    end = 4 + headers_length
    headers = orjson.loads(payload[4:end]) if headers_length else {}
    return Event(bytes(payload[end:]), headers)


def decode_commit(payload: bytes | memoryview) -> tuple[int, array]:
    takes = array("q")
    takes.frombytes(payload[4:])
    return U32.unpack_from(payload)[0], takes
