"""ChannelProcessor (reference c.2): interceptors, then the selector, then one transaction per channel.

Required channels are committed one after another and the first failure reaches the caller; channels
committed before it keep the batch. Optional channels come last and their failures are only logged.
"""

import asyncio

import pytest

from kubeflume_agent.channels.memory import MemoryChannel, MemoryChannelConfig
from kubeflume_agent.config.keys import resolve
from kubeflume_agent.core.errors import ChannelError, ChannelFull
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.registry import lookup
from kubeflume_agent.runtime.channel_processor import ChannelProcessor


class RecordingChannel(MemoryChannel):
    """A memory channel that writes down when each commit begins and ends (into a shared list)."""

    def __init__(self, name, settings, journal: list[tuple[str, str]]) -> None:
        super().__init__(name, settings)
        self.journal = journal

    async def _commit(self, puts, takes) -> None:
        self.journal.append(("begin", self.name))
        await asyncio.sleep(0)  # a chance for another commit to interleave, were they concurrent
        try:
            await super()._commit(puts, takes)
        finally:
            self.journal.append(("end", self.name))


def memory_channel(name: str, journal: list | None = None, **params) -> MemoryChannel:
    settings, problems = resolve(MemoryChannelConfig, {"keep-alive": "0", **{k: str(v) for k, v in params.items()}})
    assert not problems
    return MemoryChannel(name, settings) if journal is None else RecordingChannel(name, settings, journal)


def component(kind: str, type_name: str, params: dict[str, str]):
    component_class = lookup(kind, type_name)
    settings, problems = resolve(component_class.config_class, params)
    assert not [p for p in problems if p.severity == "error"], problems
    return component_class, settings


def processor(channels: list[MemoryChannel], selector_type: str = "replicating",
              selector_params: dict[str, str] | None = None, interceptors=()) -> ChannelProcessor:
    selector_class, settings = component("selector", selector_type, selector_params or {})
    return ChannelProcessor(selector_class(settings, {c.name: c for c in channels}), interceptors)


def interceptor(type_name: str, params: dict[str, str]):
    interceptor_class, settings = component("interceptor", type_name, params)
    return interceptor_class(settings)


async def fill(channel: MemoryChannel) -> None:
    """Put events until the channel is at capacity."""
    tx = channel.transaction()
    tx.put_all([Event(b"filler")] * channel.capacity)
    await tx.commit()


def contents(channel: MemoryChannel) -> list[bytes]:
    """The bodies in the channel now, taken and rolled back (so the channel is left as it was)."""
    tx = channel.transaction()
    events = tx.take(channel.transaction_capacity)
    tx.rollback()
    return [e.body for e in events if e.body != b"filler"]


def batch(*bodies: str) -> list[Event]:
    return [Event(body.encode()) for body in bodies]


async def test_replicating_stores_the_batch_in_every_channel():
    c1, c2 = memory_channel("c1"), memory_channel("c2")
    await processor([c1, c2]).process_batch(batch("a", "b"))
    assert contents(c1) == [b"a", b"b"]
    assert contents(c2) == [b"a", b"b"]
    assert (c1.counters.put_success, c2.counters.put_success) == (2, 2)


async def test_process_stores_a_single_event():
    c1 = memory_channel("c1")
    await processor([c1]).process(Event(b"one"))
    assert contents(c1) == [b"one"]


async def test_required_channels_are_committed_one_after_another_then_optional_ones():
    journal: list[tuple[str, str]] = []
    channels = [memory_channel(name, journal) for name in ("c1", "c2", "c3", "c4")]
    await processor(channels, selector_params={"optional": "c1 c3"}).process_batch(batch("a"))
    assert journal == [
        ("begin", "c2"), ("end", "c2"), ("begin", "c4"), ("end", "c4"),  # required, in order
        ("begin", "c1"), ("end", "c1"), ("begin", "c3"), ("end", "c3"),  # then optional
    ]


async def test_first_required_failure_raises_and_later_channels_are_not_written():
    c1, c2, c3, c4 = (memory_channel(name, capacity=4) for name in ("c1", "c2", "c3", "c4"))
    await fill(c2)
    with pytest.raises(ChannelFull):
        await processor([c1, c2, c3, c4], selector_params={"optional": "c4"}).process_batch(batch("a", "b"))
    assert contents(c1) == [b"a", b"b"]  # committed before the failure: it keeps the batch
    assert contents(c2) == []  # the failed transaction was rolled back
    assert c2.size == 4
    assert contents(c3) == []  # never tried
    assert contents(c4) == []  # optional channels come after all required ones


async def test_a_retry_after_a_partial_failure_duplicates_events_in_earlier_channels():
    c1, c2 = memory_channel("c1", capacity=10), memory_channel("c2", capacity=10)
    await fill(c2)
    channel_processor = processor([c1, c2])
    with pytest.raises(ChannelFull):
        await channel_processor.process_batch(batch("a"))
    tx = c2.transaction()  # a sink makes room
    tx.take(10)
    await tx.commit()
    await channel_processor.process_batch(batch("a"))
    assert contents(c1) == [b"a", b"a"]
    assert contents(c2) == [b"a"]


async def test_a_required_channel_error_reaches_the_caller():
    c1, c2 = memory_channel("c1"), memory_channel("c2", capacity=10, transactionCapacity=1)
    with pytest.raises(ChannelError, match="transaction of capacity 1"):
        await processor([c1, c2]).process_batch(batch("a", "b"))
    assert contents(c1) == [b"a", b"b"]
    assert contents(c2) == []


async def test_the_batch_limit_is_the_smallest_transaction_capacity():
    channels = [memory_channel("c1", transactionCapacity=50), memory_channel("c2", transactionCapacity=7)]
    assert processor(channels).max_batch == 7


async def test_optional_channel_failures_are_logged_and_ignored(caplog):
    c1, c2, c3 = (memory_channel(name, capacity=4) for name in ("c1", "c2", "c3"))
    await fill(c2)
    await processor([c1, c2, c3], selector_params={"optional": "c2 c3"}).process_batch(batch("a", "b"))
    assert contents(c1) == [b"a", b"b"]
    assert contents(c2) == []
    assert contents(c3) == [b"a", b"b"]  # the failure of c2 did not stop c3
    assert "optional channel c2 refused 2 events" in caplog.text


async def test_multiplexing_routes_through_the_processor_and_tolerates_optional_failures(caplog):
    c1, c2, c3 = (memory_channel(name, capacity=4) for name in ("c1", "c2", "c3"))
    await fill(c3)
    params = {"header": "State", "mapping.CA": "c1", "mapping.NY": "c2", "optional.CA": "c3", "default": "c2"}
    events = [Event(b"ca", {"State": "CA"}), Event(b"ny", {"State": "NY"}), Event(b"none")]
    await processor([c1, c2, c3], "multiplexing", params).process_batch(events)
    assert contents(c1) == [b"ca"]
    assert contents(c2) == [b"ny", b"none"]
    assert "optional channel c3 refused 1 events" in caplog.text


async def test_multiplexing_required_failure_is_raised():
    c1, c2 = memory_channel("c1", capacity=4), memory_channel("c2", capacity=4)
    await fill(c2)
    params = {"header": "State", "mapping.CA": "c1", "default": "c2"}
    with pytest.raises(ChannelFull):
        await processor([c1, c2], "multiplexing", params).process_batch([Event(b"x", {"State": "TX"})])


async def test_interceptors_run_in_order_before_the_selector():
    c1, c2 = memory_channel("c1"), memory_channel("c2")
    interceptors = [
        interceptor("static", {"key": "State", "value": "CA"}),  # no State header yet: set to CA
        interceptor("static", {"key": "State", "value": "NY", "preserveExisting": "false"}),  # then NY
        interceptor("regex_filter", {"regex": "^drop", "excludeEvents": "true"}),
    ]
    params = {"header": "State", "mapping.CA": "c1", "mapping.NY": "c2"}
    await processor([c1, c2], "multiplexing", params, interceptors).process_batch(batch("keep", "drop me"))
    assert contents(c1) == []
    assert contents(c2) == [b"keep"]


async def test_a_batch_the_interceptors_drop_entirely_writes_nothing():
    c1 = memory_channel("c1", capacity=4)
    await fill(c1)  # a write would fail: nothing may be written at all
    drop_all = interceptor("regex_filter", {"regex": ".*", "excludeEvents": "true"})
    await processor([c1], interceptors=[drop_all]).process_batch(batch("a", "b"))
    assert c1.counters.put_attempt == 4  # only the filler


async def test_interceptors_accept_a_tuple_batch():
    c1 = memory_channel("c1")
    stamp = interceptor("static", {"key": "k", "value": "v"})
    await processor([c1], interceptors=[stamp]).process_batch((Event(b"a"),))
    tx = c1.transaction()
    [stored] = tx.take(10)
    tx.rollback()
    assert stored.headers == {"k": "v"}
