"""The spillable memory channel: events live in memory and overflow to a file channel when it is full.

A committed batch goes to memory when it fits (`memoryCapacity`, and `byteCapacity` if set); else
it waits up to `overflowTimeout` seconds for memory to drain, then goes to the overflow file channel
(`overflowCapacity`, configured with the file channel's keys). A "drain order" (runs of
memory/overflow events) keeps takes in the order events were committed. As in Flume, what is in
memory is lost if the process dies; what overflowed survives and is delivered after a restart.
`memoryCapacity = 0` makes it a pure file channel, `overflowCapacity = 0` a pure memory channel.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, fields

from kubeflume_agent.channels.file.channel import FileChannel, FileChannelConfig, FileStorageConfig, FileTransaction
from kubeflume_agent.config.keys import key, non_negative_integer, number, positive_integer
from kubeflume_agent.core.channel import Channel, Transaction
from kubeflume_agent.core.errors import ChannelFull
from kubeflume_agent.core.event import Event

MEMORY, OVERFLOW = "memory", "overflow"


class SpillableTransaction(Transaction):
    __slots__ = ("memory_taken", "overflow_tx", "runs_taken")

    channel: SpillableMemoryChannel

    def __init__(self, channel: SpillableMemoryChannel) -> None:
        super().__init__(channel)
        self.memory_taken: list[Event] = []
        self.overflow_tx: FileTransaction | None = None
        self.runs_taken: list[list] = []  # [kind, count] in the order taken

    def overflow(self) -> FileTransaction:
        if self.overflow_tx is None:
            overflow = self.channel.overflow
            assert overflow is not None, "spilling only happens with an overflow channel"
            self.overflow_tx = overflow.transaction()
        return self.overflow_tx

    def _take(self, count: int) -> list[Event]:
        return self.channel._take(self, count)

    async def _commit(self) -> None:
        await self.channel._commit(self)

    def _rollback(self) -> None:
        self.channel._rollback(self)


@dataclass(frozen=True)
class SpillableChannelConfig(FileStorageConfig):
    """Its own keys, and the file channel's about files (the overflow is a file channel)."""

    memory_capacity: int = key("memoryCapacity", non_negative_integer, 10000,
                               doc="events held in memory; 0 = file channel only")
    overflow_capacity: int = key("overflowCapacity", non_negative_integer, 100000000,
                                 doc="events held in the overflow file channel; 0 = memory only")
    overflow_timeout: float = key("overflowTimeout", number, 3.0,
                                  doc="seconds to wait for memory room before overflowing")
    byte_capacity: int = key("byteCapacity", non_negative_integer, 0,
                             doc="most body bytes in memory; 0 = no byte limit")
    byte_capacity_buffer_percentage: int = key("byteCapacityBufferPercentage", non_negative_integer, 20,
                                               doc="share of byteCapacity kept free for header overhead")
    avg_event_size: int = key("avgEventSize", positive_integer, 500,
                              doc="accepted for compatibility; bytes are counted exactly")

    def problems(self) -> list[tuple[str, str]]:
        problems = []
        if not self.memory_capacity and not self.overflow_capacity:
            problems.append(("memoryCapacity", "memoryCapacity and overflowCapacity cannot both be 0"))
        if self.overflow_capacity:
            problems += self.storage_problems(max(self.overflow_capacity, self.transaction_capacity))
        return problems

    def storage_paths(self) -> list[str]:
        return super().storage_paths() if self.overflow_capacity else []

    def events_capacity(self) -> int:
        return self.memory_capacity + self.overflow_capacity

    def events_in_memory(self) -> int:
        return self.memory_capacity

    def overflow_config(self) -> FileChannelConfig:
        """The overflow file channel's config: these file keys, `overflowCapacity` events, no waiting for room."""
        storage = {declared.name: getattr(self, declared.name) for declared in fields(FileStorageConfig)}
        return FileChannelConfig(**storage, capacity=self.overflow_capacity, keep_alive=0.0)


class SpillableMemoryChannel(Channel[SpillableChannelConfig]):
    commits_wait_for_disk = True  # takes from the overflow are durable only once fsynced

    def __init__(self, name: str, config: SpillableChannelConfig) -> None:
        super().__init__(name, config)
        self.memory_capacity = config.memory_capacity
        self.overflow_timeout = config.overflow_timeout
        self.memory_byte_limit = int(config.byte_capacity * (1 - config.byte_capacity_buffer_percentage / 100))
        self.overflow: FileChannel | None = None
        if config.overflow_capacity:
            self.overflow = FileChannel(f"{name}-overflow", config.overflow_config())
        self._memory: deque[Event] = deque()
        self._memory_bytes = 0
        self._memory_in_flight = 0  # taken from memory, not yet committed: still hold their room
        self._memory_reserved = 0  # room promised to commits still writing their overflow part
        self._drain: deque[list] = deque()  # [kind, count] runs, oldest first

    def transaction(self) -> SpillableTransaction:
        return SpillableTransaction(self)

    async def start(self) -> None:
        if self.overflow:
            await self.overflow.start()
            if self.overflow.size:
                self._drain.append([OVERFLOW, self.overflow.size])
        self._update_size()
        await super().start()

    async def stop(self) -> None:
        if self.overflow:
            await self.overflow.stop()
        await super().stop()

    def _update_size(self) -> None:
        self.counters.size = len(self._memory) + (self.overflow.size if self.overflow else 0)

    # -- takes, in drain order ----------------------------------------------------------------

    def _take(self, tx: SpillableTransaction, count: int) -> list[Event]:
        events: list[Event] = []
        while count > 0 and self._drain:
            run = self._drain[0]
            step = min(count, run[1])
            if run[0] == MEMORY:
                taken = [self._memory.popleft() for _ in range(step)]
                self._memory_in_flight += step
                self._memory_bytes -= sum(len(event.body) for event in taken)
                tx.memory_taken += taken
            else:
                overflow_tx = tx.overflow()
                before = len(overflow_tx.take_pointers)
                taken = overflow_tx.take(step)
                step = len(overflow_tx.take_pointers) - before  # damaged records are consumed too
            events += taken
            count -= step
            run[1] -= step
            self._remember_run(tx.runs_taken, run[0], step, at_end=True)
            if not run[1]:
                self._drain.popleft()
        self._update_size()
        return events

    @staticmethod
    def _remember_run(runs, kind: str, count: int, at_end: bool) -> None:
        if not count:
            return
        edge = -1 if at_end else 0
        if runs and runs[edge][0] == kind:
            runs[edge][1] += count
        elif at_end:
            runs.append([kind, count])
        else:
            runs.appendleft([kind, count])

    def _rollback(self, tx: SpillableTransaction) -> None:
        self._memory.extendleft(reversed(tx.memory_taken))
        self._memory_bytes += sum(len(event.body) for event in tx.memory_taken)
        self._memory_in_flight -= len(tx.memory_taken)
        if tx.overflow_tx is not None:
            tx.overflow_tx.rollback()
        for kind, count in reversed(tx.runs_taken):
            self._remember_run(self._drain, kind, count, at_end=False)
        self._update_size()

    # -- commits ------------------------------------------------------------------------------

    async def _commit(self, tx: SpillableTransaction) -> None:
        puts = tx.puts
        target = await self._place(puts) if puts else None
        if target == OVERFLOW:
            tx.overflow().put_all(puts)
        try:
            if tx.overflow_tx is not None:
                await tx.overflow_tx.commit()
        finally:
            if target == MEMORY:
                self._memory_reserved -= len(puts)
        self._memory_in_flight -= len(tx.memory_taken)
        if target == MEMORY:
            self._memory.extend(puts)
            self._memory_bytes += sum(len(event.body) for event in puts)
        if target:
            self._remember_run(self._drain, target, len(puts), at_end=True)
        self._update_size()

    async def _place(self, puts: list[Event]) -> str:
        """Memory if the batch fits (waiting up to overflowTimeout), else the overflow channel."""
        if self.memory_capacity:
            deadline = asyncio.get_running_loop().time() + self.overflow_timeout
            while not self._fits_in_memory(puts):
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0 or not await self.space_available.wait(remaining):
                    break
            else:
                self._memory_reserved += len(puts)
                return MEMORY
        if self.overflow is None:
            raise ChannelFull(f"channel {self.name}: memory is full ({self.memory_capacity} events) and "
                              "there is no overflow (overflowCapacity = 0)")
        return OVERFLOW

    def _fits_in_memory(self, puts: list[Event]) -> bool:
        held = len(self._memory) + self._memory_in_flight + self._memory_reserved
        if held + len(puts) > self.memory_capacity:
            return False
        if not self.memory_byte_limit:
            return True
        return self._memory_bytes + sum(len(event.body) for event in puts) <= self.memory_byte_limit
