"""The memory channel: Flume's transaction rules (c.1), capacity checked at commit, byte slots, counters."""

import asyncio
from dataclasses import fields

import pytest

from kubeflume_agent.channels.memory import MemoryChannel
from kubeflume_agent.config.keys import KEY
from kubeflume_agent.config.model import resolve_component
from kubeflume_agent.core.errors import ChannelError, ChannelFull
from kubeflume_agent.core.event import Event
from tests.integration.source_harness import put_all

WAIT = 30  # seconds: generous, only reached when something is broken


def memory_channel(**params) -> MemoryChannel:
    settings, problems = resolve_component(MemoryChannel, {k: str(v) for k, v in params.items()})
    assert not problems
    assert not MemoryChannel.config_problems(settings)
    return MemoryChannel("c1", settings)


def numbered(count: int, start: int = 0, size: int = 0) -> list[Event]:
    return [Event(str(i).encode().ljust(size, b".")) for i in range(start, start + count)]


async def take(channel: MemoryChannel, count: int) -> list[Event]:
    tx = channel.transaction()
    events = tx.take(count)
    await tx.commit()
    return events


def bodies(events: list[Event]) -> list[bytes]:
    return [event.body for event in events]


async def test_events_come_out_in_the_order_they_were_committed():
    channel = memory_channel()
    await put_all(channel, numbered(3))
    await put_all(channel, numbered(2, start=3))
    assert bodies(await take(channel, 10)) == [b"0", b"1", b"2", b"3", b"4"]
    assert channel.size == 0


async def test_puts_are_invisible_until_commit_and_a_rollback_stores_nothing():
    channel = memory_channel()
    tx = channel.transaction()
    tx.put_all(numbered(3))
    assert channel.size == 0
    assert await take(channel, 10) == []
    tx.rollback()
    assert channel.size == 0
    assert channel.counters.put_success == 0


async def test_a_take_rollback_puts_the_events_back_at_the_head_in_order():
    channel = memory_channel()
    await put_all(channel, numbered(3))
    tx = channel.transaction()
    assert bodies(tx.take(2)) == [b"0", b"1"]
    await put_all(channel, numbered(1, start=3))  # another transaction commits meanwhile
    tx.rollback()
    assert bodies(await take(channel, 10)) == [b"0", b"1", b"2", b"3"]


async def test_async_with_commits_on_success_and_rolls_back_on_error():
    channel = memory_channel()
    async with channel.transaction() as tx:
        tx.put_all(numbered(2))
    assert channel.size == 2
    with pytest.raises(RuntimeError):
        async with channel.transaction() as tx:
            tx.take(2)
            raise RuntimeError("delivery failed")
    assert bodies(await take(channel, 10)) == [b"0", b"1"]


async def test_a_finished_transaction_cannot_commit_again():
    channel = memory_channel()
    tx = channel.transaction()
    tx.put_all(numbered(1))
    await tx.commit()
    with pytest.raises(ChannelError):
        await tx.commit()
    assert channel.size == 1


async def test_transaction_capacity_limits_puts():
    channel = memory_channel(capacity=10, transactionCapacity=3)
    tx = channel.transaction()
    tx.put_all(numbered(2))
    with pytest.raises(ChannelError, match="transaction of capacity 3 full"):
        tx.put_all(numbered(2, start=2))
    tx.put(Event(b"2"))  # the refused batch was not half-added: one more still fits
    await tx.commit()
    assert bodies(await take(channel, 10)) == [b"0", b"1", b"2"]


async def test_transaction_capacity_limits_takes():
    channel = memory_channel(capacity=10, transactionCapacity=3)
    await put_all(channel, numbered(3))
    await put_all(channel, numbered(2, start=3))
    tx = channel.transaction()
    assert len(tx.take(10)) == 3
    with pytest.raises(ChannelError, match="Take list for transaction of capacity 3 full"):
        tx.take(1)
    await tx.commit()
    assert channel.size == 2


async def test_a_commit_without_room_fails_after_keep_alive_and_stores_nothing():
    channel = memory_channel(capacity=3, transactionCapacity=3, **{"keep-alive": 0.05})
    await put_all(channel, numbered(2))
    tx = channel.transaction()
    tx.put_all(numbered(2, start=2))
    with pytest.raises(ChannelFull, match="Space for commit to queue couldn't be acquired"):
        await tx.commit()
    tx.rollback()
    assert channel.size == 2
    assert channel.counters.put_success == 2
    assert bodies(await take(channel, 10)) == [b"0", b"1"]


async def test_a_waiting_commit_goes_through_when_a_take_frees_room():
    channel = memory_channel(capacity=2, transactionCapacity=2, **{"keep-alive": WAIT})
    await put_all(channel, numbered(2))
    waiting = asyncio.ensure_future(put_all(channel, numbered(1, start=2)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done(), "the commit must wait for room, not fail or overfill"
    assert bodies(await take(channel, 1)) == [b"0"]
    await asyncio.wait_for(waiting, WAIT)
    assert bodies(await take(channel, 10)) == [b"1", b"2"]


async def test_taken_events_keep_their_slot_until_the_take_commits():
    channel = memory_channel(capacity=2, transactionCapacity=2, **{"keep-alive": 0.05})
    await put_all(channel, numbered(2))
    tx = channel.transaction()
    tx.take(2)
    with pytest.raises(ChannelFull):  # room for the rollback is kept
        await put_all(channel, numbered(1, start=2))
    tx.rollback()
    assert bodies(await take(channel, 10)) == [b"0", b"1"]


async def test_a_transaction_that_takes_as_many_as_it_puts_needs_no_room():
    channel = memory_channel(capacity=2, transactionCapacity=2, **{"keep-alive": 0.05})
    await put_all(channel, numbered(2))
    tx = channel.transaction()
    tx.take(1)
    tx.put(Event(b"2"))
    await tx.commit()
    assert bodies(await take(channel, 10)) == [b"1", b"2"]


async def test_byte_capacity_counts_100_byte_slots_of_body_bytes():
    # 1000 bytes minus the 20 % buffer = 800 bytes = 8 slots.
    channel = memory_channel(capacity=100, byteCapacity=1000, **{"keep-alive": 0.05})
    assert channel.byte_slot_capacity == 8
    await put_all(channel, numbered(3, size=101))  # 2 slots each: 6
    await put_all(channel, [Event(b"")])  # an empty body still costs one slot: 7
    await put_all(channel, numbered(1, size=100))  # exactly one slot: 8
    with pytest.raises(ChannelFull, match="Byte capacity allocated to store event body 800 reached"):
        await put_all(channel, [Event(b"x", {"big": "headers do not count" * 100})])
    assert channel.size == 5
    await take(channel, 1)  # frees 2 slots
    await put_all(channel, numbered(2, size=1))
    assert channel.size == 6


async def test_byte_capacity_zero_means_no_byte_limit():
    channel = memory_channel(capacity=10, transactionCapacity=10, byteCapacity=0)
    await put_all(channel, [Event(b"x" * 1_000_000) for _ in range(10)])
    assert channel.size == 10


async def test_counters_use_flume_names():
    channel = memory_channel(capacity=10, transactionCapacity=10)
    tx = channel.transaction()
    tx.put_all(numbered(4))
    await tx.commit()
    tx = channel.transaction()
    tx.put_all(numbered(2))
    tx.rollback()
    await take(channel, 3)
    snapshot = channel.counters.snapshot()
    assert snapshot["EventPutAttemptCount"] == 6
    assert snapshot["EventPutSuccessCount"] == 4
    assert snapshot["EventTakeAttemptCount"] == 1
    assert snapshot["EventTakeSuccessCount"] == 3
    assert snapshot["ChannelSize"] == 1
    assert snapshot["ChannelCapacity"] == 10
    assert snapshot["ChannelFillPercentage"] == 10.0


def test_transaction_capacity_above_capacity_is_a_config_error():
    settings, _ = resolve_component(MemoryChannel, {"capacity": "10", "transactionCapacity": "20"})
    assert MemoryChannel.config_problems(settings) == [("transactionCapacity", "must not exceed capacity")]


def test_defaults_are_flumes():
    settings, problems = resolve_component(MemoryChannel, {})
    assert not problems
    by_flume_name = {declared.metadata[KEY].name: getattr(settings, declared.name) for declared in fields(settings)}
    assert by_flume_name == {"capacity": 100, "transactionCapacity": 100, "keep-alive": 3.0, "byteCapacity": 0,
                             "byteCapacityBufferPercentage": 20}
