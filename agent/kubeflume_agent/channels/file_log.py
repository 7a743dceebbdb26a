"""The file channel's data log: append-only files of checksummed records (format below).

Each data file `log-<id>` starts with a 16-byte file header, then records:

    file header  := b"KFLOGV01" id:u32 reserved:u32
    record       := magic:b"KFR\\x02" crc:u32 kind:u8 txid:u64 length:u32 payload[length]
    crc          := CRC-32 (zlib) of kind, txid, length and payload
    PUT payload  := headers_length:u32 headers:JSON object (UTF-8, empty when no headers) body
    COMMIT       := put_count:u32 take_pointer:i64 ...

All integers are little-endian. A transaction is its PUT records followed by one COMMIT record (the
number of its puts and the pointers of the events it took), written contiguously in one `writev` and
made durable by one `fdatasync` shared with every transaction of the same group. A pointer is
`file_id << 32 | offset` of a PUT record. Readers verify the CRC of every record; `scan` skips
damaged bytes by searching for the next magic whose record checks out (see docs/file-channel-format.md).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import struct
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import orjson

from kubeflume_agent.event import Event

log = logging.getLogger(__name__)

FILE_MAGIC = b"KFLOGV01"
FILE_HEADER = struct.Struct("<8sII")
RECORD_MAGIC = b"KFR\x02"
CRC = struct.Struct("<I")
FIELDS = struct.Struct("<BQI")  # kind, txid, payload length: after magic and CRC, covered by the CRC
PUT_FIELDS = struct.Struct("<BQII")  # the same, plus a PUT payload's headers length
U32 = struct.Struct("<I")
FIELDS_AT = len(RECORD_MAGIC) + CRC.size
HEAD_SIZE = FIELDS_AT + FIELDS.size
LENGTH_AT = HEAD_SIZE - U32.size
EMPTY_HEADERS_COST = PUT_FIELDS.size - FIELDS.size
PUT = 1
COMMIT = 2
FILE_NAME = re.compile(r"^log-(\d+)$")
READ_WINDOW = 256 * 1024
RELEASE_EVERY = 16 * 1024 * 1024
IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024


def pointer(file_id: int, offset: int) -> int:
    return file_id << 32 | offset


def split_pointer(value: int) -> tuple[int, int]:
    return value >> 32, value & 0xFFFFFFFF


class SpaceExhausted(OSError):
    """Less free space than `minimumRequiredSpace` is left: the put is refused, nothing is written."""


@dataclass
class EncodedTransaction:
    """One transaction's records, ready to append; `put_offsets` are relative to its start."""

    data: bytes
    put_offsets: list[int]
    has_puts: bool


def encode_transaction(txid: int, events: Sequence[Event], take_pointers: Sequence[int]) -> EncodedTransaction:
    """The records of one transaction; the hot path of every put, so kept to a few C calls an event
    (measured faster than one map() pass over the batch per step)."""
    parts: list[bytes] = []
    put_offsets: list[int] = []
    offset = 0
    dumps, crc32, pack, crc_pack = orjson.dumps, zlib.crc32, PUT_FIELDS.pack, CRC.pack
    for event in events:
        headers = dumps(event.headers) if event.headers else b""
        body = event.body
        length = EMPTY_HEADERS_COST + len(headers) + len(body)
        fields = pack(PUT, txid, length, len(headers))
        if headers:
            fields += headers
        parts += (RECORD_MAGIC, crc_pack(crc32(body, crc32(fields))), fields, body)
        put_offsets.append(offset)
        offset += HEAD_SIZE + length
    takes = take_pointers if isinstance(take_pointers, array) else array("q", take_pointers)
    commit = FIELDS.pack(COMMIT, txid, U32.size + 8 * len(takes)) + U32.pack(len(events)) + takes.tobytes()
    parts += (RECORD_MAGIC, crc_pack(crc32(commit)), commit)
    return EncodedTransaction(b"".join(parts), put_offsets, bool(events))


def decode_event(payload: bytes | memoryview) -> Event:
    (headers_length,) = U32.unpack_from(payload)
    end = 4 + headers_length
    headers = orjson.loads(payload[4:end]) if headers_length else {}
    return Event(bytes(payload[end:]), headers)


def decode_commit(payload: bytes | memoryview) -> tuple[int, array]:
    takes = array("q")
    takes.frombytes(payload[4:])
    return U32.unpack_from(payload)[0], takes


def _check(buffer, offset: int) -> tuple[int, int, int] | None:
    """(kind, txid, payload length) of a sound record at `offset`, else None."""
    if len(buffer) - offset < HEAD_SIZE or buffer[offset:offset + 4] != RECORD_MAGIC:
        return None
    kind, txid, length = FIELDS.unpack_from(buffer, offset + FIELDS_AT)
    end = offset + HEAD_SIZE + length
    if kind not in (PUT, COMMIT) or end > len(buffer):
        return None
    with memoryview(buffer) as view:
        crc = zlib.crc32(view[offset + FIELDS_AT:end])
    if crc != CRC.unpack_from(buffer, offset + len(RECORD_MAGIC))[0]:
        return None
    return kind, txid, length


@dataclass
class ScanStats:
    """What a scan found wrong; the replay logs and counts it."""

    corrupt_records: int = 0
    corrupt_bytes: int = 0
    torn_tail_bytes: int = 0
    damaged_files: list[str] = field(default_factory=list)


def scan(path: str, start: int, stats: ScanStats) -> Iterator[tuple[int, int, int, bytes]]:
    """Yield (kind, txid, offset, payload) of every sound record from `start` on.

    Damaged bytes are skipped up to the next record that checks out (counted as corrupt); damage
    that runs to the end of the file is a torn tail (a write cut short by a crash).
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size <= start:
            return
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            offset = start
            released = 0
            while offset < size:
                if offset - released >= RELEASE_EVERY:  # keep replay's resident memory small
                    done = offset // mmap.PAGESIZE * mmap.PAGESIZE
                    data.madvise(mmap.MADV_DONTNEED, released, done - released)
                    released = done
                found = _check(data, offset)
                if found is None:
                    resume = _resync(data, offset + 1)
                    if resume is None:
                        stats.torn_tail_bytes += size - offset
                        return
                    stats.corrupt_records += 1
                    stats.corrupt_bytes += resume - offset
                    if path not in stats.damaged_files:
                        stats.damaged_files.append(path)
                    offset = resume
                    continue
                kind, txid, length = found
                body_start = offset + HEAD_SIZE
                yield kind, txid, offset, data[body_start:body_start + length]
                offset = body_start + length


def _resync(data, offset: int) -> int | None:
    while True:
        offset = data.find(RECORD_MAGIC, offset)
        if offset < 0:
            return None
        if _check(data, offset) is not None:
            return offset
        offset += 1


def list_log_files(data_dirs: Sequence[str]) -> dict[int, str]:
    """file id -> path of every data file in the data directories."""
    files: dict[int, str] = {}
    for directory in data_dirs:
        for name in os.listdir(directory):
            match = FILE_NAME.match(name)
            if match:
                files[int(match.group(1))] = os.path.join(directory, name)
    return files


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LogWriter:
    """Appends groups of transactions to the current data file; runs in the channel's writer thread.

    Files roll when they have grown past `max_file_size` (checked before each group, so a file
    may overshoot by one group); file N lives in data_dirs[N % len(data_dirs)].
    """

    def __init__(self, data_dirs: Sequence[str], first_file_id: int, max_file_size: int,
                 minimum_free_space: int) -> None:
        self.data_dirs = list(data_dirs)
        self.max_file_size = max_file_size
        self.minimum_free_space = minimum_free_space
        self.file_id = first_file_id - 1
        self.fd = -1
        self.offset = 0
        self._roll()

    def path_of(self, file_id: int) -> str:
        return os.path.join(self.data_dirs[file_id % len(self.data_dirs)], f"log-{file_id}")

    def append_group(self, transactions: Sequence[EncodedTransaction]) -> tuple[list[int | Exception], int]:
        """Write and fdatasync a group: per transaction its start pointer (or the error), and the
        pointer just past the group. A failed write is cut off again, so the file stays sound."""
        if self.offset >= self.max_file_size:
            self._roll()
        free = self._free_space()
        results: list[int | Exception] = []
        chunks: list[bytes] = []
        offset = self.offset
        for transaction in transactions:
            size = len(transaction.data)
            if transaction.has_puts and free - size < self.minimum_free_space:
                results.append(SpaceExhausted(
                    f"Usable space exhausted, only {free} bytes remaining in "
                    f"{os.path.dirname(self.path_of(self.file_id))}, required {self.minimum_free_space} bytes"
                ))
                continue
            results.append(pointer(self.file_id, offset))
            chunks.append(transaction.data)
            offset += size
            free -= size
        if chunks:
            try:
                self._write_all(chunks)
                os.fdatasync(self.fd)
            except OSError as error:
                self._cut_back()
                return [error] * len(transactions), pointer(self.file_id, self.offset)
        self.offset = offset
        return results, pointer(self.file_id, offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _free_space(self) -> int:
        stat = os.statvfs(os.path.dirname(self.path_of(self.file_id)))
        return stat.f_bavail * stat.f_frsize

    def _write_all(self, chunks: list[bytes]) -> None:
        """One `writev` per IOV_MAX transactions: the group is not copied into one buffer first."""
        for start in range(0, len(chunks), IOV_MAX):
            batch = chunks[start:start + IOV_MAX]
            written = os.writev(self.fd, batch)
            view = memoryview(b"".join(batch))[written:] if written < sum(map(len, batch)) else b""
            while view:  # a short write (rare on a regular file): write the rest
                view = view[os.write(self.fd, view):]

    def _cut_back(self) -> None:
        """Drop a failed group's bytes; if even that fails, continue in a fresh file."""
        try:
            os.ftruncate(self.fd, self.offset)
            os.lseek(self.fd, self.offset, os.SEEK_SET)
            os.fdatasync(self.fd)
        except OSError:
            log.exception("cannot cut back %s after a failed write; continuing in a new file",
                          self.path_of(self.file_id))
            self._roll()

    def _roll(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
        self.file_id += 1
        path = self.path_of(self.file_id)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self.fd, FILE_HEADER.pack(FILE_MAGIC, self.file_id, 0))
        os.fsync(self.fd)
        fsync_directory(os.path.dirname(path))
        self.offset = FILE_HEADER.size


class LogReader:
    """Reads events back by pointer (takes of events no longer held in memory).

    Reads a window at a time, so a run of neighbouring records costs one system call.
    """

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths
        self._fds: dict[int, int] = {}
        self._window_file = -1
        self._window_start = 0
        self._window = b""

    def read(self, pointers: Sequence[int]) -> list[Event | None]:
        """The events at `pointers`, None where the record no longer checks out."""
        return [self._read_one(value) for value in pointers]

    def forget(self, file_id: int) -> None:
        fd = self._fds.pop(file_id, None)
        if fd is not None:
            os.close(fd)
        self.paths.pop(file_id, None)
        if self._window_file == file_id:
            self._window_file, self._window = -1, b""

    def close(self) -> None:
        for file_id in list(self._fds):
            self.forget(file_id)

    def _open(self, file_id: int) -> int | None:
        fd = self._fds.get(file_id)
        if fd is None and file_id in self.paths:
            with contextlib.suppress(FileNotFoundError):
                fd = self._fds[file_id] = os.open(self.paths[file_id], os.O_RDONLY)
        return fd

    def discard_window(self) -> None:
        """Forget the bytes read ahead: they may hold a failed write's records, since cut off and
        about to be overwritten by the next group."""
        self._window_file, self._window = -1, b""

    def _read_one(self, value: int) -> Event | None:
        file_id, offset = split_pointer(value)
        relative = offset - self._window_start
        if file_id != self._window_file or relative < 0 or relative + HEAD_SIZE > len(self._window):
            relative = self._load(file_id, offset, HEAD_SIZE)
        if self._window[relative:relative + 4] != RECORD_MAGIC:
            return None
        length = U32.unpack_from(self._window, relative + LENGTH_AT)[0]
        if relative + HEAD_SIZE + length > len(self._window):
            relative = self._load(file_id, offset, HEAD_SIZE + length)
        found = _check(self._window, relative)
        if found is None or found[0] != PUT:
            return None
        start = relative + HEAD_SIZE
        return decode_event(memoryview(self._window)[start:start + found[2]])

    def _load(self, file_id: int, offset: int, needed: int) -> int:
        fd = self._open(file_id)
        if fd is None:  # the data file is gone (deleted by hand): its records read as damaged
            self._window = b""
        else:
            available = max(0, os.fstat(fd).st_size - offset)  # a damaged length must not size the read
            self._window = os.pread(fd, min(max(READ_WINDOW, needed), available), offset)
        self._window_file, self._window_start = file_id, offset
        if len(self._window) < HEAD_SIZE:
            self._window += bytes(HEAD_SIZE)  # a short read then fails the checks
        return 0
