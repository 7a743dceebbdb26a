"""The embedded agent: Flume's embedded keys, puts in transactions, draining stop, the blocking API.

Delivery is checked end to end: the embedded agent's avro sink sends to a real kubeflume avro
source on 127.0.0.1, or its file_roll sink writes to a temporary directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeflume_agent.core.errors import ChannelError, ChannelFull
from kubeflume_agent.core.event import Event
from kubeflume_agent.embedded import SOURCE_TYPE, BlockingEmbeddedAgent, EmbeddedAgent
from kubeflume_agent.runtime.agent import InvalidConfig
from kubeflume_agent.sinks.base import Sink
from tests.integration.source_harness import collect, running_source, take_all
from tests.network import free_port

pytestmark = pytest.mark.timeout(60)


def avro_keys(port: int, **extra: str) -> dict[str, str]:
    return {"channel.type": "memory", "sinks": "k1", "k1.type": "avro", "k1.hostname": "127.0.0.1",
            "k1.port": str(port), **extra}


def full_channel_keys(capacity: int) -> dict[str, str]:
    """A channel nothing drains, failing a put at once (keep-alive 0) when it has no room."""
    return avro_keys(free_port(), **{"channel.capacity": str(capacity), "channel.transactionCapacity": str(capacity),
                                     "channel.keep-alive": "0", "k1.batch-size": str(capacity)})


def test_flume_embedded_keys_become_one_agent_config() -> None:
    agent = EmbeddedAgent("app")
    agent.configure({
        "channel.type": "memory", "channel.capacity": "200",
        "sinks": "k1 k2", "k1.type": "avro", "k1.hostname": "a", "k1.port": "4141",
        "k2.type": "avro", "k2.hostname": "b", "k2.port": "4141",
        "processor.type": "load_balance", "processor.selector": "round_robin",
        "source.interceptors": "i1", "source.interceptors.i1.type": "static",
    })
    config = agent.config
    assert list(config.sources) == ["source-app"]
    source = config.sources["source-app"]
    assert (source.type, source.channels) == (SOURCE_TYPE, ["channel-app"])
    assert [(i.name, i.type) for i in source.interceptors] == [("i1", "static")]
    assert config.channels["channel-app"].params == {"capacity": "200"}
    assert {name: (sink.channel, sink.params["hostname"]) for name, sink in config.sinks.items()} == {
        "k1": ("channel-app", "a"), "k2": ("channel-app", "b")}
    group = config.sinkgroups["sink-group-app"]
    assert group.sinks == ["k1", "k2"]
    assert group.processor == {"type": "load_balance", "selector": "round_robin"}


def test_every_problem_is_raised_at_once_under_the_keys_as_written() -> None:
    agent = EmbeddedAgent()
    with pytest.raises(InvalidConfig) as raised:
        agent.configure({
            "channel.type": "memory", "channel.capacity": "lots",
            "sinks": "k1 k2 processor",           # several sinks, no processor.type; a reserved name
            "k1.type": "avro",                    # no hostname/port
            "k2.type": "no_such_sink",
            "source.type": "netcat",
            "colour": "blue",
        })
    message = str(raised.value)
    expected = ["sinks", "source.type", "processor.type", "colour", "channel.capacity", "k1.hostname", "k1.port",
                "k2.type"]
    assert [str(p).split(": ")[1] for p in raised.value.problems] == expected, message
    assert agent.config is None


async def test_events_reach_a_real_avro_source_with_their_headers() -> None:
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}) as (source, received):
        agent = EmbeddedAgent("app")
        agent.configure(avro_keys(source.bound_ports[0], **{
            "source.interceptors": "i1", "source.interceptors.i1.type": "static",
            "source.interceptors.i1.key": "origin", "source.interceptors.i1.value": "app",
        }))
        async with agent:
            await agent.put(b"one", headers={"k": "v"})
            await agent.put_all([Event(b"two", {"n": "2"}), "three"])
            events = await collect(received, 3)
            counters = agent.counters()
            assert counters["SOURCE.source-app"].events_accepted == 3
            assert "CHANNEL.channel-app" in counters and "SINK.k1" in counters
    assert [(e.body, e.headers) for e in events] == [
        (b"one", {"k": "v", "origin": "app"}),
        (b"two", {"n": "2", "origin": "app"}),
        (b"three", {"origin": "app"}),
    ]


async def test_stop_drains_the_channel() -> None:
    async with running_source("avro", {"bind": "127.0.0.1", "port": "0"}) as (source, received):
        agent = EmbeddedAgent(drain_timeout=30)
        agent.configure(avro_keys(source.bound_ports[0]))
        await agent.start()
        await agent.put_all([f"event {i}" for i in range(50)])
        await agent.stop()
        assert len(await take_all(received)) == 50  # delivered before stop returned: no waiting here


async def test_a_refused_put_all_stores_nothing() -> None:
    agent = EmbeddedAgent(drain_timeout=0.1)
    agent.configure(full_channel_keys(capacity=5))
    async with agent:
        channel = agent.counters()["CHANNEL.channel-embedded"]
        await agent.put_all([b"a", b"b", b"c", b"d"])
        with pytest.raises(ChannelFull):
            await agent.put_all([b"e", b"f"])  # one would fit; the batch is refused as a whole
        with pytest.raises(ChannelError, match="transactionCapacity"):
            await agent.put_all([b"x"] * 6)
        await agent.put(b"e")
        with pytest.raises(ChannelFull):
            await agent.put(b"f")
        source = agent.counters()["SOURCE.source-embedded"]
    assert channel.put_success == 5
    assert channel.size == 5  # exact after stop: the sink's failed takes were rolled back
    assert (source.events_accepted, source.channel_write_fail) == (5, 3)


async def test_puts_need_a_started_agent_and_one_source_of_headers() -> None:
    agent = EmbeddedAgent()
    agent.configure(full_channel_keys(capacity=10))
    with pytest.raises(RuntimeError, match="not started"):
        await agent.put(b"early")
    async with agent:
        with pytest.raises(TypeError):
            await agent.put(Event(b"x"), headers={"k": "v"})
        with pytest.raises(TypeError):
            await agent.put_all([42])
        with pytest.raises(RuntimeError, match="stop it"):
            agent.configure(full_channel_keys(capacity=10))
    with pytest.raises(RuntimeError, match="not started"):
        await agent.put(b"late")


class UnbuildableSink(Sink):
    """A sink whose construction fails, as one does when its certificate file is missing."""

    def __init__(self, name, settings, channel):
        raise OSError("no such file")


async def test_a_failed_start_leaves_nothing_running(tmp_path: Path) -> None:
    """The file channel's directory lock is released, so a corrected config starts on the same directories."""
    channel = {"channel.type": "file", "channel.checkpointDir": str(tmp_path / "checkpoint"),
               "channel.dataDirs": str(tmp_path / "data")}
    agent = EmbeddedAgent()
    agent.configure({**channel, "sinks": "k1", "k1.type": f"{__name__}:UnbuildableSink"})
    with pytest.raises(OSError, match="no such file"):
        await agent.start()
    with pytest.raises(RuntimeError, match="not started"):
        await agent.put(b"lost")
    agent.configure({**channel, "sinks": "k1", "k1.type": "null"})
    async with agent:
        await agent.put(b"kept")


def test_blocking_api_from_plain_code(tmp_path: Path) -> None:
    agent = BlockingEmbeddedAgent("app", drain_timeout=30)
    agent.configure({"channel.type": "memory", "sinks": "k1", "k1.type": "file_roll",
                     "k1.sink.directory": str(tmp_path), "k1.sink.rollInterval": "0"})
    with agent:
        agent.put("one", headers={"k": "v"})
        agent.put_all([b"two", Event(b"three")])
    lines = b"".join(path.read_bytes() for path in tmp_path.iterdir()).splitlines()
    assert lines == [b"one", b"two", b"three"]  # stop drained the channel into the file
    assert agent.counters() == {}


def test_blocking_api_raises_channel_full_in_the_caller() -> None:
    agent = BlockingEmbeddedAgent(drain_timeout=0.1)
    agent.configure(full_channel_keys(capacity=2))
    with pytest.raises(RuntimeError, match="not started"):
        agent.put(b"early")
    agent.start()
    try:
        agent.put_all([b"a", b"b"])
        with pytest.raises(ChannelFull):
            agent.put(b"c")
        assert agent.counters()["CHANNEL.channel-embedded"].put_success == 2
    finally:
        agent.stop()
    agent.stop()  # a second stop does nothing
