"""The spillable memory channel: memory first, overflow to a real file channel, order kept."""

from __future__ import annotations

import pytest

from kubeflume_agent.channels.spillable import SpillableMemoryChannel
from kubeflume_agent.config.keys import resolve
from kubeflume_agent.core.errors import ChannelFull
from kubeflume_agent.core.event import Event


def make_channel(tmp_path, **params) -> SpillableMemoryChannel:
    values = {
        "checkpointDir": str(tmp_path / "checkpoint"), "dataDirs": str(tmp_path / "data"),
        "minimumRequiredSpace": "1048576", "memoryCapacity": "10", "overflowCapacity": "1000",
        "overflowTimeout": "0", "transactionCapacity": "100",
        **{key: str(value) for key, value in params.items()},
    }
    settings, problems = resolve(SpillableMemoryChannel.config_class, values)
    assert [p for p in problems if p.severity == "error"] == []
    assert SpillableMemoryChannel.config_problems(settings) == []
    return SpillableMemoryChannel("c1", settings)


@pytest.fixture
async def channels():
    started: list[SpillableMemoryChannel] = []
    yield started
    for channel in started:
        if channel.overflow is None or channel.overflow.counters.open:
            await channel.stop()


async def started(channels, tmp_path, **params) -> SpillableMemoryChannel:
    channel = make_channel(tmp_path, **params)
    await channel.start()
    channels.append(channel)
    return channel


def numbered(start: int, count: int) -> list[Event]:
    return [Event(str(i).encode()) for i in range(start, start + count)]


async def put(channel, first: int, count: int) -> None:
    tx = channel.transaction()
    tx.put_all(numbered(first, count))
    await tx.commit()


async def take(channel, count: int) -> list[int]:
    tx = channel.transaction()
    events = tx.take(count)
    await tx.commit()
    return [int(e.body) for e in events]


async def test_memory_first_then_overflow_in_commit_order(channels, tmp_path):
    channel = await started(channels, tmp_path)
    await put(channel, 0, 10)
    assert channel.overflow.size == 0
    await put(channel, 10, 10)  # memory is full: spills
    assert channel.overflow.size == 10
    assert await take(channel, 5) == [0, 1, 2, 3, 4]
    await put(channel, 20, 3)  # fits in memory again, but comes after the overflowed ones
    assert channel.size == 18
    assert await take(channel, 100) == list(range(5, 23))
    assert channel.size == 0


async def test_rollback_restores_the_drain_order(channels, tmp_path):
    channel = await started(channels, tmp_path)
    await put(channel, 0, 10)
    await put(channel, 10, 10)
    tx = channel.transaction()
    assert len(tx.take(15)) == 15  # all of memory and part of the overflow
    tx.rollback()
    assert channel.size == 20
    assert await take(channel, 100) == list(range(20))


async def test_overflowed_events_survive_a_restart_memory_does_not(channels, tmp_path):
    channel = await started(channels, tmp_path)
    await put(channel, 0, 10)
    await put(channel, 10, 7)
    await channel.stop()
    again = await started(channels, tmp_path)
    assert again.size == 7
    assert await take(again, 100) == list(range(10, 17))


async def test_pure_memory_refuses_when_full(channels, tmp_path):
    channel = await started(channels, tmp_path, overflowCapacity=0)
    assert channel.overflow is None
    assert channel.config.storage_paths() == []
    await put(channel, 0, 10)
    with pytest.raises(ChannelFull, match="no overflow"):
        await put(channel, 10, 1)


async def test_pure_file_channel(channels, tmp_path):
    channel = await started(channels, tmp_path, memoryCapacity=0)
    await put(channel, 0, 5)
    assert channel.overflow.size == 5
    assert channel.config.storage_paths() == [str(tmp_path / "checkpoint"),
                                                                      str(tmp_path / "data")]
    assert await take(channel, 10) == list(range(5))


async def test_byte_capacity_limits_memory(channels, tmp_path):
    channel = await started(channels, tmp_path, memoryCapacity=100, byteCapacity=10,
                            byteCapacityBufferPercentage=0)
    await put(channel, 0, 5)  # 5 bytes
    await put(channel, 5, 5)  # 10 bytes: still fits
    await put(channel, 10, 1)  # 12 bytes would not
    assert channel.overflow.size == 1
    assert await take(channel, 100) == list(range(11))


def test_both_capacities_zero_is_an_error(tmp_path):
    settings, _ = resolve(SpillableMemoryChannel.config_class, {"memoryCapacity": "0", "overflowCapacity": "0"})
    assert dict(SpillableMemoryChannel.config_problems(settings)).keys() == {"memoryCapacity"}
