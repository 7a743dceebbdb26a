"""The file_roll sink on real files: serializers, Flume's file names, rolling, and a directory that
goes bad (events stay in the channel until it is fixed, and are then delivered exactly once)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

import fastavro
import pytest

from kubeflume_agent.core.errors import EventDeliveryError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.status import Status
from kubeflume_agent.sinks.file_roll import RollingFileSink
from tests.integration.source_harness import config_for, put_all, running_sink, wait_for

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def file_roll_sink(params: dict[str, str]):
    """A file_roll sink built as the agent builds it, by its Java class name here."""
    async with running_sink("org.apache.flume.sink.RollingFileSink", params) as (sink, channel):
        assert type(sink) is RollingFileSink
        yield sink, channel


def numbered(start: int, stop: int, **headers: str) -> list[Event]:
    return [Event(f"event {i}".encode(), dict(headers)) for i in range(start, stop)]


def files(directory: Path) -> list[Path]:
    """The sink's files in the order it wrote them (by their number n)."""
    return sorted(directory.iterdir(), key=lambda p: int(re.search(r"-(\d+)(\.[^.]*)?$", p.name).group(1)))


async def test_text_files_are_named_as_flume_names_them(tmp_path):
    out = tmp_path / "created" / "out"
    params = {"sink.directory": str(out), "sink.rollInterval": "0", "sink.batchSize": "10",
              "sink.pathManager.prefix": "web-", "sink.pathManager.extension": "log"}
    async with file_roll_sink(params) as (sink, channel):
        assert out.is_dir(), "the directory is created at start"
        assert list(out.iterdir()) == [], "no file before the first batch"
        await put_all(channel, numbered(0, 25))
        assert [await sink.process() for _ in range(4)] == [Status.READY] * 3 + [Status.BACKOFF]
        assert channel.size == 0
        assert (sink.counters.drain_success, sink.counters.batch_complete, sink.counters.batch_underflow) == (25, 2, 1)
        assert str(out) in sink.describe()
    [written] = files(out)
    assert written.name == f"web-{sink.series_millis}-1.log"
    assert abs(sink.series_millis - time.time() * 1000) < 600_000
    assert written.read_bytes() == b"".join(f"event {i}\n".encode() for i in range(25))
    assert (sink.counters.connections_created, sink.counters.connections_closed) == (1, 1)


async def test_each_batch_is_in_the_file_before_process_returns(tmp_path):
    async with file_roll_sink({"sink.directory": str(tmp_path), "sink.rollInterval": "0",
                             "sink.serializer.appendNewline": "false"}) as (sink, channel):
        await put_all(channel, [Event(b"a"), Event(b"b")])
        await sink.process()
        [written] = files(tmp_path)
        assert written.read_bytes() == b"ab"
        await put_all(channel, [Event(b"c")])
        await sink.process()
        assert written.read_bytes() == b"abc"


async def test_header_and_text_writes_headers_as_a_java_map(tmp_path):
    params = {"sink.directory": str(tmp_path), "sink.rollInterval": "0", "sink.serializer": "HEADER_AND_TEXT"}
    async with file_roll_sink(params) as (sink, channel):
        await put_all(channel, [Event(b"hello", {"host": "web1", "timestamp": "1700000000000"}), Event(b"bare")])
        assert await sink.process() is Status.READY
    [written] = files(tmp_path)
    assert written.read_bytes() == b"{host=web1, timestamp=1700000000000} hello\n{} bare\n"


async def test_avro_event_files_read_back_with_fastavro(tmp_path):
    params = {"sink.directory": str(tmp_path), "sink.rollInterval": "0", "sink.serializer": "avro_event",
              "sink.serializer.compressionCodec": "deflate", "sink.pathManager.extension": "avro",
              "sink.batchSize": "7"}
    events = [Event(f"body {i}".encode(), {"n": str(i)}) for i in range(20)]
    async with file_roll_sink(params) as (sink, channel):
        await put_all(channel, events)
        while await sink.process() is Status.READY:
            pass
        [written] = files(tmp_path)
        with written.open("rb") as f:  # readable while still open: every batch ends an Avro block
            assert len(list(fastavro.reader(f))) == 20
    with written.open("rb") as f:
        reader = fastavro.reader(f)
        assert reader.codec == "deflate"
        records = list(reader)
    assert records == [{"headers": e.headers, "body": e.body} for e in events]
    assert written.name.endswith("-1.avro")


async def test_files_roll_on_the_interval(tmp_path):
    async with file_roll_sink({"sink.directory": str(tmp_path), "sink.rollInterval": "0.2",
                             "sink.pathManager.prefix": "roll-"}) as (sink, channel):
        sent = 0

        async def second_file_written() -> bool:
            nonlocal sent
            await put_all(channel, numbered(sent, sent + 1))
            sent += 1
            await sink.process()
            return len(list(tmp_path.iterdir())) >= 2

        await wait_for(second_file_written, timeout=30, what="a second file")
    written = files(tmp_path)
    assert [p.name for p in written[:2]] == [f"roll-{sink.series_millis}-1", f"roll-{sink.series_millis}-2"]
    lines = [line for p in written for line in p.read_text().splitlines()]
    assert lines == [f"event {i}" for i in range(sent)], "every event once, in order, across the files"
    assert sink.counters.connections_created == len(written) == sink.counters.connections_closed


async def test_an_idle_sink_leaves_no_empty_files(tmp_path):
    async with file_roll_sink({"sink.directory": str(tmp_path), "sink.rollInterval": "0.05"}) as (sink, channel):
        await put_all(channel, numbered(0, 1))
        await sink.process()
        await wait_for(lambda: sink.counters.connections_closed == 1, timeout=30, what="the roll")
        for _ in range(3):
            assert await sink.process() is Status.BACKOFF
    assert len(files(tmp_path)) == 1


async def test_roll_interval_zero_keeps_one_file(tmp_path):
    async with file_roll_sink({"sink.directory": str(tmp_path), "sink.rollInterval": "0",
                             "sink.batchSize": "5"}) as (sink, channel):
        assert sink._timer is None
        for start in range(0, 50, 5):
            await put_all(channel, numbered(start, start + 5))
            assert await sink.process() is Status.READY
    [written] = files(tmp_path)
    assert written.read_text().splitlines() == [f"event {i}" for i in range(50)]


async def test_rolltime_path_manager_names_files_by_the_roll_time(tmp_path):
    async with file_roll_sink({"sink.directory": str(tmp_path), "sink.rollInterval": "0",
                             "sink.pathManager": "rolltime", "sink.pathManager.extension": "txt"}) as (sink, channel):
        await put_all(channel, numbered(0, 1))
        await sink.process()
    [written] = files(tmp_path)
    assert re.fullmatch(r"\d{14}-1\.txt", written.name)


async def test_an_existing_file_is_never_overwritten(tmp_path):
    async with file_roll_sink({"sink.directory": str(tmp_path), "sink.rollInterval": "0"}) as (sink, channel):
        taken = tmp_path / f"{sink.series_millis}-1"
        taken.write_bytes(b"someone else's\n")
        await put_all(channel, numbered(0, 2))
        await sink.process()
    assert taken.read_bytes() == b"someone else's\n"
    assert (tmp_path / f"{sink.series_millis}-2").read_text() == "event 0\nevent 1\n"


async def test_an_unusable_directory_keeps_events_in_the_channel_until_fixed(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where a directory should be")
    out = blocker / "out"
    async with file_roll_sink({"sink.directory": str(out), "sink.rollInterval": "0"}) as (sink, channel):
        await put_all(channel, numbered(0, 3))
        for _ in range(2):
            with pytest.raises(EventDeliveryError):
                await sink.process()
            assert channel.size == 3
        assert sink.counters.event_write_fail == 2
        assert sink.counters.connections_failed == 2
        assert sink.counters.drain_success == 0

        blocker.unlink()
        assert await sink.process() is Status.READY
        assert channel.size == 0
    [written] = files(out)
    assert written.read_text() == "event 0\nevent 1\nevent 2\n"


async def test_a_directory_replaced_under_an_open_file_is_not_acknowledged(tmp_path):
    out = tmp_path / "out"
    async with file_roll_sink({"sink.directory": str(out), "sink.rollInterval": "0"}) as (sink, channel):
        await put_all(channel, numbered(0, 2))
        assert await sink.process() is Status.READY
        shutil.rmtree(out)
        out.write_text("not a directory any more")

        await put_all(channel, numbered(2, 4))
        with pytest.raises(EventDeliveryError, match="deleted"):
            await sink.process()  # the open file is gone: writing there would lose the batch
        assert channel.size == 2
        with pytest.raises(EventDeliveryError):
            await sink.process()  # a new file cannot be made while the directory is a file
        assert channel.size == 2

        out.unlink()
        assert await sink.process() is Status.READY
        assert channel.size == 0
        assert sink.counters.drain_success == 4
    [written] = files(out)
    assert written.name.endswith("-2")
    assert written.read_text() == "event 2\nevent 3\n"


async def test_a_failed_batch_is_cut_from_the_file_so_a_retry_is_not_written_twice(tmp_path, monkeypatch):
    params = {"sink.directory": str(tmp_path), "sink.rollInterval": "0", "sink.batchSize": "2"}
    async with file_roll_sink(params) as (sink, channel):
        await put_all(channel, numbered(0, 4))
        assert await sink.process() is Status.READY
        real_write = os.write

        def half_then_disk_full(fd: int, data) -> int:
            monkeypatch.setattr(os, "write", disk_full)
            return real_write(fd, bytes(data)[:3])

        def disk_full(fd: int, data) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "write", half_then_disk_full)
        with pytest.raises(EventDeliveryError, match="No space left"):
            await sink.process()
        assert channel.size == 2
        monkeypatch.setattr(os, "write", real_write)
        assert await sink.process() is Status.READY
    first, second = files(tmp_path)
    assert first.read_text() == "event 0\nevent 1\n", "the partial batch was cut off"
    assert second.read_text() == "event 2\nevent 3\n"


def test_validation_reports_a_bad_serializer_and_roll_interval():
    def problems(params: dict[str, str]) -> list[tuple[str, str]]:
        _, settings = config_for("sink", "file_roll", {"sink.directory": "/tmp/x", **params})
        return RollingFileSink.config_problems(settings)

    assert problems({}) == []
    [(key, message)] = problems({"sink.serializer": "no_such_serializer"})
    assert key == "sink.serializer" and "no_such_serializer" in message
    [(key, _)] = problems({"sink.serializer": "avro_event", "sink.serializer.compressionCodec": "zip"})
    assert key == "sink.serializer.compressionCodec"
    [(key, _)] = problems({"sink.rollInterval": "-1"})
    assert key == "sink.rollInterval"
