"""The agent runtime: building, start/stop with draining, sink retries, and hot reload.

Components here are custom classes referenced by Python path, as a user's own components would be,
so the runtime is tested on its own.
"""

import asyncio
from dataclasses import dataclass

import pytest

from kubeflume_agent.config.keys import Config, integer, key
from kubeflume_agent.config.properties import parse_properties
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.status import Status
from kubeflume_agent.runtime.agent import Agent, InvalidConfig
from kubeflume_agent.runtime.runners import SinkRunner
from kubeflume_agent.sink_processors.builtin import DefaultSinkProcessor, ProcessorKeys
from kubeflume_agent.sinks.base import Sink, SinkKeys
from kubeflume_agent.sources.base import PollableSource
from tests.integration.source_harness import config_for, memory_channel

DELIVERED: dict[str, list[bytes]] = {}


@dataclass(frozen=True)
class CountingConfig(Config):
    total: int = key("total", integer, 100)
    batch_size: int = key("batchSize", integer, 10)


class CountingSource(PollableSource[CountingConfig]):
    """Emits `total` numbered events in batches, then backs off."""

    def __init__(self, name, config, processor):
        super().__init__(name, config, processor)
        self.next = 0

    async def process(self) -> Status:
        end = min(self.next + self.config.batch_size, self.config.total)
        if self.next >= end:
            return Status.BACKOFF
        await self.deliver([Event(str(i).encode()) for i in range(self.next, end)])
        self.next = end
        return Status.READY


@dataclass(frozen=True)
class CollectingConfig(SinkKeys):
    bucket: str = key("bucket", str, "default")
    failures: int = key("failures", integer, 0)
    batch_size: int = key("batchSize", integer, 100)
    delay: str = key("delay", str, "0")


class CollectingSink(Sink[CollectingConfig]):
    """Records what it delivers under its `bucket`; fails its first `failures` writes."""

    def __init__(self, name, config, channel):
        super().__init__(name, config, channel)
        self.failures_left = config.failures

    async def write(self, events):
        await asyncio.sleep(float(self.config.delay))
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("downstream unavailable")
        DELIVERED.setdefault(self.config.bucket, []).extend(e.body for e in events)


SOURCE = f"{__name__}:CountingSource"
SINK = f"{__name__}:CollectingSink"


def conf(source_total=100, sink_params="", channel_params="", extra=""):
    return parse_properties(f"""
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = {SOURCE}
a1.sources.r1.total = {source_total}
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 1000
{channel_params}
a1.sinks.k1.type = {SINK}
a1.sinks.k1.channel = c1
{sink_params}
{extra}
""")


async def wait_until(condition, timeout=20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def clear_buckets():
    DELIVERED.clear()


async def test_events_flow_from_source_to_sink_in_order():
    agent = Agent(conf(250, "a1.sinks.k1.bucket = flow"))
    await agent.start()
    try:
        await wait_until(lambda: len(DELIVERED.get("flow", [])) == 250)
        assert DELIVERED["flow"] == [str(i).encode() for i in range(250)]
        counters = {name: c.snapshot() for name, c in agent.counters().items()}
        assert counters["SOURCE.r1"]["EventAcceptedCount"] == 250
        assert counters["CHANNEL.c1"]["EventPutSuccessCount"] == 250
        await wait_until(lambda: agent.counters()["SINK.k1"].drain_success == 250)
    finally:
        await agent.stop()


async def test_stop_lets_sinks_drain_the_memory_channel():
    agent = Agent(conf(500, "a1.sinks.k1.bucket = drain\na1.sinks.k1.batchSize = 10\na1.sinks.k1.delay = 0.002"))
    await agent.start()
    await wait_until(lambda: agent.sources["r1"].next == 500)
    await agent.stop()
    assert len(DELIVERED["drain"]) == 500


async def test_a_failing_sink_rolls_back_and_nothing_is_lost():
    agent = Agent(conf(30, "a1.sinks.k1.bucket = retry\na1.sinks.k1.failures = 2"))
    await agent.start()
    try:
        await wait_until(lambda: len(DELIVERED.get("retry", [])) == 30)
        assert sorted(DELIVERED["retry"], key=int) == [str(i).encode() for i in range(30)]
        assert agent.counters()["SINK.k1"].event_write_fail == 2
    finally:
        await agent.stop()


async def test_an_invalid_config_does_not_start():
    with pytest.raises(InvalidConfig) as raised:
        await Agent(conf(channel_params="a1.channels.c1.capacity = lots")).start()
    assert "channels.c1.capacity" in str(raised.value)


async def test_reload_restarts_only_what_changed():
    agent = Agent(conf(20, "a1.sinks.k1.bucket = before"))
    await agent.start()
    try:
        await wait_until(lambda: len(DELIVERED.get("before", [])) == 20)
        source, channel, sink = agent.sources["r1"], agent.channels["c1"], agent.sinks["k1"]
        await agent.reload(conf(20, "a1.sinks.k1.bucket = after"))
        assert agent.sources["r1"] is source and agent.channels["c1"] is channel
        assert agent.sinks["k1"] is not sink
        await agent.reload(conf(40, "a1.sinks.k1.bucket = after"))
        assert agent.sources["r1"] is not source and agent.channels["c1"] is channel
        await wait_until(lambda: len(DELIVERED.get("after", [])) == 40)
        await agent.reload(conf(40, "a1.sinks.k1.bucket = after", "a1.channels.c1.capacity = 2000"))
        assert agent.channels["c1"] is not channel and agent.channels["c1"].capacity == 2000
        assert agent.sources["r1"].processor.selector.channels["c1"] is agent.channels["c1"]
        assert agent.sinks["k1"].channel is agent.channels["c1"]
    finally:
        await agent.stop()


async def test_reload_with_errors_keeps_the_running_config():
    agent = Agent(conf(10, "a1.sinks.k1.bucket = kept"))
    await agent.start()
    try:
        source = agent.sources["r1"]
        with pytest.raises(InvalidConfig):
            await agent.reload(conf(10, "a1.sinks.k1.bucket = kept\na1.sinks.k1.failures = x"))
        assert agent.sources["r1"] is source and agent.ready
        await wait_until(lambda: len(DELIVERED.get("kept", [])) == 10)
    finally:
        await agent.stop()


async def test_a_sink_group_runs_its_sinks_through_the_processor():
    config = conf(60, "a1.sinks.k1.bucket = group\na1.sinks.k1.failures = 1000", extra=f"""
a1.sinks = k1 k2
a1.sinks.k2.type = {SINK}
a1.sinks.k2.channel = c1
a1.sinks.k2.bucket = group
a1.sinkgroups = g1
a1.sinkgroups.g1.sinks = k1 k2
a1.sinkgroups.g1.processor.type = failover
a1.sinkgroups.g1.processor.priority.k1 = 10
a1.sinkgroups.g1.processor.priority.k2 = 5
""")
    agent = Agent(config)
    await agent.start()
    try:
        await wait_until(lambda: len(DELIVERED.get("group", [])) == 60)
        assert agent.counters()["SINK.k1"].event_write_fail >= 1
        assert agent.counters()["SINK.k2"].drain_success == 60
    finally:
        await agent.stop()


async def test_a_sink_runner_takes_every_whole_batch_waiting_before_others_get_a_turn():
    """A fast sender puts a read's worth of events each turn; a sink taking one batch a turn would
    let the channel (and the agent's memory) fill up, so it takes all the whole batches first."""
    channel = memory_channel()
    await channel.start()
    for start in range(0, 3500, 1000):
        async with channel.transaction() as tx:
            tx.put_all([Event(str(i).encode()) for i in range(start, min(start + 1000, 3500))])
    sink_class, settings = config_for("sink", "null", {"batchSize": "1000"})
    runner = SinkRunner(DefaultSinkProcessor(ProcessorKeys(), [sink_class("k1", settings, channel)]), [channel])
    runner.start()
    await asyncio.sleep(0)  # the runner's first turn
    assert channel.size == 500  # three batches taken; the last, partial one waits for the next turn
    await wait_until(lambda: channel.size == 0)
    await runner.stop()


async def test_a_sink_runner_that_emptied_its_channel_waits_for_events_without_another_step():
    """A sender pacing single events wakes the sink for each: no step that can only find nothing."""
    channel = memory_channel()
    await channel.start()
    async with channel.transaction() as tx:
        tx.put_all([Event(b"%d" % i) for i in range(500)])
    sink_class, settings = config_for("sink", "null", {"batchSize": "1000"})
    sink = sink_class("k1", settings, channel)
    runner = SinkRunner(DefaultSinkProcessor(ProcessorKeys(), [sink]), [channel])
    runner.start()
    for _ in range(5):
        await asyncio.sleep(0)
    assert channel.size == 0 and sink.counters.drain_success == 500
    assert sink.counters.batch_empty == 0
    async with channel.transaction() as tx:
        tx.put_all([Event(b"late")])
    await wait_until(lambda: sink.counters.drain_success == 501)
    await runner.stop()


# --- lingering (SinkRunner._linger): a stream of small commits gathers before the sink takes it ---
# Real memory channel, real file_roll sink. The linger is a minute here, so a linger where there
# must be none shows as a test that never ends (wait_until fails), not as a timing to measure.

LONG_LINGER = 60.0


async def turns(count=20):
    """Let the event loop run `count` times (the runner's tasks get their turns; no timer fires)."""
    for _ in range(count):
        await asyncio.sleep(0)


async def put(channel, *bodies: bytes) -> None:
    async with channel.transaction() as tx:
        tx.put_all([Event(body) for body in bodies])


def lines(directory) -> list[bytes]:
    return [line for path in sorted(directory.iterdir()) for line in path.read_bytes().splitlines()]


async def started_runner(tmp_path, batch_size: int = 10):
    channel = memory_channel()
    await channel.start()
    sink_class, settings = config_for("sink", "file_roll", {
        "sink.directory": str(tmp_path), "sink.rollInterval": "0", "sink.batchSize": str(batch_size)})
    sink = sink_class("k1", settings, channel)
    processor = DefaultSinkProcessor(ProcessorKeys(), [sink])
    await processor.start()
    runner = SinkRunner(processor, [channel], linger=LONG_LINGER)
    runner.start()
    await turns()
    return channel, sink, runner


async def lingering(tmp_path):
    """A runner that took a first event and was woken again by a second: it lingers."""
    channel, sink, runner = await started_runner(tmp_path)
    await put(channel, b"first")
    await wait_until(lambda: lines(tmp_path) == [b"first"])
    await put(channel, b"second")
    await turns()
    assert channel.size == 1 and lines(tmp_path) == [b"first"]
    return channel, sink, runner


async def test_a_lone_event_is_taken_at_once(tmp_path):
    channel, _, runner = await started_runner(tmp_path)
    await put(channel, b"alone")
    await wait_until(lambda: lines(tmp_path) == [b"alone"])
    await runner.stop()
    await runner.processor.stop()


async def test_a_stream_of_small_commits_gathers_until_a_whole_batch_is_there(tmp_path):
    channel, sink, runner = await lingering(tmp_path)
    await put(channel, *[b"%d" % i for i in range(8)])
    await turns()
    assert channel.size == 9, "less than a whole batch: still gathering"
    await put(channel, b"tenth")
    await wait_until(lambda: channel.size == 0 and sink.settled)
    assert lines(tmp_path) == [b"first", b"second", *[b"%d" % i for i in range(8)], b"tenth"]
    assert sink.counters.batch_complete == 1, "the gathered events went in one batch"
    await runner.stop()
    await runner.processor.stop()


async def test_a_drain_takes_what_a_linger_holds(tmp_path):
    _, sink, runner = await lingering(tmp_path)
    assert await runner.drain(timeout=20)
    assert lines(tmp_path) == [b"first", b"second"]
    await runner.stop()
    await runner.processor.stop()
    assert sink.counters.drain_success == 2


async def test_a_stop_ends_a_linger_and_leaves_its_events_in_the_channel(tmp_path):
    channel, _, runner = await lingering(tmp_path)
    await runner.stop()
    await runner.processor.stop()
    assert channel.size == 1 and lines(tmp_path) == [b"first"]
    later = SinkRunner(runner.processor, [channel], linger=LONG_LINGER)
    await runner.processor.start()
    later.start()
    await wait_until(lambda: lines(tmp_path) == [b"first", b"second"])
    await later.stop()
    await runner.processor.stop()
