"""The spooling directory source on a real directory, with a real memory channel behind it."""

from __future__ import annotations

import io
import json
import os

import fastavro
import pytest
from source_harness import memory_channel, running_source, take_all

from kubeflume_agent.core.status import Status


def spool_params(spool, **extra) -> dict[str, str]:
    return {"spoolDir": str(spool), "pollDelay": "0", "batchSize": "10", **{k: str(v) for k, v in extra.items()}}


async def drain(source, limit: int = 1000) -> None:
    """Call process() as the runner would until the directory has nothing left."""
    for _ in range(limit):
        await source.process()
        if source.current is None and not source.candidates():
            return
    raise AssertionError("source never ran out of work")


def write(path, text: str | bytes, mtime: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def lines(count: int, prefix: str = "line") -> str:
    return "".join(f"{prefix}-{i}\n" for i in range(count))


async def test_files_are_ingested_oldest_first_and_renamed(tmp_path):
    write(tmp_path / "b.log", lines(3, "b"), mtime=2000)
    write(tmp_path / "a.log", lines(25, "a"), mtime=1000)
    params = spool_params(tmp_path, fileHeader="true", basenameHeader="true", basenameHeaderKey="name")
    async with running_source("spooldir", params) as (source, channel):
        await drain(source)
        events = await take_all(channel)
    assert [e.body.decode() for e in events] == lines(25, "a").split() + lines(3, "b").split()
    assert events[0].headers == {"file": str(tmp_path / "a.log"), "name": "a.log"}
    assert sorted(os.listdir(tmp_path)) == [".flumespool", "a.log.COMPLETED", "b.log.COMPLETED"]
    assert source.counters.events_accepted == 28


async def test_youngest_first_and_patterns(tmp_path):
    write(tmp_path / "old.log", "old\n", mtime=1000)
    write(tmp_path / "new.log", "new\n", mtime=2000)
    write(tmp_path / "skip.tmp", "tmp\n", mtime=3000)
    write(tmp_path / "ignored.log", "ignored\n", mtime=3000)
    params = spool_params(tmp_path, consumeOrder="youngest", includePattern=r"^.*\.log$",
                          ignorePattern="^ignored.*")
    async with running_source("spooldir", params) as (source, channel):
        await drain(source)
        assert [e.body for e in await take_all(channel)] == [b"new", b"old"]
    assert (tmp_path / "skip.tmp").exists()
    assert (tmp_path / "ignored.log").exists()


async def test_restart_resumes_after_the_last_committed_batch(tmp_path):
    write(tmp_path / "big.log", lines(95))
    channel = memory_channel()
    async with running_source("spooldir", spool_params(tmp_path), channel) as (source, _):
        for _ in range(4):
            assert await source.process() is Status.READY
    assert channel.size == 40  # four batches committed, then the agent went away
    async with running_source("spooldir", spool_params(tmp_path), channel) as (source, _):
        await drain(source)
    assert [e.body.decode() for e in await take_all(channel)] == lines(95).split()


async def test_a_full_channel_loses_nothing(tmp_path):
    write(tmp_path / "a.log", lines(30))
    channel = memory_channel(capacity=15, transaction_capacity=10, keep_alive="0")
    params = spool_params(tmp_path, maxBackoff=1)
    async with running_source("spooldir", params, channel) as (source, _):
        received = []
        for _ in range(200):
            refused_before = source.counters.channel_write_fail
            await source.process()
            if source.counters.channel_write_fail > refused_before:  # the sink catches up only now
                received += await take_all(channel)
            if not os.path.exists(tmp_path / "a.log"):
                break
        received += await take_all(channel)
    assert [e.body.decode() for e in received] == lines(30).split()
    assert source.counters.channel_write_fail > 0


async def test_modified_file_is_set_aside_and_the_others_go_on(tmp_path, caplog):
    write(tmp_path / "a.log", lines(5, "a"), mtime=1000)
    write(tmp_path / "b.log", lines(5, "b"), mtime=2000)
    async with running_source("spooldir", spool_params(tmp_path)) as (source, channel):
        assert await source.process() is Status.READY  # a.log: one batch read
        with open(tmp_path / "a.log", "a") as file:
            file.write("appended later\n")
        await drain(source)
        bodies = [e.body.decode() for e in await take_all(channel)]
    assert bodies == [*lines(5, "a").split(), "appended later", *lines(5, "b").split()]
    assert (tmp_path / "a.log").exists()  # left in place, not renamed
    assert "modified after it was placed" in (tmp_path / ".flumespool" / "a.log.failed").read_text()
    assert (tmp_path / "b.log.COMPLETED").exists()
    assert source.counters.event_read_fail == 1
    assert "set " + str(tmp_path / "a.log") + " aside" in caplog.text


async def test_reused_file_name_is_set_aside(tmp_path):
    write(tmp_path / "a.log.COMPLETED", "done before\n")
    write(tmp_path / "a.log", "same name again\n")
    write(tmp_path / "c.log", "c\n")
    async with running_source("spooldir", spool_params(tmp_path)) as (source, channel):
        await drain(source)
        assert [e.body for e in await take_all(channel)] == [b"c"]
    assert "used before" in (tmp_path / ".flumespool" / "a.log.failed").read_text()
    assert source.counters.event_read_fail == 1


async def test_delete_policy_tracker_dir_and_recursion(tmp_path):
    spool = tmp_path / "spool"
    write(spool / "top.log", "top\n", mtime=1000)
    write(spool / "sub" / "deep.log", "deep\n", mtime=2000)
    write(spool / ".hidden" / "no.log", "no\n", mtime=3000)
    tracker = tmp_path / "tracker"
    params = spool_params(spool, recursiveDirectorySearch="true", trackingPolicy="tracker_dir",
                          trackerDir=str(tracker))
    async with running_source("spooldir", params) as (source, channel):
        await drain(source)
        assert [e.body for e in await take_all(channel)] == [b"top", b"deep"]
        await drain(source)  # markers keep finished files from being read again
        assert channel.size == 0
    assert (spool / "sub" / "deep.log").exists()
    assert (tracker / "sub" / "deep.log.COMPLETED").exists()

    write(tmp_path / "del" / "x.log", "x\n")
    async with running_source("spooldir", spool_params(tmp_path / "del", deletePolicy="immediate")) as (
            source, channel):
        await drain(source)
        assert [e.body for e in await take_all(channel)] == [b"x"]
    assert os.listdir(tmp_path / "del") == [".flumespool"]


@pytest.mark.parametrize(("policy", "expected"), [("REPLACE", "caf\ufffd ok"), ("IGNORE", "caf ok")])
async def test_decode_error_policies(tmp_path, policy, expected):
    write(tmp_path / "a.log", b"caf\xe9 ok\n")
    async with running_source("spooldir", spool_params(tmp_path, decodeErrorPolicy=policy)) as (source, channel):
        await drain(source)
        assert [e.body.decode() for e in await take_all(channel)] == [expected]


async def test_decode_error_fail_sets_the_file_aside(tmp_path):
    write(tmp_path / "a.log", b"good\nbad \xff\n", mtime=1000)
    write(tmp_path / "b.log", b"fine\n", mtime=2000)
    async with running_source("spooldir", spool_params(tmp_path)) as (source, channel):
        await drain(source)
        assert [e.body for e in await take_all(channel)] == [b"fine"]
    assert "not valid utf-8" in (tmp_path / ".flumespool" / "a.log.failed").read_text()


async def test_latin1_input_long_lines_split(tmp_path):
    write(tmp_path / "a.log", "\u00e9t\u00e9 abcdefgh\nxy\r\n".encode("latin-1"))
    params = spool_params(tmp_path, inputCharset="ISO-8859-1", **{"deserializer.maxLineLength": "5"})
    async with running_source("spooldir", params) as (source, channel):
        await drain(source)
        bodies = [e.body.decode() for e in await take_all(channel)]
    assert bodies == ["\u00e9t\u00e9 a", "bcdef", "gh", "xy\r"]


async def test_blob_deserializer(tmp_path):
    write(tmp_path / "a.bin", bytes(range(256)) * 3)
    params = spool_params(tmp_path, deserializer="BLOB", **{"deserializer.maxBlobLength": "500"})
    async with running_source("spooldir", params) as (source, channel):
        await drain(source)
        bodies = [e.body for e in await take_all(channel)]
    assert [len(b) for b in bodies] == [500, 268]
    assert b"".join(bodies) == bytes(range(256)) * 3


async def test_avro_deserializer_resumes_inside_a_file(tmp_path):
    schema = {"type": "record", "name": "User", "fields": [{"name": "id", "type": "int"}]}
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema, [{"id": i} for i in range(25)], sync_interval=16)
    write(tmp_path / "users.avro", buffer.getvalue())
    channel = memory_channel()
    async with running_source("spooldir", spool_params(tmp_path, deserializer="avro"), channel) as (source, _):
        await source.process()
    async with running_source("spooldir", spool_params(tmp_path, deserializer="avro"), channel) as (source, _):
        await drain(source)
    events = await take_all(channel)
    parsed = fastavro.parse_schema(schema)
    assert [fastavro.schemaless_reader(io.BytesIO(e.body), parsed)["id"] for e in events] == list(range(25))
    assert events[0].headers == {"flume.avro.schema.hash": fastavro.schema.fingerprint(
        fastavro.schema.to_parsing_canonical_form(schema), "CRC-64-AVRO")}


def test_settings_checks_and_storage_paths(tmp_path):
    from source_harness import config_for

    cls, settings = config_for("source", "spooldir", {
        "spoolDir": str(tmp_path), "deletePolicy": "immediate", "trackingPolicy": "tracker_dir",
        "deserializer": "AVRO", "deserializer.schemaType": "nope"})
    problems = dict(cls.config_problems(settings))
    assert "trackingPolicy" in problems
    assert "deserializer.schemaType" in problems
    _, utf16 = config_for("source", "spooldir", {"spoolDir": str(tmp_path), "inputCharset": "UTF-16"})
    assert [key for key, _ in cls.config_problems(utf16)] == ["inputCharset"]
    assert settings.storage_paths() == [str(tmp_path)]
    _, elsewhere = config_for("source", "spooldir", {"spoolDir": str(tmp_path), "trackerDir": "/var/tracker"})
    assert elsewhere.storage_paths() == [str(tmp_path), "/var/tracker"]


async def test_a_huge_line_is_read_in_pieces_never_whole(tmp_path):
    write(tmp_path / "a.log", "\u00e9" * 25 + "\n")  # 2-byte characters, pieces cut inside none
    params = spool_params(tmp_path, **{"deserializer.maxLineLength": "10"})
    async with running_source("spooldir", params) as (source, channel):
        await drain(source)
        bodies = [e.body.decode() for e in await take_all(channel)]
    assert bodies == ["\u00e9" * 10, "\u00e9" * 10, "\u00e9" * 5]


async def test_avro_deserializer_with_the_schema_literal(tmp_path):
    schema = {"type": "record", "name": "Ping", "fields": [{"name": "at", "type": "long"}]}
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema, [{"at": 7}])
    write(tmp_path / "ping.avro", buffer.getvalue())
    params = spool_params(tmp_path, deserializer="AVRO", **{"deserializer.schemaType": "LITERAL"})
    async with running_source("spooldir", params) as (source, channel):
        await drain(source)
        [event] = await take_all(channel)
    literal = event.headers["flume.avro.schema.literal"]
    assert fastavro.parse_schema(json.loads(literal)) == fastavro.parse_schema(schema)
    assert fastavro.schemaless_reader(io.BytesIO(event.body), fastavro.parse_schema(schema)) == {"at": 7}


async def test_an_empty_file_is_one_empty_event(tmp_path):
    write(tmp_path / "empty.log", b"", mtime=1000)
    write(tmp_path / "next.log", "next\n", mtime=2000)
    async with running_source("spooldir", spool_params(tmp_path)) as (source, channel):
        await drain(source)
        assert [e.body for e in await take_all(channel)] == [b"", b"next"]
    assert (tmp_path / "empty.log.COMPLETED").exists()


async def test_a_restart_after_the_empty_event_does_not_send_it_again(tmp_path):
    write(tmp_path / "empty.log", b"")
    channel = memory_channel()
    async with running_source("spooldir", spool_params(tmp_path), channel) as (source, _):
        await source.process()  # the empty event is committed; the agent goes away before renaming
    assert (tmp_path / "empty.log").exists()
    async with running_source("spooldir", spool_params(tmp_path), channel) as (source, _):
        await drain(source)
    assert [e.body for e in await take_all(channel)] == [b""]
    assert (tmp_path / "empty.log.COMPLETED").exists()


async def test_patterns_match_the_whole_file_name_as_in_java(tmp_path):
    write(tmp_path / "a.log", "a\n", mtime=1000)
    write(tmp_path / "a.log.bak", "bak\n", mtime=2000)
    write(tmp_path / "keep-x.log", "keep\n", mtime=3000)
    params = spool_params(tmp_path, includePattern=r".*\.log", ignorePattern="keep")
    async with running_source("spooldir", params) as (source, channel):
        await drain(source)
        assert [e.body for e in await take_all(channel)] == [b"a", b"keep"]
    assert (tmp_path / "a.log.bak").exists()
