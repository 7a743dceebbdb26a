"""The file channel on real files: durability across restarts, replay, damage, reclaiming, backpressure."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import random
import struct
import subprocess
import sys
import threading
import zlib
from array import array
from pathlib import Path

import pytest

from kubeflume_agent.channels.file.channel import EVENT_OVERHEAD, FileChannel
from kubeflume_agent.channels.file.log import FILE_HEADER, FILE_MAGIC, list_log_files
from kubeflume_agent.channels.file.pointer_queue import PointerQueue
from kubeflume_agent.channels.file.records import (
    HEAD_SIZE,
    RECORD_MAGIC,
    RECORD_TARGET,
    decode_puts,
    encode_transaction,
    entry_pointers,
)
from kubeflume_agent.config.keys import resolve
from kubeflume_agent.core.errors import ChannelError, ChannelFull
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.status import Status
from kubeflume_agent.sinks.base import Sink, SinkKeys
from tests.integration.source_harness import put_all


def make_channel(tmp_path, **params) -> FileChannel:
    values = {
        "checkpointDir": str(tmp_path / "checkpoint"),
        "dataDirs": f"{tmp_path / 'data1'},{tmp_path / 'data2'}",
        "minimumRequiredSpace": "1048576",
        "capacity": "100000",
        "transactionCapacity": "1000",
        **{key: str(value) for key, value in params.items()},
    }
    settings, problems = resolve(FileChannel.config_class, values)
    assert [p for p in problems if p.severity == "error"] == []
    assert FileChannel.config_problems(settings) == []
    return FileChannel("c1", settings)


def numbered(start: int, count: int, size: int = 50) -> list[Event]:
    return [Event(f"{i:08d}".encode().ljust(size, b"."), {"n": str(i), "host": "h"})
            for i in range(start, start + count)]


def damage_newest_log(tmp_path, marker: bytes, replacement: bytes) -> None:
    """Overwrite the first occurrence of `marker` in the newest data file, as disk rot would."""
    path = Path(max(list_log_files([str(tmp_path / "data1"), str(tmp_path / "data2")]).items())[1])
    data = path.read_bytes()
    at = data.index(marker)
    path.write_bytes(data[:at] + replacement + data[at + len(replacement):])


async def take_all(channel: FileChannel) -> list[Event]:
    taken = []
    while True:
        tx = channel.transaction()
        events = tx.take(500)
        await tx.commit()
        if not events:
            return taken
        taken += events


@pytest.fixture
async def channels():
    """Channels a test started; stopped at the end even when the test fails."""
    started: list[FileChannel] = []
    yield started
    for channel in started:
        if channel.counters.open:
            await channel.stop()


async def started(channels, tmp_path, **params) -> FileChannel:
    channel = make_channel(tmp_path, **params)
    await channel.start()
    channels.append(channel)
    return channel


async def test_events_and_headers_round_trip_in_order(channels, tmp_path):
    channel = await started(channels, tmp_path)
    await put_all(channel, numbered(0, 300))
    assert channel.size == 300
    assert channel.counters.put_success == 300
    taken = await take_all(channel)
    assert taken == numbered(0, 300)
    assert channel.size == 0
    assert channel.counters.take_success == 300


async def test_restart_keeps_committed_puts_and_forgets_committed_takes(channels, tmp_path):
    channel = await started(channels, tmp_path)
    await put_all(channel, numbered(0, 100))
    tx = channel.transaction()
    assert tx.take(30) == numbered(0, 30)
    await tx.commit()
    open_tx = channel.transaction()  # taken but never committed: must come back after restart
    assert open_tx.take(10) == numbered(30, 10)
    await channel.stop()

    again = await started(channels, tmp_path, eventCacheBytes=0)  # every take now reads the disk
    assert again.size == 70
    assert await take_all(again) == numbered(30, 70)


async def test_rollback_puts_takes_back_at_the_head(channels, tmp_path):
    channel = await started(channels, tmp_path)
    await put_all(channel, numbered(0, 20))
    tx = channel.transaction()
    tx.take(5)
    tx.rollback()
    assert channel.size == 20
    assert await take_all(channel) == numbered(0, 20)


async def test_put_rolled_back_is_not_stored(channels, tmp_path):
    channel = await started(channels, tmp_path)
    tx = channel.transaction()
    tx.put_all(numbered(0, 5))
    tx.rollback()
    assert channel.size == 0
    await channel.stop()
    assert (await started(channels, tmp_path)).size == 0


async def test_concurrent_commits_share_fsyncs(channels, tmp_path, monkeypatch):
    channel = await started(channels, tmp_path)
    syncs = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real_fdatasync(fd))[1])

    async def producer(first: int) -> None:
        for batch in range(10):
            await put_all(channel, numbered(first + batch * 10, 10))

    await asyncio.gather(*(producer(p * 100) for p in range(20)))
    assert channel.size == 2000
    assert len(syncs) < 200  # 200 commits; group commit must have merged some
    assert sorted(int(e.headers["n"]) for e in await take_all(channel)) == list(range(2000))


async def test_a_group_written_in_short_writes_is_stored_whole(channels, tmp_path, monkeypatch):
    """The kernel may write less than asked; the rest of the group must follow, in order."""
    channel = await started(channels, tmp_path, eventCacheBytes=0)  # takes read the data file back
    real_writev = os.writev
    short_writes = []

    def short_writev(fd, buffers):  # writes at most 100 bytes of what it is given
        short_writes.append(fd)
        return real_writev(fd, [b"".join(buffers)[:100]])

    monkeypatch.setattr(os, "writev", short_writev)
    await asyncio.gather(*(put_all(channel, numbered(first, 10)) for first in range(0, 50, 10)))
    assert short_writes
    assert [int(e.headers["n"]) for e in await take_all(channel)] == list(range(50))
    await put_all(channel, numbered(50, 10))
    monkeypatch.undo()
    await channel.stop()
    again = await started(channels, tmp_path, eventCacheBytes=0)
    assert again.last_replay.skipped == 0
    assert [int(e.headers["n"]) for e in await take_all(again)] == list(range(50, 60))


def hold_fdatasync(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Make every fdatasync wait until `release` is set; `syncing` is set when one is waiting."""
    syncing, release = threading.Event(), threading.Event()
    real_fdatasync = os.fdatasync

    def held_fdatasync(fd):
        syncing.set()
        release.wait(30)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", held_fdatasync)
    return syncing, release


async def test_commit_returns_only_after_its_group_is_fdatasynced(channels, tmp_path, monkeypatch):
    channel = await started(channels, tmp_path)
    syncing, release = hold_fdatasync(monkeypatch)
    commit = asyncio.create_task(put_all(channel, numbered(0, 5)))
    await asyncio.to_thread(syncing.wait, 30)
    done, _ = await asyncio.wait({commit}, timeout=0.5)  # a slow machine can only make this pass
    assert not done, "commit() returned before the data was synced"
    assert channel.size == 0  # nor can a sink take what is not durable yet
    release.set()
    await asyncio.wait_for(commit, 30)
    assert channel.size == 5


async def test_full_replay_without_checkpoint_gives_the_same_queue(channels, tmp_path, caplog):
    channel = await started(channels, tmp_path, maxFileSize=4096)  # many small data files
    await put_all(channel, numbered(0, 200))
    tx = channel.transaction()
    tx.take(50)
    await tx.commit()
    await channel.stop()
    os.remove(tmp_path / "checkpoint" / "checkpoint")

    with caplog.at_level(logging.WARNING):
        again = await started(channels, tmp_path)
    assert again.last_replay.source == "full replay"
    assert "forcing full replay" in caplog.text
    assert await take_all(again) == numbered(50, 150)


async def test_replay_after_kill_reads_log_written_after_the_checkpoint(channels, tmp_path):
    channel = await started(channels, tmp_path, checkpointOnClose="false")
    await put_all(channel, numbered(0, 40))  # after the start-up checkpoint: only in the log
    tx = channel.transaction()
    tx.take(15)
    await tx.commit()
    await channel.stop()  # no checkpoint on close: like a kill, only the log knows

    again = await started(channels, tmp_path)
    assert again.last_replay.source == "checkpoint"
    assert again.last_replay.records > 0
    assert await take_all(again) == numbered(15, 25)


async def test_damaged_record_is_skipped_counted_and_the_rest_kept(channels, tmp_path, caplog):
    channel = await started(channels, tmp_path, checkpointOnClose="false")
    await put_all(channel, numbered(0, 10))
    await put_all(channel, numbered(10, 10))
    await channel.stop()
    damage_newest_log(tmp_path, b"00000003", b"XXXX")  # the body of event 3: its record is lost

    with caplog.at_level(logging.ERROR):
        again = await started(channels, tmp_path)
    assert again.last_replay.scan.corrupt_records == 1
    assert again.last_replay.lost_puts == 10  # its COMMIT says how many events the record held
    assert again.counters.corrupt_records_skipped == again.last_replay.skipped == 11
    assert "skipped 1 damaged records" in caplog.text and "10 events lost to damage" in caplog.text
    assert [int(e.headers["n"]) for e in await take_all(again)] == list(range(10, 20))


async def test_damaged_record_found_at_take_time_is_skipped(channels, tmp_path):
    channel = await started(channels, tmp_path)
    for first in (0, 10, 20):
        await put_all(channel, numbered(first, 10))
    await channel.stop()  # checkpointed: replay reads no records, the takes read the disk
    damage_newest_log(tmp_path, b"00000015", b"\xff")

    again = await started(channels, tmp_path)
    assert [int(e.headers["n"]) for e in await take_all(again)] == [*range(10), *range(20, 30)]
    assert again.counters.take_error == 10
    assert again.counters.corrupt_records_skipped == 10


async def test_torn_tail_from_a_crash_is_dropped_quietly(channels, tmp_path):
    channel = await started(channels, tmp_path, checkpointOnClose="false")
    await put_all(channel, numbered(0, 10))
    await put_all(channel, numbered(10, 10))
    await channel.stop()
    path = max(list_log_files([str(tmp_path / "data1"), str(tmp_path / "data2")]).items())[1]
    os.truncate(path, os.path.getsize(path) - HEAD_SIZE)  # the last commit record cut short

    again = await started(channels, tmp_path)
    assert again.last_replay.scan.corrupt_records == 0
    assert again.last_replay.incomplete_transactions == 1
    assert [int(e.headers["n"]) for e in await take_all(again)] == list(range(10))


async def test_damaged_checkpoint_falls_back_to_backup_then_full_replay(channels, tmp_path, caplog):
    backup = tmp_path / "backup"
    channel = await started(channels, tmp_path, useDualCheckpoints="true", backupCheckpointDir=str(backup))
    await put_all(channel, numbered(0, 30))
    await channel.stop()
    with open(tmp_path / "checkpoint" / "checkpoint", "r+b") as file:
        file.seek(40)
        file.write(b"\xff\xff\xff\xff")

    with caplog.at_level(logging.WARNING):
        again = await started(channels, tmp_path, useDualCheckpoints="true", backupCheckpointDir=str(backup))
    assert again.last_replay.source == "backup checkpoint"
    assert "checksum mismatch" in caplog.text
    assert again.size == 30
    await again.stop()

    (tmp_path / "checkpoint" / "checkpoint").write_bytes(b"garbage")
    (backup / "checkpoint").write_bytes(b"garbage")
    third = await started(channels, tmp_path, useDualCheckpoints="true", backupCheckpointDir=str(backup))
    assert third.last_replay.source == "full replay"
    assert await take_all(third) == numbered(0, 30)


async def test_fully_taken_data_files_are_reclaimed(channels, tmp_path):
    channel = await started(channels, tmp_path, maxFileSize=2048)
    for first in range(0, 400, 20):
        await put_all(channel, numbered(first, 20))
    dirs = [str(tmp_path / "data1"), str(tmp_path / "data2")]
    before = list_log_files(dirs)
    assert len(before) > 5
    assert {os.path.dirname(p) for p in before.values()} == set(dirs)  # rotated over both dirs
    await take_all(channel)
    await channel.checkpoint()
    after = list_log_files(dirs)
    assert len(after) <= 2
    assert max(after) >= max(before)  # the writer's current file stays
    await put_all(channel, numbered(500, 3))
    await channel.stop()
    assert await take_all(await started(channels, tmp_path)) == numbered(500, 3)


async def test_too_little_free_space_refuses_puts_but_lets_sinks_drain(channels, tmp_path):
    channel = await started(channels, tmp_path)
    await put_all(channel, numbered(0, 10))
    channel._writer.minimum_free_space = 1 << 62  # as if the disk had filled up
    with pytest.raises(ChannelFull, match="Usable space exhausted"):
        await put_all(channel, numbered(10, 5))
    assert channel.counters.put_error == 5
    assert channel.size == 10
    assert await take_all(channel) == numbered(0, 10)


@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MiB tmpfs, so the disk really fills up (needs root, as in CI's container)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
                            capture_output=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


async def test_a_filling_disk_fails_puts_cleanly_and_keeps_what_is_stored(small_disk, channels):
    channel = await started(channels, small_disk, dataDirs=str(small_disk / "data"), maxFileSize=512 * 1024)
    stored = 0
    with pytest.raises(ChannelFull, match="Usable space exhausted"):
        while True:
            await put_all(channel, numbered(stored, 100, size=1000))
            stored += 100
    assert stored > 500
    assert channel.size == stored
    await channel.stop()
    again = await started(channels, small_disk, dataDirs=str(small_disk / "data"))
    assert [int(e.headers["n"]) for e in await take_all(again)] == list(range(stored))


async def test_a_write_that_hits_a_full_disk_is_cut_off_and_the_log_stays_sound(small_disk, channels):
    channel = await started(channels, small_disk, dataDirs=str(small_disk / "data"))
    # As if another process filled the disk between the free-space check and the write:
    channel._writer._free_space = lambda: 1 << 62
    (small_disk / "filler").write_bytes(b"f" * (2 * 1024 * 1024))
    stored = 0
    with pytest.raises(ChannelError, match="No space left"):
        while True:
            await put_all(channel, numbered(stored, 50, size=1000))
            stored += 50
    assert channel.size == stored
    assert channel.counters.put_error == 50
    (small_disk / "filler").unlink()
    await put_all(channel, numbered(stored, 50, size=1000))  # room again: writing goes on
    await channel.stop()
    again = await started(channels, small_disk, dataDirs=str(small_disk / "data"))
    assert again.last_replay.skipped == 0
    assert [int(e.headers["n"]) for e in await take_all(again)] == list(range(stored + 50))


async def test_commit_beyond_capacity_waits_then_fails(channels, tmp_path):
    channel = await started(channels, tmp_path, capacity=50, transactionCapacity=50, **{"keep-alive": 0.2})
    await put_all(channel, numbered(0, 40))
    with pytest.raises(ChannelFull, match="capacity"):
        await put_all(channel, numbered(40, 20))
    assert channel.size == 40
    assert channel.counters.put_error == 20

    async def drain_soon():
        await asyncio.sleep(0.05)
        tx = channel.transaction()
        tx.take(20)
        await tx.commit()

    channel.keep_alive = 10
    await asyncio.gather(drain_soon(), put_all(channel, numbered(40, 20)))
    assert channel.size == 40


async def test_second_channel_on_the_same_directories_is_refused(channels, tmp_path):
    await started(channels, tmp_path)
    with pytest.raises(ChannelError, match="in use by another file channel"):
        await make_channel(tmp_path).start()


def test_settings_checks_and_storage_paths(tmp_path):
    settings, _ = resolve(FileChannel.config_class, {
        "checkpointDir": "~/cp", "dataDirs": "/d1, /d2", "useDualCheckpoints": "true",
        "capacity": "10", "transactionCapacity": "20", "minimumRequiredSpace": "5",
    })
    problems = dict(FileChannel.config_problems(settings))
    assert "backupCheckpointDir" in problems
    assert "transactionCapacity" in problems
    assert settings.minimum_required_space == 1024 * 1024
    assert settings.storage_paths() == [os.path.expanduser("~/cp"), "/d1", "/d2"]


async def test_the_same_channel_object_restarts_as_on_a_config_reload(channels, tmp_path):
    channel = await started(channels, tmp_path)
    await put_all(channel, numbered(0, 10))
    await channel.stop()
    await channel.start()
    assert await take_all(channel) == numbered(0, 10)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_operations_and_restarts_match_a_simple_queue(channels, tmp_path, seed):
    """Random puts, takes, commits, rollbacks and restarts (with and without a checkpoint) against
    a plain list as the model: committed events are kept in order, committed takes never return."""
    rng = random.Random(seed)
    channel = await started(channels, tmp_path, maxFileSize=8192, eventCacheBytes=2000)
    model: list[int] = []
    next_number = 0
    for _ in range(150):
        action = rng.random()
        if action < 0.4:
            count = rng.randint(1, 30)
            await put_all(channel, numbered(next_number, count))
            model += range(next_number, next_number + count)
            next_number += count
        elif action < 0.8:
            tx = channel.transaction()
            taken = [int(e.headers["n"]) for e in tx.take(rng.randint(1, 40))]
            assert taken == model[:len(taken)]
            if rng.random() < 0.7:
                await tx.commit()
                del model[:len(taken)]
            else:
                tx.rollback()
        elif action < 0.9:
            await channel.checkpoint()
        else:
            await channel.stop()
            if rng.random() < 0.5:
                os.remove(tmp_path / "checkpoint" / "checkpoint")
            channel = await started(channels, tmp_path, maxFileSize=8192, eventCacheBytes=2000)
        assert channel.size == len(model)
    assert [int(e.headers["n"]) for e in await take_all(channel)] == model


async def test_a_commit_cancelled_while_writing_does_not_stall_its_group(channels, tmp_path):
    channel = await started(channels, tmp_path)
    first, second = channel.transaction(), channel.transaction()
    first.put_all(numbered(0, 5))
    second.put_all(numbered(5, 5))
    cancelled = asyncio.create_task(first.commit())
    kept = asyncio.create_task(second.commit())
    await asyncio.sleep(0)  # both queued for the same group
    cancelled.cancel()
    await asyncio.wait_for(kept, 10)
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    taken = [int(e.headers["n"]) for e in await take_all(channel)]
    assert taken[-5:] == [5, 6, 7, 8, 9]
    assert set(taken) <= set(range(10))  # the cancelled batch is durable or not, never half


def test_pointer_queue_keeps_pointers_events_and_sizes_in_step_across_chunks():
    queue = PointerQueue(range(20000))  # a replayed queue: cut into chunks, no event in memory
    assert len(queue) == 20000
    head, events, sizes = queue.pop_front(10000)  # ends inside the second chunk
    assert head.tolist() == list(range(10000)) and events == [None] * 10000 and sizes.tolist() == [0] * 10000
    queue.push_front(head[-3:], [Event(b"a"), None, Event(b"c")], array("I", [1, 0, 1]))  # a rolled-back take
    queue.append(array("q", range(20000, 20002)), [Event(b"x"), Event(b"yy")], array("I", [1, 2]))  # a commit
    assert queue.snapshot().tolist() == [*range(9997, 20002)]
    pointers, events, sizes = queue.pop_front(100000)
    assert pointers.tolist() == [*range(9997, 20002)]
    assert events == [Event(b"a"), None, Event(b"c"), *[None] * 10000, Event(b"x"), Event(b"yy")]
    assert sizes.tolist() == [1, 0, 1, *[0] * 10000, 1, 2]
    assert len(queue) == 0
    assert [part.tolist() if isinstance(part, array) else part for part in queue.pop_front(1)] == [[], [], []]


async def test_the_event_cache_keeps_to_its_bytes_and_counts_them_back_on_takes(channels, tmp_path):
    channel = await started(channels, tmp_path, eventCacheBytes=10 * (100 + EVENT_OVERHEAD))
    await put_all(channel, numbered(0, 8, size=100))
    await put_all(channel, numbered(8, 8, size=100))  # only two of these still fit
    assert channel._uncached == 6 and channel._cache_bytes == 10 * (100 + EVENT_OVERHEAD)
    tx = channel.transaction()
    assert tx.take(12) == numbered(0, 12, size=100)  # two of them read back from disk
    tx.rollback()  # all back at the head, as many held again as fit
    assert channel._cache_bytes == 10 * (100 + EVENT_OVERHEAD) and channel._uncached == 6
    assert await take_all(channel) == numbered(0, 16, size=100)
    assert channel._cache_bytes == 0 and channel._uncached == 0


async def test_a_failed_write_leaves_no_stale_bytes_for_later_reads(channels, tmp_path, monkeypatch):
    """A take that reads the data file while a group is being written may see that group's bytes;
    if the group then fails and is cut off, the next group's records take its place, and reads
    must return those, not what the failed group had left in the read window."""
    channel = await started(channels, tmp_path, eventCacheBytes=0)  # every take reads the data file
    await put_all(channel, numbered(0, 10))
    writing, release = threading.Event(), threading.Event()
    real_fdatasync = os.fdatasync

    def failing_fdatasync(fd):  # fails once, for the group; cutting it off then works
        monkeypatch.setattr(os, "fdatasync", real_fdatasync)
        writing.set()
        release.wait(30)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    doomed = asyncio.create_task(put_all(channel, [Event(f"doomed-{i:02d}".encode(), {"n": "x"}) for i in range(10)]))
    await asyncio.to_thread(writing.wait, 30)  # its bytes are in the file now, not yet synced
    tx = channel.transaction()
    assert [e.headers["n"] for e in tx.take(1)] == ["0"]  # reads a window reaching into them
    tx.rollback()
    release.set()
    with pytest.raises(ChannelError, match="Input/output error"):
        await doomed
    await put_all(channel, [Event(f"stored-{i:02d}".encode(), {"n": "y"}) for i in range(10)])  # same offsets
    assert [e.body for e in await take_all(channel)][10:] == [f"stored-{i:02d}".encode() for i in range(10)]


FILE_SIZE_LIMITED_CHILD = """
import asyncio, pathlib, resource, signal, sys
sys.path[:0] = [{tests!r}, {root!r}]
from test_file_channel import make_channel, numbered, put_all, take_all
from kubeflume_agent.core.errors import ChannelError

async def main(directory):
    channel = make_channel(pathlib.Path(directory), maxFileSize=64 * 1024 * 1024)
    await channel.start()
    stored = 0
    try:
        while True:
            await put_all(channel, numbered(stored, 50, size=1000))
            stored += 50
    except ChannelError as error:
        print("refused:", error)
    size, put_errors = channel.size, channel.counters.put_error
    await channel.stop()
    return stored, size, put_errors

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (300 * 1024, resource.RLIM_INFINITY))
print("result", *asyncio.run(main(sys.argv[1])))
"""


async def test_a_write_the_kernel_refuses_midway_is_cut_off_and_the_log_stays_sound(tmp_path, channels):
    """Without a small disk to fill (mounting one needs privileges), RLIMIT_FSIZE makes the kernel
    refuse a write past 300 KiB of the data file, part-way through a group, just as a full disk
    would: the commit fails, nothing half-written stays, and every stored event is still there."""
    script = FILE_SIZE_LIMITED_CHILD.format(tests=str(Path(__file__).parent), root=str(Path(__file__).parents[2]))
    child = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script, str(tmp_path)],
                                    capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    assert "refused:" in child.stdout and "File too large" in child.stdout, child.stdout
    stored, size, put_errors = map(int, child.stdout.split("result")[1].split())
    assert stored > 100 and size == stored and put_errors == 50
    again = await started(channels, tmp_path)
    assert again.last_replay.skipped == 0
    assert again.last_replay.scan.torn_tail_bytes == 0
    assert [int(e.headers["n"]) for e in await take_all(again)] == list(range(stored))


async def test_a_data_file_deleted_by_hand_costs_only_its_own_events(channels, tmp_path, caplog):
    channel = await started(channels, tmp_path, maxFileSize=2048, eventCacheBytes=0)
    for first in range(0, 200, 20):
        await put_all(channel, numbered(first, 20))
    await channel.stop()
    dirs = [str(tmp_path / "data1"), str(tmp_path / "data2")]
    files = list_log_files(dirs)
    victim = sorted(files)[len(files) // 2]
    os.remove(files[victim])

    again = await started(channels, tmp_path, maxFileSize=2048, eventCacheBytes=0)
    with caplog.at_level(logging.ERROR):
        numbers = [int(e.headers["n"]) for e in await take_all(again)]
    lost = 200 - len(numbers)
    assert 0 < lost < 200
    assert numbers == sorted(numbers)  # the others all arrive, in order
    assert again.counters.corrupt_records_skipped == again.counters.take_error == lost
    assert f"log-{victim} " in caplog.text and "its data file is gone" in caplog.text


def test_encryption_keys_are_refused_rather_than_silently_ignored():
    from kubeflume_agent.config.properties import parse_properties
    from kubeflume_agent.config.validation import config_errors

    config = parse_properties(
        "a1.channels = c1\na1.sinks = k1\n"
        "a1.channels.c1.type = file\na1.channels.c1.checkpointDir = /tmp/c\na1.channels.c1.dataDirs = /tmp/d\n"
        "a1.channels.c1.encryption.activeKey = key-0\na1.channels.c1.encryption.cipherProvider = AESCTRNOPADDING\n"
        "a1.sinks.k1.type = null\na1.sinks.k1.channel = c1\n", "a1")
    errors = config_errors(config)
    assert sorted(e.key for e in errors) == ["encryption.activeKey", "encryption.cipherProvider"]
    assert all("not supported" in e.message for e in errors)


# -- the record layout: a PUTS record per batch of about RECORD_TARGET bytes ----------------------

def test_a_batch_encodes_to_records_that_decode_to_the_same_events():
    events = [Event(b"plain"), Event(b"", {"a": "1"}), Event(b"x" * 300, {"b": "2", "c": "\u00e9"}), Event()]
    encoded = encode_transaction(7, events, array("q", [1 << 32 | 29]))
    assert len(encoded.records) == 2  # one PUTS record, one COMMIT
    assert encoded.put_runs == [(HEAD_SIZE + 8, 4)]
    assert decode_puts(encoded.records[0][HEAD_SIZE - 8:]) == events
    assert encoded.sizes.tolist() == [5, 0, 300, 0]


def test_entry_pointers_are_the_progression_of_entries():
    for first, count in [(0, 0), (5 << 32 | 29, 1), (7 << 32 | 100, 70000), ((2**31 - 1) << 32 | 12345, 3)]:
        assert entry_pointers(first, count).tolist() == list(range(first, first + 8 * count, 8))


async def test_a_transaction_larger_than_a_record_is_split_and_read_back_in_order(channels, tmp_path):
    channel = await started(channels, tmp_path, checkpointOnClose="false", transactionCapacity=1000)
    big = numbered(0, 600, size=1000)  # 600 KB: three records
    await put_all(channel, big)
    assert len(encode_transaction(1, big, array("q")).put_runs) == 3
    huge = Event(b"h" * (RECORD_TARGET + 1000), {"n": "600"})  # one event over the target: a record of its own
    await put_all(channel, [huge, *numbered(601, 5)])
    await channel.stop()
    expected = [*big, huge, *numbered(601, 5)]

    again = await started(channels, tmp_path, eventCacheBytes=0)  # replayed from the log, read from disk
    assert again.last_replay.records == 5 + 2
    assert await take_all(again) == expected


async def test_damage_in_one_record_of_a_split_transaction_costs_only_that_record(channels, tmp_path):
    channel = await started(channels, tmp_path, checkpointOnClose="false", transactionCapacity=1000)
    await put_all(channel, numbered(0, 600, size=1000))
    await channel.stop()
    damage_newest_log(tmp_path, b"00000300", b"XXXXXXXX")  # in the second of the three records

    again = await started(channels, tmp_path)
    per_record = RECORD_TARGET // (1000 + 8)  # events of 1000 bytes, and their 8-byte entries
    assert [int(e.headers["n"]) for e in await take_all(again)] == [
        *range(per_record), *range(2 * per_record, 600)]
    assert again.last_replay.lost_puts == per_record


def legacy_log(events: list[Event]) -> bytes:
    """A data file as kubeflume wrote it before PUTS records: one PUT record (kind 1) per event,
    then the COMMIT. Built from the layout in docs/file-channel-format.md, not with the code."""
    def record(kind: int, payload: bytes) -> bytes:
        fields = struct.pack("<BQI", kind, 1, len(payload)) + payload
        return RECORD_MAGIC + struct.pack("<I", zlib.crc32(fields)) + fields

    data = FILE_HEADER.pack(FILE_MAGIC, 1, 0)
    for event in events:
        headers = json.dumps(event.headers).encode() if event.headers else b""
        data += record(1, struct.pack("<I", len(headers)) + headers + event.body)
    return data + record(2, struct.pack("<I", len(events)))


async def test_data_files_of_the_earlier_per_event_layout_are_still_read(channels, tmp_path):
    (tmp_path / "data1").mkdir()
    (tmp_path / "data1" / "log-1").write_bytes(legacy_log(numbered(0, 30)))
    channel = await started(channels, tmp_path, eventCacheBytes=0)  # full replay; every take reads the disk
    assert channel.last_replay.source == "full replay" and channel.size == 30
    tx = channel.transaction()
    assert tx.take(10) == numbered(0, 10)
    await tx.commit()
    await put_all(channel, numbered(30, 5))  # new records go to a new file, in the new layout
    await channel.stop()
    again = await started(channels, tmp_path, eventCacheBytes=0)
    assert await take_all(again) == numbered(10, 25)


# -- sinks on a file channel: takes in flight while earlier ones are made durable -----------------

class ListSink(Sink[SinkKeys]):
    """Records what it was given and what the channel then let go of."""

    def __init__(self, channel: FileChannel) -> None:
        super().__init__("k1", SinkKeys(batch_size=10), channel)
        self.written: list[list[int]] = []
        self.let_go: list[list[int]] = []

    async def write(self, events) -> None:
        self.written.append([int(e.headers["n"]) for e in events])

    def committed(self, events) -> None:
        self.let_go.append([int(e.headers["n"]) for e in events])


async def test_a_sink_delivers_the_next_batches_while_earlier_takes_are_synced(channels, tmp_path, monkeypatch):
    channel = await started(channels, tmp_path)
    await put_all(channel, numbered(0, 50))
    sink = ListSink(channel)
    await sink.start()
    syncing, release = hold_fdatasync(monkeypatch)
    assert await asyncio.wait_for(sink.process(), 10) is Status.READY  # its take waits for the fdatasync
    await asyncio.to_thread(syncing.wait, 30)
    assert await asyncio.wait_for(sink.process(), 10) is Status.READY  # delivered anyway, take queued
    third = asyncio.ensure_future(sink.process())  # over COMMITS_IN_FLIGHT: waits for the first
    await asyncio.sleep(0.2)
    assert not third.done()
    assert sink.written == [list(range(0, 10)), list(range(10, 20)), list(range(20, 30))]
    assert sink.let_go == [] and sink.counters.drain_success == 0  # nothing is durable yet
    release.set()
    assert await asyncio.wait_for(third, 30) is Status.READY
    await sink.stop()  # settles the takes still in flight
    assert sink.let_go == sink.written and sink.counters.drain_success == 30
    await channel.stop()
    assert await take_all(await started(channels, tmp_path)) == numbered(30, 20)


async def test_a_take_that_fails_to_commit_is_rolled_back_and_delivered_again(channels, tmp_path, monkeypatch):
    channel = await started(channels, tmp_path)
    await put_all(channel, numbered(0, 10))
    sink = ListSink(channel)
    await sink.start()
    real_fdatasync = os.fdatasync

    def failing_fdatasync(fd):  # fails once, for the take's group
        monkeypatch.setattr(os, "fdatasync", real_fdatasync)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    await sink.process()
    with pytest.raises(ChannelError, match="Input/output error"):
        await sink.settle_commits()
    assert channel.size == 10 and sink.let_go == []
    await sink.process()
    await sink.settle_commits()
    assert sink.written == [list(range(10))] * 2 and sink.let_go == [list(range(10))]
    assert channel.size == 0
    await sink.stop()


async def test_a_sink_that_finds_the_channel_empty_while_takes_settle_looks_again(channels, tmp_path):
    """Backing off then would sleep a second while the events put meanwhile wait (the runner
    backs off without waiting for events when the channel is not empty)."""
    channel = await started(channels, tmp_path)
    await put_all(channel, numbered(0, 10))
    sink = ListSink(channel)
    await sink.start()
    assert await sink.process() is Status.READY  # all ten taken, the take in flight
    assert await sink.process() is Status.READY  # nothing to take: settles the take, then says "again"
    assert sink.let_go == [list(range(10))] and sink.counters.batch_empty == 0
    assert await sink.process() is Status.BACKOFF  # empty, nothing in flight
    await sink.stop()
