"""The hdfs sink over real HTTP against the WebHDFS fake: rolling, naming, formats, and failures
(a NameNode that goes away mid-batch, lost answers, standby failover, crashed runs) with nothing
lost and nothing written twice in a closed file."""

from __future__ import annotations

import asyncio
import bz2
import gzip
import io

import fastavro
import pytest

from kubeflume_agent.channels.memory import MemoryChannel
from kubeflume_agent.config.keys import resolve
from kubeflume_agent.config.properties import parse_properties
from kubeflume_agent.config.validation import validate
from kubeflume_agent.core.errors import EventDeliveryError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.registry import lookup
from kubeflume_agent.runtime.agent import Agent
from kubeflume_agent.sinks.hdfs.sink import HdfsSink
from tests.fakes.webhdfs import FakeWebHDFS
from tests.integration.source_harness import config_for, put_all, running_sink

pytestmark = pytest.mark.timeout(90)


def sink_settings(params: dict[str, str]):
    return config_for("sink", "hdfs", params)[1]


def base_params(fs: FakeWebHDFS, **overrides: str) -> dict[str, str]:
    params = {
        "hdfs.path": f"webhdfs://{fs.namenode_address}/flume",
        "hdfs.fileType": "DataStream",
        "hdfs.user": "flume",
        "hdfs.rollInterval": "0",
        "hdfs.rollSize": "0",
        "hdfs.rollCount": "0",
        "hdfs.batchSize": "10",
    }
    params.update({key.replace("__", "."): value for key, value in overrides.items()})
    return params


def hdfs_sink(params: dict[str, str]):
    return running_sink("hdfs", params)


async def drain(sink: HdfsSink, channel: MemoryChannel) -> None:
    while channel.size:
        await sink.process()


async def eventually(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def numbered(count: int, start: int = 0, **headers: str) -> list[Event]:
    return [Event(f"event-{n:04d}".encode(), dict(headers)) for n in range(start, start + count)]


def closed_files(fs: FakeWebHDFS, directory: str = "/flume") -> list[str]:
    return [name for name in fs.listdir(directory) if not name.endswith(".tmp")]


def in_use_files(fs: FakeWebHDFS, directory: str = "/flume") -> list[str]:
    return [name for name in fs.listdir(directory) if name.endswith(".tmp")]


def lines(fs: FakeWebHDFS, directory: str = "/flume") -> list[bytes]:
    """Every line of every file in the directory, files in the order they were opened."""
    names = sorted(fs.listdir(directory), key=lambda name: int(name.split(".")[1]))
    return [line for name in names for line in fs.read(f"{directory}/{name}").splitlines()]


def bodies(events: list[Event]) -> list[bytes]:
    return [event.body for event in events]


def test_registered_under_flume_names():
    assert lookup("sink", "hdfs") is HdfsSink
    assert lookup("sink", "org.apache.flume.sink.hdfs.HDFSEventSink") is HdfsSink


async def test_rolls_by_count_with_in_use_names_until_closed(fs):
    events = numbered(25)
    async with hdfs_sink(base_params(fs, hdfs__rollCount="10")) as (sink, channel):
        await put_all(channel, events)
        await drain(sink, channel)
        assert len(closed_files(fs)) == 2
        [open_file] = in_use_files(fs)
        assert open_file.startswith("FlumeData.") and open_file.endswith(".tmp")
        assert sink.counters.drain_success == 25
    assert in_use_files(fs) == [], "stop closes the open file"
    names = closed_files(fs)
    assert [len(fs.read(f"/flume/{name}").splitlines()) for name in sorted(names)] == [10, 10, 5]
    assert lines(fs) == bodies(events)
    assert fs.status(f"/flume/{names[0]}")["owner"] == "flume"


async def test_rolls_by_size_after_the_event_that_crosses_it(fs):
    events = numbered(7)  # 10-byte bodies
    async with hdfs_sink(base_params(fs, hdfs__rollSize="25")) as (sink, channel):
        await put_all(channel, events)
        await drain(sink, channel)
    sizes = [len(fs.read(f"/flume/{n}").splitlines()) for n in sorted(closed_files(fs))]
    assert sizes == [3, 3, 1]
    assert lines(fs) == bodies(events)


async def test_rolls_by_interval(fs):
    async with hdfs_sink(base_params(fs, hdfs__rollInterval="0.3")) as (sink, channel):
        await put_all(channel, numbered(3))
        await drain(sink, channel)
        assert len(in_use_files(fs)) == 1
        await eventually(lambda: closed_files(fs) and not in_use_files(fs))
        await put_all(channel, numbered(2, start=3))
        await drain(sink, channel)
        await eventually(lambda: len(closed_files(fs)) == 2 and not in_use_files(fs))
    assert lines(fs) == bodies(numbered(5))


async def test_idle_timeout_closes_a_quiet_file(fs):
    async with hdfs_sink(base_params(fs, hdfs__idleTimeout="0.3")) as (sink, channel):
        await put_all(channel, numbered(2))
        await drain(sink, channel)
        await eventually(lambda: closed_files(fs) and not in_use_files(fs))


async def test_name_prefix_suffix_and_in_use_affixes(fs):
    params = base_params(fs, hdfs__filePrefix="events-%{host}", hdfs__fileSuffix=".log",
                         hdfs__inUsePrefix="_", hdfs__inUseSuffix=".writing")
    async with hdfs_sink(params) as (sink, channel):
        await put_all(channel, numbered(2, host="web1"))
        await drain(sink, channel)
        [name] = fs.listdir("/flume")
        assert name.startswith("_events-web1.") and name.endswith(".log.writing")
    [name] = fs.listdir("/flume")
    assert name.startswith("events-web1.") and name.endswith(".log")


async def test_empty_in_use_suffix_writes_final_names_directly(fs):
    async with hdfs_sink(base_params(fs, hdfs__emptyInUseSuffix="true")) as (sink, channel):
        await put_all(channel, numbered(2))
        await drain(sink, channel)
        [name] = fs.listdir("/flume")
        assert not name.endswith(".tmp")


async def test_path_escapes_make_one_bucket_per_value(fs):
    path = f"webhdfs://{fs.namenode_address}/logs/%{{dc}}/%Y-%m-%d"
    params = base_params(fs, hdfs__path=path, hdfs__timeZone="UTC")
    day1, day2 = "1700000000000", "1700086400000"  # 2023-11-14 and 2023-11-15 UTC
    events = [*numbered(2, dc="eu", timestamp=day1), *numbered(3, start=2, dc="us", timestamp=day1),
              *numbered(1, start=5, dc="eu", timestamp=day2)]
    async with hdfs_sink(params) as (sink, channel):
        await put_all(channel, events)
        await drain(sink, channel)
    assert lines(fs, "/logs/eu/2023-11-14") == [b"event-0000", b"event-0001"]
    assert lines(fs, "/logs/us/2023-11-14") == [b"event-0002", b"event-0003", b"event-0004"]
    assert lines(fs, "/logs/eu/2023-11-15") == [b"event-0005"]


async def test_local_timestamp_and_rounding(fs):
    path = f"webhdfs://{fs.namenode_address}/r/%H%M"
    params = base_params(fs, hdfs__path=path, hdfs__useLocalTimeStamp="true", hdfs__round="true",
                         hdfs__roundUnit="hour", hdfs__roundValue="1", hdfs__timeZone="UTC")
    async with hdfs_sink(params) as (sink, channel):
        await put_all(channel, numbered(1))
        await drain(sink, channel)
    [bucket] = fs.listdir("/r")
    assert bucket.endswith("00")


async def test_missing_timestamp_is_a_clear_error_and_loses_nothing(fs):
    params = base_params(fs, hdfs__path=f"webhdfs://{fs.namenode_address}/t/%Y")
    async with hdfs_sink(params) as (sink, channel):
        await put_all(channel, numbered(3))
        with pytest.raises(EventDeliveryError, match="timestamp"):
            await sink.process()
        assert channel.size == 3
        assert sink.counters.event_write_fail == 1
    assert not fs.exists("/t")


async def test_compressed_stream_gzip(fs):
    events = numbered(30)
    params = base_params(fs, hdfs__fileType="CompressedStream", hdfs__codeC="gzip", hdfs__rollCount="20")
    async with hdfs_sink(params) as (sink, channel):
        await put_all(channel, events)
        await drain(sink, channel)
    names = sorted(closed_files(fs))
    assert all(name.endswith(".gz") for name in names)
    text = b"".join(gzip.decompress(fs.read(f"/flume/{name}")) for name in names)
    assert text.splitlines() == bodies(events)


async def test_compressed_stream_bzip2(fs):
    params = base_params(fs, hdfs__fileType="CompressedStream", hdfs__codeC="BZip2Codec")
    async with hdfs_sink(params) as (sink, channel):
        await put_all(channel, numbered(25))
        await drain(sink, channel)
    [name] = closed_files(fs)
    assert name.endswith(".bz2")
    assert bz2.decompress(fs.read(f"/flume/{name}")).splitlines() == bodies(numbered(25))


async def test_avro_event_serializer(fs):
    events = [Event(f"body {n}".encode(), {"n": str(n)}) for n in range(15)]
    params = base_params(fs, serializer="avro_event", serializer__compressionCodec="deflate",
                         hdfs__fileSuffix=".avro")
    async with hdfs_sink(params) as (sink, channel):
        await put_all(channel, events)
        await drain(sink, channel)
    [name] = closed_files(fs)
    records = list(fastavro.reader(io.BytesIO(fs.read(f"/flume/{name}"))))
    assert records == [{"headers": e.headers, "body": e.body} for e in events]


async def test_header_and_text_serializer(fs):
    async with hdfs_sink(base_params(fs, serializer="header_and_text")) as (sink, channel):
        await put_all(channel, [Event(b"hi", {"a": "1"})])
        await drain(sink, channel)
    [name] = closed_files(fs)
    assert fs.read(f"/flume/{name}") == b"{a=1} hi\n"


async def test_sequence_file_is_flumes_default(fs):
    params = base_params(fs)
    del params["hdfs.fileType"]
    async with hdfs_sink(params) as (sink, channel):
        await put_all(channel, [Event(b"payload", {"timestamp": "1700000000000"})])
        await drain(sink, channel)
    [name] = closed_files(fs)
    data = fs.read(f"/flume/{name}")
    assert data.startswith(b"SEQ\x06")
    assert b"org.apache.hadoop.io.LongWritable" in data and b"org.apache.hadoop.io.BytesWritable" in data
    assert data.endswith((1700000000000).to_bytes(8, "big") + (7).to_bytes(4, "big") + b"payload")


async def test_namenode_goes_away_mid_batch_then_the_batch_is_retried(fs):
    events = numbered(40)
    async with hdfs_sink(base_params(fs, hdfs__rollCount="15")) as (sink, channel):
        await put_all(channel, events)
        await sink.process()  # first batch: creates the file
        fs.crash_on("APPEND")
        with pytest.raises(EventDeliveryError):
            await sink.process()
        await fs.crashed.wait()
        assert channel.size == 30, "the failed batch went back to the channel"
        with pytest.raises(EventDeliveryError):
            await sink.process()  # the NameNode is still away
        assert channel.size == 30
        await fs.start()
        await drain(sink, channel)
    assert in_use_files(fs) == []
    assert lines(fs) == bodies(events)


async def test_lost_append_answer_is_cut_off_before_the_retry(fs):
    """The bytes reached HDFS but the answer did not: the retry must not write them twice."""
    events = numbered(30)
    async with hdfs_sink(base_params(fs, hdfs__rollCount="100")) as (sink, channel):
        await put_all(channel, events)
        await sink.process()
        fs.crash_on("APPEND", "after_write")
        with pytest.raises(EventDeliveryError):
            await sink.process()
        await fs.crashed.wait()
        [name] = in_use_files(fs)
        assert len(fs.read(f"/flume/{name}").splitlines()) == 20, "the unacknowledged bytes landed"
        await fs.start()
        await drain(sink, channel)
    assert lines(fs) == bodies(events)
    assert any(request[2] == "TRUNCATE" for request in fs.requests)


def gzip_bodies(data: bytes) -> list[bytes]:
    return gzip.decompress(data).splitlines()


def avro_bodies(data: bytes) -> list[bytes]:
    return [record["body"] for record in fastavro.reader(io.BytesIO(data))]


def sequence_file_bodies(data: bytes) -> list[bytes]:
    """Values of an uncompressed SequenceFile of BytesWritable, skipping sync markers."""
    key_class, value_class = b"org.apache.hadoop.io.LongWritable", b"org.apache.hadoop.io.BytesWritable"
    position = 4 + 1 + len(key_class) + 1 + len(value_class) + 2 + 4 + 16
    values = []
    while position < len(data):
        record_length = int.from_bytes(data[position:position + 4], "big", signed=True)
        if record_length == -1:
            position += 4 + 16
            continue
        value = data[position + 16:position + 8 + record_length]
        values.append(value[4:])
        position += 8 + record_length
    return values


@pytest.mark.parametrize(("params", "read"), [
    ({"hdfs.fileType": "CompressedStream", "hdfs.codeC": "gzip"}, gzip_bodies),
    ({"serializer": "avro_event"}, avro_bodies),
    ({"hdfs.fileType": "SequenceFile"}, sequence_file_bodies),
], ids=["gzip", "avro_event", "SequenceFile"])
async def test_a_retried_batch_leaves_binary_files_whole_and_without_doubles(fs, params, read):
    events = numbered(30)
    async with hdfs_sink({**base_params(fs, hdfs__rollCount="100"), **params}) as (sink, channel):
        await put_all(channel, events)
        await sink.process()
        fs.crash_on("APPEND", "after_write")
        with pytest.raises(EventDeliveryError):
            await sink.process()
        await fs.crashed.wait()
        await fs.start()
        await drain(sink, channel)
    [name] = closed_files(fs)
    assert read(fs.read(f"/flume/{name}")) == bodies(events)


async def test_lost_create_answer_is_deleted_before_the_retry(fs):
    events = numbered(25)
    async with hdfs_sink(base_params(fs, hdfs__rollCount="10")) as (sink, channel):
        await put_all(channel, events)
        await sink.process()  # file 1 full
        fs.crash_on("CREATE", "after_write")
        with pytest.raises(EventDeliveryError):
            await sink.process()
        await fs.crashed.wait()
        await fs.start()
        await drain(sink, channel)
    assert lines(fs) == bodies(events)
    assert len(closed_files(fs)) == 3


async def test_a_failure_in_the_second_bucket_undoes_the_first(fs):
    path = f"webhdfs://{fs.namenode_address}/b/%{{k}}"
    events = [Event(f"{n}".encode(), {"k": "one" if n % 2 else "two"}) for n in range(20)]
    async with hdfs_sink(base_params(fs, hdfs__path=path)) as (sink, channel):
        await put_all(channel, events)
        await sink.process()
        fs.crash_on("APPEND", "namenode", skip=1)  # bucket one appends, bucket two's append fails
        with pytest.raises(EventDeliveryError):
            await sink.process()
        await fs.crashed.wait()
        await fs.start()
        await drain(sink, channel)
    assert lines(fs, "/b/one") == [e.body for e in events if e.headers["k"] == "one"]
    assert lines(fs, "/b/two") == [e.body for e in events if e.headers["k"] == "two"]


async def test_file_names_taken_by_another_writer_are_skipped(fs):
    async with hdfs_sink(base_params(fs, hdfs__rollCount="2")) as (sink, channel):
        await put_all(channel, numbered(1))
        await drain(sink, channel)
        [bucket] = sink.buckets.values()
        taken = [f"/flume/FlumeData.{bucket.counter + n}.tmp" for n in (1, 2)]
        for path in taken:
            fs.write(path, b"another writer's\n", owner="flume")
        await put_all(channel, numbered(2, start=1))
        await drain(sink, channel)
        assert fs.exists(f"/flume/FlumeData.{bucket.counter}.tmp")
        assert bucket.counter == int(taken[-1].split(".")[1]) + 1
    for path in taken:
        assert fs.read(path) == b"another writer's\n"
    assert [line for line in lines(fs) if line.startswith(b"event")] == bodies(numbered(3))


async def test_fails_over_to_the_active_namenode():
    async with FakeWebHDFS(standby=True, namenodes=2) as fs:
        params = base_params(fs, hdfs__namenodes=",".join(fs.urls), hdfs__path="/ha")
        async with hdfs_sink(params) as (sink, channel):
            await put_all(channel, numbered(5))
            await drain(sink, channel)
            fs.set_active(0)
            await put_all(channel, numbered(5, start=5))
            await drain(sink, channel)
        assert lines(fs, "/ha") == bodies(numbered(10))


async def test_the_active_namenode_dies_and_the_standby_takes_over_without_a_failed_batch():
    async with FakeWebHDFS(standby=True, namenodes=2) as fs:
        params = base_params(fs, hdfs__namenodes=",".join(fs.urls), hdfs__path="/ha", hdfs__rollCount="7")
        async with hdfs_sink(params) as (sink, channel):
            await put_all(channel, numbered(10))
            await sink.process()
            await fs.stop(1)
            fs.set_active(0)
            await put_all(channel, numbered(10, start=10))
            await drain(sink, channel)
            assert sink.counters.event_write_fail == 0
        assert lines(fs, "/ha") == bodies(numbered(20))
        assert in_use_files(fs, "/ha") == []


async def test_in_use_files_of_a_crashed_run_are_closed_on_the_next_start(fs):
    fs.write("/flume/FlumeData.1000.tmp", b"left behind\n", owner="flume")
    fs.write("/flume/other.tmp", b"not ours\n", owner="flume")
    async with hdfs_sink(base_params(fs)):
        assert fs.read("/flume/FlumeData.1000") == b"left behind\n"
    assert fs.exists("/flume/other.tmp")
    assert not fs.exists("/flume/FlumeData.1000.tmp")


async def test_escaped_buckets_close_leftovers_when_first_used(fs):
    fs.write("/e/x/FlumeData.1000.tmp", b"left behind\n", owner="flume")
    params = base_params(fs, hdfs__path=f"webhdfs://{fs.namenode_address}/e/%{{k}}")
    async with hdfs_sink(params) as (sink, channel):
        assert fs.exists("/e/x/FlumeData.1000.tmp")
        await put_all(channel, numbered(1, k="x"))
        await drain(sink, channel)
        assert fs.read("/e/x/FlumeData.1000") == b"left behind\n"


async def test_start_does_not_fail_while_the_namenode_is_away(fs):
    fs.write("/flume/FlumeData.1000.tmp", b"left behind\n", owner="flume")
    await fs.stop()
    async with hdfs_sink(base_params(fs)) as (sink, channel):
        await put_all(channel, numbered(2))
        with pytest.raises(EventDeliveryError):
            await sink.process()
        await fs.start()
        await drain(sink, channel)
        assert fs.read("/flume/FlumeData.1000") == b"left behind\n"
    assert lines(fs) == [b"left behind", *bodies(numbered(2))]


async def test_failed_close_is_retried_and_the_batch_still_counts(fs):
    params = base_params(fs, hdfs__rollCount="5", hdfs__retryInterval="0.1", hdfs__closeTries="0")
    async with hdfs_sink(params) as (sink, channel):
        await put_all(channel, numbered(5))
        fs.crash_on("RENAME")
        await sink.process()  # the data is in; only the rename failed
        assert channel.size == 0
        assert sink.counters.drain_success == 5
        await fs.crashed.wait()
        assert in_use_files(fs)
        await fs.start()
        await eventually(lambda: closed_files(fs) and not in_use_files(fs))
        assert sink.counters.connections_failed >= 1


async def test_max_open_files_closes_the_least_recently_used(fs):
    path = f"webhdfs://{fs.namenode_address}/m/%{{k}}"
    async with hdfs_sink(base_params(fs, hdfs__path=path, hdfs__maxOpenFiles="1")) as (sink, channel):
        await put_all(channel, numbered(2, k="a"))
        await drain(sink, channel)
        await put_all(channel, numbered(2, start=2, k="b"))
        await drain(sink, channel)
        assert in_use_files(fs, "/m/a") == [] and closed_files(fs, "/m/a")
        assert len(in_use_files(fs, "/m/b")) == 1


async def test_delegation_token_auth():
    async with FakeWebHDFS(strict=True, tokens={"tok": "svc"}) as fs:
        params = base_params(fs, hdfs__delegationToken="tok")
        async with hdfs_sink(params) as (sink, channel):
            await put_all(channel, numbered(1))
            await drain(sink, channel)
        [name] = closed_files(fs)
        assert fs.status(f"/flume/{name}")["owner"] == "svc"


@pytest.mark.parametrize(("params", "key", "message"), [
    ({"hdfs.fileType": "CompressedStream"}, "hdfs.codeC", "is required"),
    ({"hdfs.fileType": "CompressedStream", "hdfs.codeC": "lzo"}, "hdfs.codeC", "not available"),
    ({"hdfs.fileType": "SequenceFile", "hdfs.codeC": "gzip"}, "hdfs.codeC", "compressed SequenceFile"),
    ({"hdfs.path": "s3://bucket/x"}, "hdfs.path", "unsupported scheme"),
    ({"hdfs.path": "/no/namenode"}, "hdfs.path", "hdfs.namenodes"),
    ({"hdfs.timeZone": "Nowhere/Land"}, "hdfs.timeZone", "unknown time zone"),
    ({"hdfs.kerberosPrincipal": "flume/_HOST@REALM"}, "hdfs.kerberosPrincipal", "delegationToken"),
    ({"hdfs.fileType": "DataStream", "serializer": "avro_event", "serializer.compressionCodec": "lz4"},
     "serializer.compressionCodec", "expected one of"),
])
def test_config_problems(params, key, message):
    settings = sink_settings({"hdfs.path": "hdfs://nn:8020/flume", **params})
    problems = dict(HdfsSink.config_problems(settings))
    assert key in problems
    assert message in problems[key]


def test_namenode_addresses_from_the_path():
    def namenodes(path: str, **extra: str) -> list[str]:
        settings = sink_settings({"hdfs.path": path, "hdfs.fileType": "DataStream", **extra})
        channel = MemoryChannel("c", resolve(MemoryChannel.config_class, {})[0])
        return HdfsSink("k", settings, channel).namenodes

    assert namenodes("hdfs://nn1:8020/x") == ["http://nn1:9870"]
    assert namenodes("webhdfs://nn1:50070/x") == ["http://nn1:50070"]
    assert namenodes("swebhdfs://nn1:9871/x") == ["https://nn1:9871"]
    assert namenodes("/x", **{"hdfs.namenodes": "http://a:1, http://b:2"}) == ["http://a:1", "http://b:2"]


async def test_an_agent_runs_the_sink_from_a_flume_conf(fs):
    conf = f"""
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = exec
a1.sources.r1.command = seq 1 50
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.sinks.k1.type = hdfs
a1.sinks.k1.channel = c1
a1.sinks.k1.hdfs.path = webhdfs://{fs.namenode_address}/agent/%Y
a1.sinks.k1.hdfs.useLocalTimeStamp = true
a1.sinks.k1.hdfs.fileType = DataStream
a1.sinks.k1.hdfs.rollCount = 20
a1.sinks.k1.hdfs.user = flume
"""
    config = parse_properties(conf)
    assert [problem for problem in validate(config) if problem.severity == "error"] == []
    agent = Agent(config)
    await agent.start()
    try:
        await eventually(lambda: agent.sinks["k1"].counters.drain_success == 50)
    finally:
        await agent.stop()
    [year] = fs.listdir("/agent")
    assert lines(fs, f"/agent/{year}") == [str(n).encode() for n in range(1, 51)]
    assert in_use_files(fs, f"/agent/{year}") == []


async def test_a_leftover_whose_final_name_is_taken_does_not_block_the_sink(fs):
    fs.write("/flume/FlumeData.1000.tmp", b"left behind\n", owner="flume")
    fs.write("/flume/FlumeData.1000", b"already closed\n", owner="flume")
    async with hdfs_sink(base_params(fs)) as (sink, channel):
        await put_all(channel, numbered(3))
        await drain(sink, channel)
        assert sink.counters.drain_success == 3
    assert fs.read("/flume/FlumeData.1000.tmp") == b"left behind\n"
    assert fs.read("/flume/FlumeData.1000") == b"already closed\n"
    [written] = [name for name in closed_files(fs) if name != "FlumeData.1000"]
    assert fs.read(f"/flume/{written}").splitlines() == bodies(numbered(3))


async def test_call_timeout_rolls_back_a_batch_the_namenode_is_too_slow_for(fs):
    events = numbered(20)
    async with hdfs_sink(base_params(fs, hdfs__callTimeout="300")) as (sink, channel):
        await put_all(channel, events)
        await sink.process()
        fs.hang_on("APPEND")
        with pytest.raises(EventDeliveryError, match="Timeout"):
            await asyncio.wait_for(sink.process(), 20)  # far below the 30 s default callTimeout
        assert fs.hung.is_set(), "the sink gave up while the NameNode still held the request"
        assert channel.size == 10
        fs.release()
        await drain(sink, channel)
    assert lines(fs) == bodies(events)


async def test_close_tries_gives_up_and_the_next_start_closes_the_file(fs):
    params = base_params(fs, hdfs__rollCount="5", hdfs__retryInterval="0.05", hdfs__closeTries="2")
    async with hdfs_sink(params) as (sink, channel):
        await put_all(channel, numbered(5))
        fs.crash_on("RENAME")
        await sink.process()
        await fs.crashed.wait()
        await eventually(lambda: not sink.closing)
        assert sink.counters.connections_failed == 2
        assert len(in_use_files(fs)) == 1
        await fs.start()
    assert len(in_use_files(fs)) == 1, "given up: it keeps its in-use name"
    async with hdfs_sink(base_params(fs)):
        assert in_use_files(fs) == []
    assert lines(fs) == bodies(numbered(5))


async def test_close_tries_never_gives_up_on_a_file_a_failed_batch_left_bytes_in(fs):
    """Renaming such a file as it is would close it with the rolled-back events inside, which the
    retry then writes again: it is retried until its extra bytes can be cut off."""
    events = numbered(20)
    params = base_params(fs, hdfs__idleTimeout="0.2", hdfs__retryInterval="0.05", hdfs__closeTries="1")
    async with hdfs_sink(params) as (sink, channel):
        await put_all(channel, events)
        await sink.process()
        fs.crash_on("APPEND", "after_write")
        with pytest.raises(EventDeliveryError):
            await sink.process()
        await fs.crashed.wait()
        await eventually(lambda: sink.counters.connections_failed >= 3)
        assert sink.closing, "still waiting to be cut back and closed"
        await fs.start()
        await eventually(lambda: not sink.closing)
        await drain(sink, channel)
    assert in_use_files(fs) == []
    assert lines(fs) == bodies(events)


async def test_proxy_user_writes_as_that_user():
    async with FakeWebHDFS(strict=True, proxy_users={"flume"}) as fs:
        async with hdfs_sink(base_params(fs, hdfs__proxyUser="etl")) as (sink, channel):
            await put_all(channel, numbered(2))
            await drain(sink, channel)
        [name] = closed_files(fs)
        assert fs.status(f"/flume/{name}")["owner"] == "etl"
        async with hdfs_sink(base_params(fs, hdfs__user="nobody", hdfs__proxyUser="etl")) as (sink, channel):
            await put_all(channel, numbered(1))
            with pytest.raises(EventDeliveryError, match="not allowed to impersonate"):
                await sink.process()
            assert channel.size == 1
