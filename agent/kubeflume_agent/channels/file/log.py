"""The file channel's data log: append-only files of checksummed records, and reading them back.

Each data file `log-<id>` starts with a 16-byte file header, then records (their bytes are in
`records`):

    file header  := b"KFLOGV01" id:u32 reserved:u32

A group of transactions is written with `writev` and made durable by one `fdatasync`. A pointer is
`file_id << 32 | offset` of an event's entry in its PUTS record (of a PUT record, for logs written
by earlier versions). Readers verify the CRC of every record; `scan` skips damaged bytes by
searching for the next magic whose record checks out (see docs/file-channel-format.md).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from kubeflume_agent.channels.file.records import (
    ENTRY_SIZE,
    FIRST_ENTRY,
    HEAD_SIZE,
    LENGTH_AT,
    PUT,
    PUTS,
    RECORD_MAGIC,
    U32,
    EncodedTransaction,
    check,
    decode_event,
    decode_puts,
    prefixed,
)
from kubeflume_agent.core.event import Event

log = logging.getLogger(__name__)

FILE_MAGIC = b"KFLOGV01"
FILE_HEADER = struct.Struct("<8sII")
FILE_NAME = re.compile(r"^log-(\d+)$")
READ_WINDOW = 256 * 1024
RELEASE_EVERY = 16 * 1024 * 1024
FREE_SPACE_RECHECK = 0.5
IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024


def pointer(file_id: int, offset: int) -> int:
    return file_id << 32 | offset


def split_pointer(value: int) -> tuple[int, int]:
    return value >> 32, value & 0xFFFFFFFF


class SpaceExhausted(OSError):
    """Less free space than `minimumRequiredSpace` is left: the put is refused, nothing is written."""


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
                found = check(data, offset)
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
        if check(data, offset) is not None:
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
        self._free = 0
        self._free_measured: float  # set by _roll
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
            if transaction.has_puts and free - transaction.size < self.minimum_free_space:
                results.append(SpaceExhausted(
                    f"Usable space exhausted, only {free} bytes remaining in "
                    f"{os.path.dirname(self.path_of(self.file_id))}, required {self.minimum_free_space} bytes"
                ))
                continue
            results.append(pointer(self.file_id, offset))
            for record in transaction.records:
                chunks += (prefixed(record), record)
            offset += transaction.size
            free -= transaction.size
        if chunks:
            try:
                self._write_all(chunks)
                os.fdatasync(self.fd)
            except OSError as error:
                self._cut_back()
                return [error] * len(transactions), pointer(self.file_id, self.offset)
        self.offset = offset
        self._free = free
        return results, pointer(self.file_id, offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _free_space(self) -> int:
        """Free bytes on the data file's disk: measured at most every FREE_SPACE_RECHECK seconds
        (less what was written since), and before every group once it nears the minimum."""
        now = time.monotonic()
        if now - self._free_measured > FREE_SPACE_RECHECK or self._free < 2 * self.minimum_free_space:
            stat = os.statvfs(os.path.dirname(self.path_of(self.file_id)))
            self._free, self._free_measured = stat.f_bavail * stat.f_frsize, now
        return self._free

    def _write_all(self, chunks: list[bytes]) -> None:
        """One `writev` per IOV_MAX buffers: the group is not copied into one buffer first."""
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
        self._free_measured = -FREE_SPACE_RECHECK  # the new file may be on another disk


class LogReader:
    """Reads events back by pointer (takes of events no longer held in memory).

    Reads a window at a time, so a run of neighbouring records costs one system call, and keeps
    the events of the last PUTS record it checked, so the takes of its other events cost nothing.
    """

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths
        self._fds: dict[int, int] = {}
        self._window_file = -1
        self._window_start = 0
        self._window = b""
        self._record: tuple[int, int, list[Event] | None] = (-1, -1, None)  # file, offset, its events

    def read(self, pointers: Sequence[int]) -> list[Event | None]:
        """The events at `pointers`, None where the record no longer checks out."""
        return [self._read_one(value) for value in pointers]

    def forget(self, file_id: int) -> None:
        fd = self._fds.pop(file_id, None)
        if fd is not None:
            os.close(fd)
        self.paths.pop(file_id, None)
        if self._window_file == file_id:
            self.discard_window()

    def close(self) -> None:
        for file_id in list(self._fds):
            self.forget(file_id)

    def discard_window(self) -> None:
        """Forget the bytes read ahead and the record kept: they may hold a failed write's records,
        since cut off and about to be overwritten by the next group."""
        self._window_file, self._window = -1, b""
        self._record = (-1, -1, None)

    def _open(self, file_id: int) -> int | None:
        fd = self._fds.get(file_id)
        if fd is None and file_id in self.paths:
            with contextlib.suppress(FileNotFoundError):
                fd = self._fds[file_id] = os.open(self.paths[file_id], os.O_RDONLY)
        return fd

    def _read_one(self, value: int) -> Event | None:
        file_id, offset = split_pointer(value)
        kept_file, kept_start, events = self._record
        if kept_file == file_id and events is not None and kept_start < offset:
            found = _entry_of(events, offset - kept_start)
            if found is not None:  # the usual case: the next entry of the record kept
                return found
        first = self._bytes(file_id, offset, 4)
        if first == RECORD_MAGIC:  # a PUT record of an earlier version: the pointer is the record
            return self._read_put(file_id, offset)
        back = U32.unpack(first)[0]
        if back > offset:
            return None
        events = self._puts_at(file_id, offset - back)
        return None if events is None else _entry_of(events, back)

    def _puts_at(self, file_id: int, start: int) -> list[Event] | None:
        """The events of the PUTS record at `start`, None if it does not check out."""
        kept_file, kept_start, events = self._record
        if (kept_file, kept_start) != (file_id, start):
            payload = self._payload(file_id, start, PUTS)
            events = None if payload is None else decode_puts(payload)
            self._record = (file_id, start, events)
        return events

    def _read_put(self, file_id: int, offset: int) -> Event | None:
        payload = self._payload(file_id, offset, PUT)
        return None if payload is None else decode_event(payload)

    def _payload(self, file_id: int, offset: int, kind: int) -> bytes | None:
        """The payload of the record of `kind` at `offset`, if it checks out."""
        length = U32.unpack(self._bytes(file_id, offset + LENGTH_AT, 4))[0]
        record = self._bytes(file_id, offset, HEAD_SIZE + length)
        found = check(record, 0)
        return record[HEAD_SIZE:] if found is not None and found[0] == kind else None

    def _bytes(self, file_id: int, offset: int, size: int) -> bytes:
        """`size` bytes at `offset` (fewer, zero-padded to 4, past the end or in a missing file)."""
        relative = offset - self._window_start
        if file_id != self._window_file or relative < 0 or relative + size > len(self._window):
            self._load(file_id, offset, size)
            relative = 0
        found = self._window[relative:relative + size]
        return found if len(found) >= 4 else found.ljust(4, b"\0")

    def _load(self, file_id: int, offset: int, needed: int) -> None:
        fd = self._open(file_id)
        if fd is None:  # the data file is gone (deleted by hand): its records read as damaged
            self._window = b""
        else:
            available = max(0, os.fstat(fd).st_size - offset)  # a damaged length must not size the read
            self._window = os.pread(fd, min(max(READ_WINDOW, needed), available), offset)
        self._window_file, self._window_start = file_id, offset


def _entry_of(events: list[Event], back: int) -> Event | None:
    """The event whose entry lies `back` bytes into the record holding `events`, if one does."""
    index, misaligned = divmod(back - FIRST_ENTRY, ENTRY_SIZE)
    return events[index] if not misaligned and 0 <= index < len(events) else None
