"""The file channel: events survive a crash once `commit()` returns.

How it stays durable and fast:
- A commit encodes its puts and takes as records (see `records` for the byte format and
  docs/file-channel-format.md): a PUTS record per ~256 KiB of events, built with a few C-level
  calls per batch, then a COMMIT record. It queues them for the channel's writer thread, which
  takes every commit waiting when it is free as one group: one `writev` and one `fdatasync` for
  all of them (group commit). `commit()` returns only after the fdatasync of its group. Sinks
  keep a few takes in flight meanwhile (`sinks/base.py`), so they are not held to one batch per
  fsync.
- Takes come from an in-memory queue of record pointers (20 bytes per event, see `pointer_queue`).
  The events of recent puts are kept beside their pointers up to `eventCacheBytes`, so a channel
  whose sinks keep up never reads the disk; older events are read back from the data files,
  CRC-checked. Batches move as chunks: a take of n events is a few slices, not n look-ups.
- Every `checkpointInterval` the pointer queue is written as a checkpoint (atomically; also to
  `backupCheckpointDir` with `useDualCheckpoints`). A restart loads it and replays only the log
  after it; a missing or damaged checkpoint means a full replay of the data files, which still
  yields the same queue. Damaged records are skipped, counted and logged; start-up never refuses.
- Data files that hold no queued event any more are deleted after a checkpoint, oldest first.
- Below `minimumRequiredSpace` free bytes a commit with puts fails (ChannelError, counted in
  `EventPutErrorCount`) without writing anything; take-only commits still go through so sinks can
  drain the channel. A failed write is cut off the file again, so stored data stays sound.

Capacity is checked at commit (as the memory channel does), waiting up to `keep-alive` seconds.
Paths default to Flume's `~/.flume/file-channel/...`; in Kubernetes the operator mounts volumes there.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
from array import array
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from operator import attrgetter, is_
from typing import cast

from kubeflume_agent.channels.file import checkpoint as checkpoints
from kubeflume_agent.channels.file.log import (
    LogReader,
    LogWriter,
    SpaceExhausted,
    list_log_files,
    split_pointer,
)
from kubeflume_agent.channels.file.pointer_queue import PointerQueue, new_pointers, new_sizes, no_sizes
from kubeflume_agent.channels.file.records import EncodedTransaction, encode_transaction, entry_pointers
from kubeflume_agent.channels.file.replay import ReplayResult, replay
from kubeflume_agent.config.keys import (
    boolean,
    comma_list,
    key,
    non_negative_integer,
    number,
    positive_integer,
)
from kubeflume_agent.core.channel import Channel, ChannelKeys, Transaction
from kubeflume_agent.core.counters import ChannelCounters, flume
from kubeflume_agent.core.errors import ChannelError, ChannelFull
from kubeflume_agent.core.event import Event

log = logging.getLogger(__name__)

MAX_FILE_SIZE = 2146435071  # Flume's default and ceiling: offsets stay below 2**31
MIN_REQUIRED_SPACE = 1024 * 1024  # Flume's floor for minimumRequiredSpace
EVENT_OVERHEAD = 200  # rough bytes of Python objects around a cached event's body
_BODY = attrgetter("body")
Commit = tuple[EncodedTransaction, list[Event], array, asyncio.Future]  # what the writer thread is handed


@dataclass(eq=False)
class FileChannelCounters(ChannelCounters):
    checkpoint_write_error: int = flume("CheckpointWriteErrorCount")
    checkpoint_backup_write_error: int = flume("CheckpointBackupWriteErrorCount")
    unhealthy: int = flume("Unhealthy")
    open: int = flume("Open")
    corrupt_records_skipped: int = flume("CorruptRecordSkipCount")


def _max_file_size(text: str) -> int:
    return min(positive_integer(text), MAX_FILE_SIZE)


def _required_space(text: str) -> int:
    return max(non_negative_integer(text), MIN_REQUIRED_SPACE)


class FileTransaction(Transaction):
    __slots__ = ("take_pointers",)

    channel: FileChannel

    def __init__(self, channel: FileChannel) -> None:
        super().__init__(channel)
        self.take_pointers = new_pointers()

    def _take(self, count: int) -> list[Event]:
        return self.channel._pop(count, self.take_pointers)

    async def _commit(self) -> None:
        await self.channel._commit(self.puts, self.take_pointers)

    def _rollback(self) -> None:
        self.channel._restore(self.take_pointers, self.takes)


def _expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


@dataclass(frozen=True)
class FileStorageConfig(ChannelKeys):
    """The file channel's keys about its files: shared with the spillable channel, whose overflow is one."""

    checkpoint_dir: str = key("checkpointDir", str, "~/.flume/file-channel/checkpoint",
                              doc="where checkpoints are written")
    data_dirs: list[str] = key("dataDirs", comma_list, ["~/.flume/file-channel/data"],
                               doc="comma-separated directories for data files; files rotate over them")
    use_dual_checkpoints: bool = key("useDualCheckpoints", boolean, False, doc="also keep a backup of each checkpoint")
    backup_checkpoint_dir: str | None = key("backupCheckpointDir", str, None,
                                            doc="where backup checkpoints go (with useDualCheckpoints)")
    transaction_capacity: int = key("transactionCapacity", positive_integer, 10000,
                                    doc="most events one transaction puts or takes")
    checkpoint_interval: int = key("checkpointInterval", positive_integer, 30000,
                                   doc="milliseconds between checkpoints")
    max_file_size: int = key("maxFileSize", _max_file_size, MAX_FILE_SIZE, doc="bytes after which a data file rolls")
    minimum_required_space: int = key("minimumRequiredSpace", _required_space, 524288000,
                                      doc="free bytes below which puts fail (at least 1 MiB)")
    checkpoint_on_close: bool = key("checkpointOnClose", boolean, True, doc="write a checkpoint when the channel stops")
    event_cache_bytes: int = key("eventCacheBytes", non_negative_integer, 64 * 1024 * 1024,
                                 doc="bytes of recently put events kept in memory so takes need not read the disk")
    compress_backup_checkpoint: bool = key("compressBackupCheckpoint", boolean, False,
                                           doc="accepted for compatibility; backups are plain")
    use_fast_replay: bool = key("use-fast-replay", boolean, False,
                                doc="accepted for compatibility; replay is always fast")
    use_log_replay_v1: bool = key("use-log-replay-v1", boolean, False, doc="accepted for compatibility; no effect")
    encryption: dict[str, str] = key("encryption.", str, prefix=True,
                                     doc="refused: data files are not encrypted (encrypt the volume)")

    def directories(self) -> tuple[str, list[str], str | None]:
        """(checkpoint directory, data directories, backup directory or None), absolute."""
        backup = self.backup_checkpoint_dir if self.use_dual_checkpoints else None
        return _expand(self.checkpoint_dir), [_expand(d) for d in self.data_dirs], _expand(backup) if backup else None

    def storage_paths(self) -> list[str]:
        checkpoint_dir, data_dirs, backup_dir = self.directories()
        return [checkpoint_dir, *data_dirs, *([backup_dir] if backup_dir else [])]

    def storage_problems(self, capacity: int) -> list[tuple[str, str]]:
        """What keeps these files from holding `capacity` events: [(key, message)]."""
        problems = []
        if self.transaction_capacity > capacity:
            problems.append(("transactionCapacity", "must not exceed capacity"))
        if not self.data_dirs:
            problems.append(("dataDirs", "needs at least one directory"))
        checkpoint_dir, data_dirs, backup_dir = self.directories()
        if self.use_dual_checkpoints:
            if not backup_dir:
                problems.append(("backupCheckpointDir", "is required with useDualCheckpoints"))
            elif backup_dir in (checkpoint_dir, *data_dirs):
                problems.append(("backupCheckpointDir", "must differ from checkpointDir and dataDirs"))
        if checkpoint_dir in data_dirs:
            problems.append(("checkpointDir", "must differ from every dataDirs entry"))
        problems += [(f"encryption.{name}", "encryption of data files is not supported: remove the "
                                            "encryption.* keys and encrypt the volume instead")
                     for name in self.encryption]
        return problems


@dataclass(frozen=True)
class FileChannelConfig(FileStorageConfig):
    capacity: int = key("capacity", positive_integer, 1000000, doc="most events the channel holds")
    keep_alive: float = key("keep-alive", number, 3.0, doc="seconds a commit waits for room before failing")

    def problems(self) -> list[tuple[str, str]]:
        return self.storage_problems(self.capacity)

    def events_capacity(self) -> int:
        return self.capacity


class FileChannel(Channel[FileChannelConfig]):
    commits_wait_for_disk = True
    counters: FileChannelCounters

    def __init__(self, name: str, config: FileChannelConfig) -> None:
        super().__init__(name, config)
        self.counters = FileChannelCounters(config.capacity)
        self.capacity = config.capacity
        self.keep_alive = config.keep_alive
        self.checkpoint_dir, self.data_dirs, self.backup_dir = config.directories()
        self.last_replay: ReplayResult | None = None
        self._queue = PointerQueue()
        self._cache_bytes = 0  # bytes of the events the queue holds in memory
        self._uncached = 0  # queued events held only on disk
        self._open_takes: dict[int, array] = {}  # id -> take pointers of a transaction not yet durable
        self._taken = 0  # events in those
        self._reserved_puts = 0
        self._next_txid = 1
        self._applied_position = 0  # log pointer up to which the queue reflects every commit
        self._locks: list[int] = []
        self._writer: LogWriter | None = None
        self._reader: LogReader | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: queue.SimpleQueue[Commit | None] = queue.SimpleQueue()  # for the writer thread
        self._writing: asyncio.Future | None = None  # the writer thread's loop (`_write_groups`)
        self._checkpointer: asyncio.Task | None = None
        self._checkpoint_lock = asyncio.Lock()

    def transaction(self) -> FileTransaction:
        return FileTransaction(self)

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        directories = self.config.storage_paths()
        for directory in directories:
            os.makedirs(directory, exist_ok=True)
        for directory in directories:
            self._lock(directory)
        self._open_takes.clear()  # a restarted channel (config reload) rebuilds everything from disk
        self._taken = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"file-channel-{self.name}")
        log_files = list_log_files(self.data_dirs)
        result = await asyncio.to_thread(
            replay, [self.checkpoint_dir, *([self.backup_dir] if self.backup_dir else [])], log_files)
        self._report_replay(result)
        self._queue = PointerQueue(result.pointers)
        self._cache_bytes, self._uncached = 0, len(self._queue)
        self._next_txid = result.next_txid
        self.counters.size = len(self._queue)
        self.counters.corrupt_records_skipped = result.skipped
        self._writer = await self._in_writer(
            LogWriter, self.data_dirs, max(log_files, default=0) + 1,
            self.config.max_file_size, self.config.minimum_required_space)
        self._reader = LogReader({**log_files, self._writer.file_id: self._writer.path_of(self._writer.file_id)})
        self._applied_position = self._writer_position()
        self._pending = queue.SimpleQueue()
        self._writing = self._in_writer(self._write_groups, asyncio.get_running_loop())
        await self.checkpoint()
        self._checkpointer = asyncio.create_task(self._checkpoint_periodically())
        self.counters.open = 1
        await super().start()

    async def stop(self) -> None:
        if self._checkpointer:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        if self._writing is not None:
            self._pending.put(None)
            await self._writing  # its last group applied first (call_soon_threadsafe keeps the order)
            self._writing = None
        if self._writer and self.config.checkpoint_on_close:
            await self.checkpoint()
        if self._writer:
            await self._in_writer(self._writer.close)
        if self._reader:
            self._reader.close()
        if self._executor:
            self._executor.shutdown()
        for fd in self._locks:
            os.close(fd)
        self._locks = []
        self.counters.open = 0
        await super().stop()

    def _lock(self, directory: str) -> None:
        fd = os.open(os.path.join(directory, "in_use.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            for held in self._locks:
                os.close(held)
            self._locks = []
            raise ChannelError(
                f"channel {self.name}: {directory} is in use by another file channel (lock held on "
                "in_use.lock); give each file channel its own checkpointDir and dataDirs"
            ) from None
        self._locks.append(fd)

    def _report_replay(self, result: ReplayResult) -> None:
        self.last_replay = result
        log.info("channel %s: %d events restored from %s in %.2f s (%d log records read)",
                 self.name, len(result.pointers), result.source, result.seconds, result.records)
        scan = result.scan
        if result.skipped:
            log.error(
                "channel %s: skipped %d damaged records (%d bytes) in %s; %d events lost to damage, "
                "%d transactions kept without their commit record (their takes may be delivered again)",
                self.name, scan.corrupt_records, scan.corrupt_bytes, ", ".join(scan.damaged_files) or "-",
                result.lost_puts, result.commits_unreadable)
        if result.incomplete_transactions or scan.torn_tail_bytes:
            log.info("channel %s: dropped %d unacknowledged transactions cut short by a crash (%d bytes)",
                     self.name, result.incomplete_transactions, scan.torn_tail_bytes)

    # -- takes --------------------------------------------------------------------------------

    def _pop(self, count: int, take_pointers: array) -> list[Event]:
        """Take up to `count` events off the head; their pointers go to the transaction's `take_pointers`."""
        pointers, events, sizes = self._queue.pop_front(count)
        if pointers:
            take_pointers += pointers
            self._open_takes[id(take_pointers)] = take_pointers
            self._taken += len(pointers)
        self.counters.size = len(self._queue)
        missing = sum(map(is_, events, repeat(None, len(events)))) if self._uncached else 0
        self._cache_bytes -= sum(sizes) + EVENT_OVERHEAD * (len(events) - missing)
        if not missing:  # all in memory: the usual case
            return cast("list[Event]", events)  # none is missing
        self._uncached -= missing
        filled = self._read_missing(pointers, events)
        return [event for event in filled if event is not None]

    def _read_missing(self, pointers: array, events: list[Event | None]) -> list[Event | None]:
        """Fill in the events no longer cached from the data files; damaged ones stay None."""
        read = iter(self._open_reader.read([value for value, event in zip(pointers, events, strict=True)
                                       if event is None]))
        filled = []
        for value, event in zip(pointers, events, strict=True):
            if event is None:
                event = next(read)
                if event is None:
                    self._skip_unreadable(value)
            filled.append(event)
        return filled

    def _skip_unreadable(self, value: int) -> None:
        file_id, offset = split_pointer(value)
        self.counters.take_error += 1
        self.counters.corrupt_records_skipped += 1
        log.error("channel %s: event record at log-%d offset %d is damaged or its data file is gone; skipping it",
                  self.name, file_id, offset)

    def _restore(self, pointers: array, events: list[Event]) -> None:
        """Roll back takes: pointers and events go back to the head (damaged ones left out of
        `events` make the whole batch be read from disk again)."""
        if len(events) == len(pointers):
            held, sizes = self._held(events, new_sizes(map(len, map(_BODY, events))))
        else:
            held, sizes = [*repeat(None, len(pointers))], no_sizes(len(pointers))
            self._uncached += len(pointers)
        self._queue.push_front(pointers, held, sizes)
        self._forget_takes(pointers)
        self.counters.size = len(self._queue)

    def _forget_takes(self, take_pointers: array) -> None:
        """The takes of a transaction are settled: rolled back, or committed durably."""
        if self._open_takes.pop(id(take_pointers), None) is not None:
            self._taken -= len(take_pointers)

    def _held(self, events: list[Event], sizes: array) -> tuple[list[Event | None], array]:
        """What to queue beside the pointers of `events` (whose body sizes are `sizes`): the head
        of the batch that fits in `eventCacheBytes`, None for the rest (read back from disk)."""
        room = self.config.event_cache_bytes - self._cache_bytes
        cost = sum(sizes) + EVENT_OVERHEAD * len(events)
        if cost <= room:
            self._cache_bytes += cost
            return list(events), sizes
        costs = list(accumulate(map(EVENT_OVERHEAD.__add__, sizes)))
        fitting = bisect_right(costs, room)
        left_out = len(events) - fitting
        self._cache_bytes += costs[fitting - 1] if fitting else 0
        self._uncached += left_out
        return [*events[:fitting], *repeat(None, left_out)], sizes[:fitting] + no_sizes(left_out)

    # -- commits ------------------------------------------------------------------------------

    async def _commit(self, puts: list[Event], take_pointers: array) -> None:
        if not puts and not take_pointers:
            return
        needed = len(puts) - len(take_pointers)
        if needed > 0:
            try:
                await self._wait_for_room(needed)
            except ChannelFull:
                self.counters.put_error += len(puts)
                raise
        txid = self._next_txid
        self._next_txid += 1
        self._reserved_puts += len(puts)
        future = asyncio.get_running_loop().create_future()
        self._pending.put((encode_transaction(txid, puts, take_pointers), puts, take_pointers, future))
        try:
            await future
        except SpaceExhausted as error:
            self.counters.put_error += len(puts)
            raise ChannelFull(f"channel {self.name}: {error}") from error
        except OSError as error:
            if puts:
                self.counters.put_error += len(puts)
            if take_pointers:
                self.counters.take_error += len(take_pointers)
            raise ChannelError(f"channel {self.name}: commit failed: {error}") from error

    def _write_groups(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread: every commit waiting when it is free becomes one group (one writev,
        one fdatasync), whose results go back to the loop; then the next. It never waits for the
        loop, which may be busy with a source's batch when a group is done."""
        while True:
            group = [self._pending.get()]
            with contextlib.suppress(queue.Empty):
                while group[-1] is not None:
                    group.append(self._pending.get_nowait())
            stopping = group[-1] is None  # stop() queued None after every commit it waits for
            if stopping:
                group.pop()
            commits = cast("list[Commit]", group)  # the None that stops the thread is gone
            if commits:
                results: list[int | Exception]
                try:
                    results, end = self._open_writer.append_group([item[0] for item in commits])
                except Exception as error:  # a bug or worse: fail the whole group, keep the channel going
                    log.exception("channel %s: writing to the data log failed", self.name)
                    results, end = [error] * len(commits), None
                loop.call_soon_threadsafe(self._apply, commits, results, end)
            if stopping:
                return

    def _apply(self, group: list[Commit], results: list[int | Exception], end: int | None) -> None:
        """Runs on the loop right after a group is durable: queue and checkpoint position move together."""
        self.counters.unhealthy = int(any(isinstance(r, Exception) and not isinstance(r, SpaceExhausted)
                                          for r in results))
        if self.counters.unhealthy:
            self._open_reader.discard_window()
        for (encoded, puts, take_pointers, future), result in zip(group, results, strict=True):
            self._reserved_puts -= len(puts)
            if isinstance(result, Exception):
                if not future.done():
                    future.set_exception(result if isinstance(result, OSError) else OSError(str(result)))
                continue
            file_id = result >> 32
            reader = self._open_reader
            if file_id not in reader.paths:
                reader.paths[file_id] = self._open_writer.path_of(file_id)
            pointers = new_pointers()
            for first, count in encoded.put_runs:
                pointers += entry_pointers(result + first, count)
            self._queue.append(pointers, *self._held(puts, encoded.sizes))
            self._forget_takes(take_pointers)
            if not future.done():  # a committer cancelled while waiting: its data is durable anyway
                future.set_result(None)
        if end is not None:
            self._applied_position = end
        self.counters.size = len(self._queue)

    async def _wait_for_room(self, needed: int) -> None:
        deadline = asyncio.get_running_loop().time() + self.keep_alive
        while len(self._queue) + self._taken + self._reserved_puts + needed > self.capacity:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await self.space_available.wait(remaining):
                raise ChannelFull(
                    f"The channel {self.name} has reached its capacity ({self.capacity}); sinks are likely "
                    "not keeping up with sources, or the channel is too small"
                )

    @property
    def _open_writer(self) -> LogWriter:
        """The data log's writer, from start() to stop()."""
        assert self._writer is not None, f"channel {self.name} is not started"
        return self._writer

    @property
    def _open_reader(self) -> LogReader:
        """The data files' reader, from start() to stop()."""
        assert self._reader is not None, f"channel {self.name} is not started"
        return self._reader

    def _in_writer(self, function, *args):
        return asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _writer_position(self) -> int:
        writer = self._open_writer
        return (writer.file_id << 32) | writer.offset

    # -- checkpoints --------------------------------------------------------------------------

    async def _checkpoint_periodically(self) -> None:
        interval = self.config.checkpoint_interval / 1000
        while True:
            await asyncio.sleep(interval)
            await self.checkpoint()

    async def checkpoint(self) -> None:
        """Write the queue as of the last durable group, then reclaim data files nothing points into."""
        async with self._checkpoint_lock:
            pointers = array("q", sorted(chain.from_iterable(self._open_takes.values())))  # may be rolled back
            pointers.extend(self._queue.snapshot())
            file_id, offset = split_pointer(self._applied_position)
            data = checkpoints.encode(checkpoints.Checkpoint(file_id, offset, self._next_txid, pointers))
            if not await self._write_checkpoint(data):
                return
            oldest_needed = min(file_id, min(pointers) >> 32 if pointers else file_id)
            await self._reclaim(oldest_needed)

    async def _write_checkpoint(self, data: bytes) -> bool:
        try:
            await asyncio.to_thread(checkpoints.write, self.checkpoint_dir, data)
        except OSError:
            self.counters.checkpoint_write_error += 1
            log.exception("channel %s: cannot write checkpoint to %s", self.name, self.checkpoint_dir)
            return False
        if self.backup_dir:
            try:
                await asyncio.to_thread(checkpoints.write, self.backup_dir, data)
            except OSError:
                self.counters.checkpoint_backup_write_error += 1
                log.exception("channel %s: cannot write backup checkpoint to %s", self.name, self.backup_dir)
                return False
        return True

    async def _reclaim(self, oldest_needed: int) -> None:
        reader = self._open_reader
        obsolete = [file_id for file_id in reader.paths if file_id < oldest_needed]
        for file_id in sorted(obsolete):
            path = reader.paths[file_id]
            reader.forget(file_id)
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.remove, path)
            log.debug("channel %s: reclaimed %s", self.name, path)
