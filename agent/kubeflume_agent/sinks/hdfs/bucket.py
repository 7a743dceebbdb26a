"""The files of the `hdfs` sink: one Bucket per directory + prefix, writing one file at a time.

A Bucket writes its share of a batch, rolling files at rollCount/rollSize, and can undo it: when
the batch fails anywhere, `abort()` forgets the batch's writes and marks what they may have left
in HDFS (bytes past the committed length are cut off with TRUNCATE, files the batch created are
deleted) to be cleaned up before the bucket writes again. `commit()` makes the batch's bytes count.
"""

from __future__ import annotations

import asyncio
import bz2
import gzip
import logging
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from kubeflume_agent.core.counters import SinkCounters
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.serializers import EventSerializer
from kubeflume_agent.protocols.webhdfs import FileAlreadyExists, FileNotFound, WebHDFSClient, WebHDFSError

log = logging.getLogger(__name__)

TRUNCATE_WAIT = 0.2  # seconds between checks while HDFS finishes a truncate in the background
NAME_ATTEMPTS = 10  # file numbers tried when names are taken (another writer with the same prefix)


class RenameRefused(WebHDFSError):
    """HDFS answered RENAME with false and the source is still there (the target name is taken)."""


@dataclass(frozen=True)
class Codec:
    """A CompressedStream codec. Each write is a complete member, and concatenated members are
    one valid stream for gzip and bzip2 readers (Hadoop's included)."""

    extension: str
    compress: Callable[[bytes], bytes]


CODECS = {
    "gzip": Codec(".gz", lambda data: gzip.compress(data, compresslevel=6, mtime=0)),
    "bzip2": Codec(".bz2", lambda data: bz2.compress(data, 9)),
}
UNAVAILABLE_CODECS = ("lzo", "lzop", "snappy", "default", "deflate")


def codec_name(codec: str) -> str:
    """Flume matches codecs by class name with or without "Codec": gzip, GzipCodec,
    org.apache.hadoop.io.compress.GzipCodec all mean gzip."""
    name = codec.strip().rsplit(".", 1)[-1].lower()
    return name.removesuffix("codec") or name


def codec_problem(codec: str) -> str:
    if codec_name(codec) in UNAVAILABLE_CODECS:
        return f"codec {codec} is not available here; use gzip or bzip2"
    return f"unknown codec {codec!r}; use gzip or bzip2"


@dataclass(frozen=True)
class FileLayout:
    """How files are named: final `<prefix>.<n><suffix>`, in use `<inUsePrefix>final<inUseSuffix>`."""

    suffix: str
    in_use_prefix: str
    in_use_suffix: str
    codec: Codec | None

    def names(self, prefix: str, counter: int) -> tuple[str, str]:
        final = f"{prefix}.{counter}{self.suffix}"
        return self.in_use_prefix + final + self.in_use_suffix, final

    def leftover_pattern(self, prefix: str) -> re.Pattern[str]:
        """In-use names of files from an earlier run, with the final name as group 1."""
        return re.compile(re.escape(self.in_use_prefix) + "(" + re.escape(prefix) + r"\.\d+"
                          + re.escape(self.suffix) + ")" + re.escape(self.in_use_suffix))


@dataclass(eq=False)
class HdfsFile:
    """One file being written. `committed` counts bytes whose events the channel forgot."""

    bucket: Bucket
    in_use_path: str
    final_path: str
    serializer: EventSerializer
    opened_at: float
    exists: bool = False
    attempted: bool = False  # a CREATE was sent: the file may exist even if its answer was lost
    committed: int = 0
    length: int = 0
    events: int = 0
    body_bytes: int = 0
    ended: bool = False
    dirty: bool = False  # a failed batch may have left bytes past `committed`

    def checkpoint(self) -> tuple[int, int, int, bool]:
        return self.length, self.events, self.body_bytes, self.exists

    def restore(self, state: tuple[int, int, int, bool]) -> None:
        self.length, self.events, self.body_bytes, self.exists = state
        self.dirty = True


@dataclass(eq=False)
class Files:
    """What the buckets of one sink share: its client, file naming, roll limits and counters."""

    layout: FileLayout
    roll_count: int
    roll_size: int
    roll_interval: float
    idle_timeout: float
    counters: SinkCounters
    new_serializer: Callable[[], EventSerializer]
    client: WebHDFSClient | None = None  # set when the sink starts


@dataclass(eq=False)
class Bucket:
    """One directory + file prefix: writes its current file, rolls it, and undoes failed batches."""

    files: Files
    directory: str
    prefix: str
    current: HdfsFile | None = None
    counter: int = field(default_factory=lambda: int(time.time() * 1000))
    last_write: float = field(default_factory=time.monotonic)
    abandoned: list[str] = field(default_factory=list)
    _rolled: list[HdfsFile] = field(default_factory=list)
    _undo: tuple | None = None

    @property
    def client(self) -> WebHDFSClient:
        assert self.files.client is not None, "sink not started"
        return self.files.client

    async def write(self, events: Sequence[Event]) -> None:
        """Write `events` (this batch's share), rolling files at rollCount/rollSize."""
        self._undo = (self.current, self.current.checkpoint() if self.current else None, self.counter)
        self._rolled = []
        await self._clean_up_failed_batch()
        roll_count, roll_size = self.files.roll_count, self.files.roll_size
        start = 0
        while start < len(events):
            file = self.current or self._new_file()
            end = start + self._room(file, events, start, roll_count, roll_size)
            chunk = events[start:end]
            await self._send(file, chunk)
            file.events += len(chunk)
            file.body_bytes += sum(len(event.body) for event in chunk)
            if (roll_count and file.events >= roll_count) or (roll_size and file.body_bytes >= roll_size):
                self._rolled.append(file)
                self.current = None
            start = end
        self.last_write = time.monotonic()

    @staticmethod
    def _room(file: HdfsFile, events: Sequence[Event], start: int, roll_count: int, roll_size: int) -> int:
        """How many events from `start` go into `file` before it must roll (at least one)."""
        room = len(events) - start
        if roll_count:
            room = min(room, roll_count - file.events)
        if roll_size:
            sizes = accumulate(len(event.body) for event in events[start:start + room])
            room = min(room, bisect_left(list(sizes), roll_size - file.body_bytes) + 1)
        return max(room, 1)

    async def _send(self, file: HdfsFile, chunk: Sequence[Event]) -> None:
        data = file.serializer.encode(chunk) if file.exists else file.serializer.begin() + file.serializer.encode(chunk)
        codec = self.files.layout.codec
        if codec is not None:  # off the event loop: zlib and bz2 release the GIL, other pipelines go on
            data = await asyncio.to_thread(codec.compress, data)
        if file.exists:
            await self.client.append(file.in_use_path, data)
        else:
            await self._create(file, data)
        file.length += len(data)

    async def _create(self, file: HdfsFile, data: bytes) -> None:
        """CREATE the file; a name someone else already uses is skipped for the next counter."""
        for _ in range(NAME_ATTEMPTS):
            file.attempted = True
            try:
                await self.client.create(file.in_use_path, data, overwrite=False)
            except FileAlreadyExists:
                file.attempted = False  # not ours: it must never be cleaned up as a failed write
                log.warning("%s already exists; taking the next file number", file.in_use_path)
                self.counter += 1
                file.in_use_path, file.final_path = self._paths()
                continue
            file.exists = True
            self.files.counters.connections_created += 1
            return
        raise WebHDFSError(0, "NoFreeFileName", "", f"{NAME_ATTEMPTS} file names in a row already exist "
                                                    f"in {self.directory}; give each writer its own filePrefix")

    def _paths(self) -> tuple[str, str]:
        in_use, final = self.files.layout.names(self.prefix, self.counter)
        base = self.directory.rstrip("/") + "/"
        return base + in_use, base + final

    def _new_file(self) -> HdfsFile:
        self.counter += 1
        self.current = HdfsFile(self, *self._paths(), self.files.new_serializer(), time.monotonic())
        return self.current

    def abort(self) -> None:
        """The batch failed: forget its writes; what they left in HDFS is removed before the next one."""
        if self._undo is None:
            return
        previous, state, self.counter = self._undo
        touched = [*self._rolled, *([self.current] if self.current else [])]
        self.abandoned += [file.in_use_path for file in touched if file is not previous and file.attempted]
        if previous is not None and state is not None:
            previous.restore(state)
        self.current = previous
        self._rolled = []
        self._undo = None

    def commit(self) -> list[HdfsFile]:
        """The batch is in HDFS: its bytes count as committed; returns the files it filled."""
        for file in [*self._rolled, *([self.current] if self.current else [])]:
            file.committed = file.length
        rolled, self._rolled, self._undo = self._rolled, [], None
        return rolled

    async def delete_abandoned(self) -> None:
        for path in list(self.abandoned):
            await self.client.delete(path)
            self.abandoned.remove(path)

    async def _clean_up_failed_batch(self) -> None:
        await self.delete_abandoned()
        if self.current is not None and self.current.dirty:
            await self._truncate_to_committed(self.current)

    async def _truncate_to_committed(self, file: HdfsFile) -> None:
        try:
            status = await self.client.get_file_status(file.in_use_path)
        except FileNotFound:
            log.error("in-use file %s vanished; starting a new file", file.in_use_path)
            if self.current is file:
                self.current = None
            file.dirty = False
            return
        if status.length > file.committed:
            log.warning("cutting %s back to %d bytes: a failed batch left %d bytes", file.in_use_path,
                        file.committed, status.length - file.committed)
            if not await self.client.truncate(file.in_use_path, file.committed):
                await self._wait_for_length(file)
        elif status.length < file.committed:
            log.error("%s holds %d bytes, fewer than the %d committed", file.in_use_path, status.length,
                      file.committed)
        file.length = file.committed
        file.dirty = False

    async def _wait_for_length(self, file: HdfsFile) -> None:
        """HDFS finishes a truncate inside a block in the background (TRUNCATE answered false)."""
        while (await self.client.get_file_status(file.in_use_path)).length != file.committed:
            await asyncio.sleep(TRUNCATE_WAIT)

    async def close(self, file: HdfsFile) -> None:
        """Finish the file (serializer trailer) and give it its final name."""
        if file.dirty:
            await self._truncate_to_committed(file)
        if not file.ended:
            tail = file.serializer.end()
            if tail:
                codec = self.files.layout.codec
                await self.client.append(file.in_use_path, codec.compress(tail) if codec else tail)
            file.ended = True
        if file.in_use_path != file.final_path:
            await self._rename(file.in_use_path, file.final_path)

    async def _rename(self, source: str, target: str) -> None:
        if await self.client.rename(source, target):
            return
        try:
            await self.client.get_file_status(source)
        except FileNotFound:
            return  # an earlier attempt did it; only its answer was lost
        raise RenameRefused(0, "RenameFailed", "", f"could not rename {source} to {target} (does it exist?)")

    def detach(self) -> HdfsFile | None:
        """Hand the current file over for closing (rollInterval, idleTimeout, eviction, stop)."""
        file, self.current = self.current, None
        return file

    def expired(self, now: float) -> bool:
        file = self.current
        if file is None:
            return False
        roll_interval, idle_timeout = self.files.roll_interval, self.files.idle_timeout
        return bool((roll_interval and now - file.opened_at >= roll_interval)
                    or (idle_timeout and now - self.last_write >= idle_timeout))

    def idle(self) -> bool:
        return self.current is None and not self.abandoned

    async def recover_leftovers(self) -> None:
        """Rename in-use files a crash or a given-up close left behind in this bucket.

        One whose final name is taken stays as it is, so it cannot block the bucket's new data."""
        layout = self.files.layout
        if not (layout.in_use_prefix or layout.in_use_suffix):
            return
        try:
            entries = await self.client.list_status(self.directory)
        except FileNotFound:
            return
        pattern = layout.leftover_pattern(self.prefix)
        base = self.directory.rstrip("/") + "/"
        for entry in entries:
            match = pattern.fullmatch(entry.path_suffix)
            if entry.type == "FILE" and match:
                log.warning("closing %s, left in use by a crash or a given-up close", base + entry.path_suffix)
                try:
                    await self._rename(base + entry.path_suffix, base + match.group(1))
                except RenameRefused as error:
                    log.error("leaving %s as it is: %s", base + entry.path_suffix, error)
