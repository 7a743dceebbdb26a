"""The Taildir source on real files: following, rotation by rename and copy-truncate, restarts."""

from __future__ import annotations

import logging
import os
import shutil

import orjson
import pytest
from source_harness import config_for, memory_channel, running_source, take_all

from kubeflume_agent.core.status import Status
from kubeflume_agent.sources import taildir


def tail_params(tmp_path, pattern: str = r"app\.log", **extra) -> dict[str, str]:
    return {
        "filegroups": "g1", "filegroups.g1": str(tmp_path / "logs" / pattern),
        "positionFile": str(tmp_path / "state" / "taildir_position.json"),
        "backoffSleepIncrement": "1", "maxBackoffSleep": "2", "writePosInterval": "0", "batchSize": "7",
        **{key: str(value) for key, value in extra.items()},
    }


def append(path, first: int, count: int, prefix: str = "line") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as file:
        file.write("".join(f"{prefix}-{i}\n" for i in range(first, first + count)))


def expected(first: int, count: int, prefix: str = "line") -> list[str]:
    return [f"{prefix}-{i}" for i in range(first, first + count)]


async def poll_all(source, channel) -> list[str]:
    """Call process() until a poll finds nothing new; return the bodies that arrived."""
    for _ in range(1000):
        accepted = source.counters.events_accepted
        await source.process()
        if source.counters.events_accepted == accepted:
            return [e.body.decode() for e in await take_all(channel)]
    raise AssertionError("the source never caught up")


async def test_groups_headers_offsets_and_new_lines(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 10)
    append(logs / "other.txt", 0, 2, "other")
    params = tail_params(tmp_path, filegroups="g1 g2", **{
        "filegroups.g2": str(logs / r".*\.txt"), "headers.g1.kind": "app", "headers.g2.kind": "other",
        "byteOffsetHeader": "true", "fileHeader": "true"})
    async with running_source("TAILDIR", params) as (source, channel):
        assert await source.process() is Status.READY
        events = await take_all(channel)
        assert sorted(e.body.decode() for e in events) == sorted(expected(0, 10) + expected(0, 2, "other"))
        first = next(e for e in events if e.body == b"line-1")
        assert first.headers == {"kind": "app", "byteoffset": "7", "file": str(logs / "app.log")}
        append(logs / "app.log", 10, 20)
        assert await poll_all(source, channel) == expected(10, 20)


async def test_partial_line_waits_for_its_newline_or_idle_timeout(tmp_path):
    path = tmp_path / "logs" / "app.log"
    path.parent.mkdir()
    path.write_bytes(b"one\r\ntwo\rstill two\npart")
    async with running_source("TAILDIR", tail_params(tmp_path, idleTimeout=100000)) as (source, channel):
        assert await poll_all(source, channel) == ["one", "two\rstill two"]
        with open(path, "ab") as file:
            file.write(b"ial\n")
        assert await poll_all(source, channel) == ["partial"]
    path.write_bytes(b"no newline at all")
    (tmp_path / "state" / "taildir_position.json").unlink()
    async with running_source("TAILDIR", tail_params(tmp_path, idleTimeout=0)) as (source, channel):
        assert await poll_all(source, channel) == ["no newline at all"]


async def test_rotation_by_rename_to_a_name_that_no_longer_matches(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 10)
    async with running_source("TAILDIR", tail_params(tmp_path, idleTimeout=0)) as (source, channel):
        received = await poll_all(source, channel)
        append(logs / "app.log", 10, 5)  # written just before the rotation, not yet read
        os.rename(logs / "app.log", logs / "app.log.1")
        append(logs / "app.log", 15, 10)
        received += await poll_all(source, channel)
        assert len(source.files) == 1  # the rotated file was read to its end and closed
    assert received == expected(0, 25)


async def test_rotation_by_rename_to_a_matching_name_reads_nothing_twice(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 10)
    params = tail_params(tmp_path, pattern=r"app\.log.*")
    async with running_source("TAILDIR", params) as (source, channel):
        received = await poll_all(source, channel)
        append(logs / "app.log", 10, 5)
        os.rename(logs / "app.log", logs / "app.log.1")
        append(logs / "app.log", 15, 10)
        received += await poll_all(source, channel)
    assert sorted(received, key=lambda s: int(s.split("-")[1])) == expected(0, 25)
    assert len(received) == 25


async def test_copy_truncate_with_a_matching_copy_neither_loses_nor_duplicates(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 20)
    params = tail_params(tmp_path, pattern=r"app\.log.*")
    async with running_source("TAILDIR", params) as (source, channel):
        received = await poll_all(source, channel)
        append(logs / "app.log", 20, 5)  # not yet read when the copy is taken
        shutil.copyfile(logs / "app.log", logs / "app.log.1")
        received += await poll_all(source, channel)  # the copy is seen before the truncation
        with open(logs / "app.log", "r+") as file:
            file.truncate(0)
        append(logs / "app.log", 25, 5)
        received += await poll_all(source, channel)
    assert received == expected(0, 30)


async def test_copy_truncate_seen_in_one_poll(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 20)
    params = tail_params(tmp_path, pattern=r"app\.log.*")
    async with running_source("TAILDIR", params) as (source, channel):
        received = await poll_all(source, channel)
        append(logs / "app.log", 20, 5)
        shutil.copyfile(logs / "app.log", logs / "app.log.1")
        with open(logs / "app.log", "r+") as file:
            file.truncate(0)
        append(logs / "app.log", 25, 5)
        received += await poll_all(source, channel)
    assert sorted(received, key=lambda s: int(s.split("-")[1])) == expected(0, 30)
    assert len(received) == 30


async def test_restart_resumes_even_after_a_rename_while_stopped(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 10)
    channel = memory_channel()
    params = tail_params(tmp_path, pattern=r"app\.log.*")
    async with running_source("TAILDIR", params, channel) as (source, _):
        received = await poll_all(source, channel)
    saved = orjson.loads((tmp_path / "state" / "taildir_position.json").read_bytes())
    assert saved[0]["pos"] == os.path.getsize(logs / "app.log")
    assert saved[0]["inode"] == os.stat(logs / "app.log").st_ino
    append(logs / "app.log", 10, 3)
    os.rename(logs / "app.log", logs / "app.log.1")
    append(logs / "app.log", 13, 3)
    async with running_source("TAILDIR", params, channel) as (source, _):
        received += await poll_all(source, channel)
    assert sorted(received, key=lambda s: int(s.split("-")[1])) == expected(0, 16)
    assert len(received) == 16


async def test_flume_position_file_and_skip_to_end(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 10)
    append(logs / "new.log", 0, 10, "new")
    state = tmp_path / "state"
    state.mkdir()
    flume_entry = {"inode": os.stat(logs / "app.log").st_ino, "pos": len("".join(f"line-{i}\n" for i in range(4))),
                   "file": str(logs / "app.log")}
    (state / "taildir_position.json").write_bytes(orjson.dumps([flume_entry]))
    params = tail_params(tmp_path, pattern=r".*\.log", skipToEnd="true")
    async with running_source("TAILDIR", params) as (source, channel):
        assert await poll_all(source, channel) == expected(4, 6)  # new.log skipped to its end
        append(logs / "new.log", 10, 2, "new")
        assert await poll_all(source, channel) == expected(10, 2, "new")


async def test_truncated_file_is_read_from_the_start(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 10)
    async with running_source("TAILDIR", tail_params(tmp_path)) as (source, channel):
        await poll_all(source, channel)
        (logs / "app.log").write_text("fresh-0\n")
        assert await poll_all(source, channel) == ["fresh-0"]


async def test_a_full_channel_loses_no_line(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 40)
    channel = memory_channel(capacity=10, transaction_capacity=10, keep_alive="0")
    async with running_source("TAILDIR", tail_params(tmp_path), channel) as (source, _):
        received = []
        for _ in range(100):
            await source.process()
            received += [e.body.decode() for e in await take_all(channel)]
            if len(received) >= 40:
                break
    assert received == expected(0, 40)
    assert source.counters.channel_write_fail > 0


def test_settings_checks_and_storage_paths(tmp_path):
    cls, settings = config_for("source", "TAILDIR", {"filegroups": "a b", "filegroups.a": "/var/log/.*\\.log",
                                                        "positionFile": "/state/pos.json"})
    assert cls.config_problems(settings) == [("filegroups.b", "is required for every group in filegroups")]
    assert settings.storage_paths() == ["/state"]


async def test_file_rotated_to_an_unmatched_name_while_stopped_is_finished(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 10)
    channel = memory_channel()
    params = tail_params(tmp_path, idleTimeout=0)
    async with running_source("TAILDIR", params, channel) as (source, _):
        received = await poll_all(source, channel)
    append(logs / "app.log", 10, 5)  # written after the last read, then rotated away
    os.rename(logs / "app.log", logs / "app.log.1")
    append(logs / "app.log", 15, 5)
    async with running_source("TAILDIR", params, channel) as (source, _):
        received += await poll_all(source, channel)
        received += await poll_all(source, channel)
        assert [t.path for t in source.files.values()] == [str(logs / "app.log")]
    assert received == expected(0, 20)


async def test_kubernetes_container_log_symlinks_rotated_by_the_kubelet(tmp_path):
    """/var/log/containers/<pod>_<ns>_<container>-<id>.log are symlinks to /var/log/pods/.../0.log;
    the kubelet rotates 0.log to 0.log.<timestamp> and the runtime starts a new 0.log."""
    pods = tmp_path / "pods" / "ns_pod_uid" / "app"
    containers = tmp_path / "logs"
    containers.mkdir()
    append(pods / "0.log", 0, 10)
    (containers / "pod_ns_app-123.log").symlink_to(pods / "0.log")
    channel = memory_channel()
    params = tail_params(tmp_path, pattern=r".*\.log", idleTimeout=0)
    async with running_source("TAILDIR", params, channel) as (source, _):
        received = await poll_all(source, channel)
        append(pods / "0.log", 10, 5)
        os.rename(pods / "0.log", pods / "0.log.20240101-000000")
        append(pods / "0.log", 15, 5)
        received += await poll_all(source, channel)
        received += await poll_all(source, channel)
    append(pods / "0.log", 20, 5)  # while the agent is down: written, then rotated away
    os.rename(pods / "0.log", pods / "0.log.20240101-000100")
    append(pods / "0.log", 25, 5)
    async with running_source("TAILDIR", params, channel) as (source, _):
        received += await poll_all(source, channel)
        received += await poll_all(source, channel)
    assert received == expected(0, 30)


async def test_position_file_is_flumes_json_and_fingerprints_sit_beside_it(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 10)
    async with running_source("TAILDIR", tail_params(tmp_path)) as (source, channel):
        await poll_all(source, channel)
    position_file = tmp_path / "state" / "taildir_position.json"
    assert orjson.loads(position_file.read_bytes()) == [
        {"inode": os.stat(logs / "app.log").st_ino, "pos": os.path.getsize(logs / "app.log"),
         "file": str(logs / "app.log")}]
    [fingerprinted] = orjson.loads((tmp_path / "state" / "taildir_position.json.kubeflume").read_bytes())
    assert fingerprinted["pos"] == os.path.getsize(logs / "app.log")
    assert {"headLength", "headCrc", "group", "realPath"} <= fingerprinted.keys()


async def test_fingerprints_that_disagree_with_the_position_file_are_not_used(tmp_path, caplog):
    """As after a crash between the two writes, or after Flume wrote the position file."""
    caplog.set_level(logging.INFO)
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 10)
    async with running_source("TAILDIR", tail_params(tmp_path)) as (source, channel):
        await poll_all(source, channel)
    position_file = tmp_path / "state" / "taildir_position.json"
    [entry] = orjson.loads(position_file.read_bytes())
    entry["pos"] = len("".join(f"line-{i}\n" for i in range(6)))  # Flume says: six lines read
    position_file.write_bytes(orjson.dumps([entry]))
    async with running_source("TAILDIR", tail_params(tmp_path)) as (source, channel):
        assert await poll_all(source, channel) == expected(6, 4)
    assert "using the position file alone" in caplog.text


async def test_skip_to_end_never_skips_a_known_file_that_was_rewritten(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 10)
    params = tail_params(tmp_path, skipToEnd="true")
    async with running_source("TAILDIR", params) as (source, channel):
        append(logs / "app.log", 10, 2)  # lines after the start, which skipped the first ten
        assert await poll_all(source, channel) == expected(10, 2)
    with open(logs / "app.log", "r+") as file:  # truncated and rewritten while the agent was down
        file.truncate(0)
    append(logs / "app.log", 0, 3, "fresh")
    async with running_source("TAILDIR", params) as (source, channel):
        assert await poll_all(source, channel) == expected(0, 3, "fresh")


async def test_copy_truncate_of_a_file_not_read_yet(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 20)
    params = tail_params(tmp_path, pattern=r"app\.log.*")
    async with running_source("TAILDIR", params) as (source, channel):
        # copied and truncated before the first poll read anything of app.log
        shutil.copyfile(logs / "app.log", logs / "app.log.1")
        with open(logs / "app.log", "r+") as file:
            file.truncate(0)
        append(logs / "app.log", 20, 30)
        received = await poll_all(source, channel)
    assert sorted(received, key=lambda s: int(s.split("-")[1])) == expected(0, 50)


@pytest.mark.parametrize("old_file", ["deleted", "kept"])
async def test_a_new_file_that_only_starts_like_a_rotated_one_is_read_whole(tmp_path, monkeypatch, old_file):
    """Rotation by rename to a matching name, and the new file begins with the same banner: it is
    no copy (the original is never truncated), so every line of it arrives."""
    monkeypatch.setattr(taildir, "TRUNCATE_WAIT", 0.0)  # a copy-truncate's truncation is overdue at once
    logs = tmp_path / "logs"
    banner = "service starting, version 1.2.3, configuration /etc/service.conf\n"
    logs.mkdir()
    (logs / "app.log").write_text(banner)
    params = tail_params(tmp_path, pattern=r"app\.log.*", idleTimeout=0)
    async with running_source("TAILDIR", params) as (source, channel):
        received = await poll_all(source, channel)
        os.rename(logs / "app.log", logs / "app.log.1")
        if old_file == "deleted":
            os.remove(logs / "app.log.1")
        (logs / "app.log").write_text(banner + "second run\n")
        for _ in range(3):
            received += await poll_all(source, channel)
    assert received == [banner.strip(), banner.strip(), "second run"]


async def test_copy_truncate_while_stopped_goes_on_in_the_copy(tmp_path):
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 20)
    channel = memory_channel()
    params = tail_params(tmp_path, pattern=r"app\.log.*")
    async with running_source("TAILDIR", params, channel) as (source, _):
        received = await poll_all(source, channel)
    append(logs / "app.log", 20, 5)  # written after the last read, then copied away and truncated
    shutil.copyfile(logs / "app.log", logs / "app.log.1")
    with open(logs / "app.log", "r+") as file:
        file.truncate(0)
    append(logs / "app.log", 25, 5)
    async with running_source("TAILDIR", params, channel) as (source, _):
        received += await poll_all(source, channel)
    assert sorted(received, key=lambda s: int(s.split("-")[1])) == expected(0, 30)
    assert len(received) == 30


async def test_a_flume_position_beyond_the_end_means_truncation(tmp_path):
    """Flume's rule for its own position file (no fingerprints): a file now shorter than its saved
    position was truncated while the agent was down and is read from its start."""
    logs = tmp_path / "logs"
    append(logs / "app.log", 0, 3, "fresh")
    state = tmp_path / "state"
    state.mkdir()
    entry = {"inode": os.stat(logs / "app.log").st_ino, "pos": 10_000, "file": str(logs / "app.log")}
    (state / "taildir_position.json").write_bytes(orjson.dumps([entry]))
    async with running_source("TAILDIR", tail_params(tmp_path)) as (source, channel):
        assert await poll_all(source, channel) == expected(0, 3, "fresh")


async def test_copy_truncate_whose_copy_is_listed_only_after_the_truncation(tmp_path):
    """The poll that notices the truncation may list the directory just before the copy appears."""
    logs, staging = tmp_path / "logs", tmp_path / "staging"
    staging.mkdir()
    append(logs / "app.log", 0, 20)
    params = tail_params(tmp_path, pattern=r"app\.log.*")
    async with running_source("TAILDIR", params) as (source, channel):
        received = await poll_all(source, channel)
        append(logs / "app.log", 20, 5)
        shutil.copyfile(logs / "app.log", staging / "app.log.1")  # the copy, not listed yet
        with open(logs / "app.log", "r+") as file:
            file.truncate(0)
        append(logs / "app.log", 25, 5)
        received += await poll_all(source, channel)
        os.rename(staging / "app.log.1", logs / "app.log.1")  # now it is
        received += await poll_all(source, channel)
    assert sorted(received, key=lambda s: int(s.split("-")[1])) == expected(0, 30)
    assert len(received) == 30
