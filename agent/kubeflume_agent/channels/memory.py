"""The memory channel: fast, bounded, and lost on process death (as in Flume).

Capacity is checked at commit, as Flume does: a commit that needs more room than is free waits up
to `keep-alive` seconds for sinks to make room, then raises ChannelFull and stores nothing.
Taken events keep their slot until the take commits, so a rollback always has room to put them back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from kubeflume_agent.channels.fifo import ChunkedFifo
from kubeflume_agent.config.keys import key, non_negative_integer, number, positive_integer
from kubeflume_agent.core.channel import Channel, ChannelKeys, Transaction
from kubeflume_agent.core.errors import ChannelFull
from kubeflume_agent.core.event import Event

SLOT_BYTES = 100  # Flume counts byteCapacity in 100-byte slots of body bytes


def byte_slots(events: list[Event]) -> int:
    return sum(-(-len(event.body) // SLOT_BYTES) or 1 for event in events)


class MemoryTransaction(Transaction):
    __slots__ = ()

    channel: MemoryChannel

    def _take(self, count: int) -> list[Event]:
        return self.channel._pop(count)

    def _commit(self) -> Coroutine[Any, Any, None]:
        # the channel's commit itself, not a coroutine awaiting it: one layer less per commit
        return self.channel._commit(self.puts, self.takes)

    def _rollback(self) -> None:
        self.channel._restore(self.takes)


@dataclass(frozen=True)
class MemoryChannelConfig(ChannelKeys):
    capacity: int = key("capacity", positive_integer, 100, doc="most events the channel holds")
    keep_alive: float = key("keep-alive", number, 3.0, doc="seconds a commit waits for room before failing")
    byte_capacity: int = key("byteCapacity", non_negative_integer, 0,
                             doc="most body bytes held; 0 means no byte limit")
    byte_capacity_buffer_percentage: int = key("byteCapacityBufferPercentage", non_negative_integer, 20,
                                               doc="share of byteCapacity kept free for header overhead")

    def problems(self) -> list[tuple[str, str]]:
        if self.transaction_capacity > self.capacity:
            return [("transactionCapacity", "must not exceed capacity")]
        return []

    def events_capacity(self) -> int:
        return self.capacity

    def events_in_memory(self) -> int:
        return self.capacity


class MemoryChannel(Channel[MemoryChannelConfig]):
    def __init__(self, name: str, config: MemoryChannelConfig) -> None:
        super().__init__(name, config)
        self.capacity = config.capacity
        self.keep_alive = config.keep_alive
        buffer = config.byte_capacity_buffer_percentage
        self.byte_slot_capacity = (int(config.byte_capacity * (1 - buffer / 100) / SLOT_BYTES)
                                   if config.byte_capacity else 0)
        self._queue: ChunkedFifo[list[Event]] = ChunkedFifo(list)  # committed batches, oldest first
        self._in_flight_takes = 0  # taken, not yet committed: they still hold their slots
        self._byte_slots_used = 0

    def transaction(self) -> MemoryTransaction:
        return MemoryTransaction(self)

    def _pop(self, count: int) -> list[Event]:
        taken = self._queue.pop_front(count)
        self._in_flight_takes += len(taken)
        self.counters.size = self._queue.length
        return taken

    def _restore(self, taken: list[Event]) -> None:
        """Roll back takes: the events go back to the head, in their original order."""
        self._queue.push_front(taken)
        self._in_flight_takes -= len(taken)
        self.counters.size = self._queue.length

    async def _commit(self, puts: list[Event], takes: list[Event]) -> None:
        needed = len(puts) - len(takes)
        slots = byte_slots(puts) - byte_slots(takes) if self.byte_slot_capacity else 0
        if (needed > 0 or slots > 0) and not self._has_room(needed, slots):
            await self._wait_for_room(needed, slots)
        queue = self._queue
        queue.append_chunk(puts)
        self._in_flight_takes -= len(takes)
        self._byte_slots_used += slots
        self.counters.size = queue.length

    def _has_room(self, events: int, slots: int) -> bool:
        return self._queue.length + self._in_flight_takes + events <= self.capacity and (
            not self.byte_slot_capacity or self._byte_slots_used + slots <= self.byte_slot_capacity)

    async def _wait_for_room(self, events: int, slots: int) -> None:
        """Return once there is room (the caller found none: the common case makes no coroutine)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.keep_alive
        while not self._has_room(events, slots):
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self.space_available.wait(remaining):
                raise self._full(events)

    def _full(self, events: int) -> ChannelFull:
        if self._queue.length + self._in_flight_takes + events > self.capacity:
            return ChannelFull(
                f"Space for commit to queue couldn't be acquired (channel {self.name}, capacity "
                f"{self.capacity}). Sinks are likely not keeping up with sources, or the buffer "
                "size is too tight"
            )
        return ChannelFull(
            f"Cannot commit transaction. Byte capacity allocated to store event body "
            f"{self.byte_slot_capacity * SLOT_BYTES} reached (channel {self.name})"
        )
