"""The seq source: Flume's counter bodies, totalEvents, batches, and no gaps after a full channel."""

from __future__ import annotations

from source_harness import config_for, memory_channel, take_all

from kubeflume_agent.config.validation import config_errors
from kubeflume_agent.core.status import Status
from kubeflume_agent.runtime.channel_processor import ChannelProcessor
from kubeflume_agent.selectors.builtin import ReplicatingSelector


def seq_source(channel, **params: str):
    _, selector_settings = config_for("selector", "replicating", {})
    processor = ChannelProcessor(ReplicatingSelector(selector_settings, {"c1": channel}))
    source_class, settings = config_for("source", "seq", params)
    return source_class("r1", settings, processor)


async def test_bodies_count_from_zero_in_batches_until_total_events():
    channel = memory_channel(capacity=100, transaction_capacity=10)
    source = seq_source(channel, batchSize="4", totalEvents="10")
    statuses = [await source.process() for _ in range(4)]
    assert statuses == [Status.READY, Status.READY, Status.READY, Status.BACKOFF]
    assert [e.body for e in await take_all(channel)] == [str(i).encode() for i in range(10)]
    assert (source.counters.events_accepted, source.counters.append_batch_accepted) == (10, 3)


async def test_flume_defaults_are_one_event_per_batch_without_end():
    channel = memory_channel()
    source = seq_source(channel)
    assert (source.batch_size, source.total_events) == (1, 2**63 - 1)
    await source.process()
    assert channel.size == 1


async def test_a_refused_batch_is_generated_again_with_the_same_numbers():
    channel = memory_channel(capacity=5, transaction_capacity=5, keep_alive="0")
    source = seq_source(channel, batchSize="5", totalEvents="12")
    assert await source.process() is Status.READY
    assert await source.process() is Status.BACKOFF  # the channel is full
    assert source.counters.channel_write_fail == 1
    delivered = [e.body for e in await take_all(channel)]
    while await source.process() is Status.READY:
        delivered += [e.body for e in await take_all(channel)]
    assert delivered == [str(i).encode() for i in range(12)]


def test_batch_size_over_the_channels_transaction_capacity_is_a_config_error():
    from kubeflume_agent.config.properties import parse_properties

    config = parse_properties(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
        "a1.sources.r1.type = seq\na1.sources.r1.batchSize = 500\na1.sources.r1.channels = c1\n"
        "a1.channels.c1.type = memory\na1.channels.c1.transactionCapacity = 100\n"
        "a1.sinks.k1.type = null\na1.sinks.k1.channel = c1\n", "a1")
    (problem,) = config_errors(config)
    assert (problem.component, problem.key) == ("sources.r1", "batchSize")
