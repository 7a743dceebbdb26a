"""What every channel offers: transactions, as in Flume, plus wake-ups for the sink runner.

    tx = channel.transaction()
    tx.put_all(events)          # or tx.take(n) on the sink side
    await tx.commit()           # all-or-nothing; ChannelFull when there is no room
    # on any error instead: tx.rollback()

`async with channel.transaction() as tx:` commits on success and rolls back on an exception.
Puts and takes are synchronous (they only touch the transaction's own lists); commit is a
coroutine because it may wait for room (memory channel, `keep-alive`) or for a disk (file channel).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from kubeflume_agent.config.keys import Config, Configurable, key, positive_integer
from kubeflume_agent.core.batches import batch_limit
from kubeflume_agent.core.counters import ChannelCounters
from kubeflume_agent.core.errors import ChannelError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.signal import Signal


class Transaction:
    """One channel transaction. Subclasses implement `_commit()` and `_rollback()`."""

    __slots__ = ("_done", "channel", "puts", "takes")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.puts: list[Event] = []
        self.takes: list[Event] = []
        self._done = False

    def put(self, event: Event) -> None:
        self.put_all((event,))

    def put_all(self, events: Iterable[Event]) -> None:
        events = events if isinstance(events, (list, tuple)) else list(events)
        channel = self.channel
        channel.counters.put_attempt += len(events)
        if len(self.puts) + len(events) > channel.transaction_capacity:
            raise ChannelError(
                f"Put queue for transaction of capacity {channel.transaction_capacity} full, "
                "consider committing more frequently or increasing transactionCapacity"
            )
        self.puts.extend(events)

    def take(self, max_events: int) -> list[Event]:
        """Up to `max_events` events (fewer if the channel holds fewer); never waits."""
        room = self.channel.transaction_capacity - len(self.takes)
        if room <= 0:
            raise ChannelError(
                f"Take list for transaction of capacity {self.channel.transaction_capacity} full, "
                "consider committing more frequently or increasing transactionCapacity"
            )
        events = self._take(batch_limit(room, max_events))
        self.channel.counters.take_attempt += 1
        self.takes.extend(events)
        return events

    async def commit(self) -> None:
        if self._done:
            raise ChannelError("transaction already committed or rolled back")
        await self._commit()
        self._done = True
        channel, counters = self.channel, self.channel.counters
        if self.puts:
            counters.put_success += len(self.puts)
            channel.data_available.notify()
        if self.takes:
            counters.take_success += len(self.takes)
            channel.space_available.notify()

    def rollback(self) -> None:
        if self._done:
            return
        self._done = True
        self._rollback()
        if self.takes:
            self.channel.data_available.notify()

    async def __aenter__(self) -> Transaction:
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            await self.commit()
        else:
            self.rollback()

    def _take(self, count: int) -> list[Event]:
        raise NotImplementedError

    async def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class ChannelKeys(Config):
    """Base of a channel's typed config: what the Channel base, validation and the operator read."""

    transaction_capacity: int = key("transactionCapacity", positive_integer, 100,
                                    doc="most events one transaction puts or takes")

    def events_capacity(self) -> int:
        """Most events the channel holds."""
        raise NotImplementedError

    def events_in_memory(self) -> int:
        """Most events the channel holds in memory only: what dies with the process if not delivered."""
        return 0


ChannelConfigT = TypeVar("ChannelConfigT", bound=ChannelKeys)


class Channel(Configurable[ChannelConfigT]):
    """Base of all channels: `class MemoryChannel(Channel[MemoryChannelConfig])` (see config.keys)."""

    commits_wait_for_disk: ClassVar[bool] = False  # sinks then keep several takes in flight (sinks.base)

    def __init__(self, name: str, config: ChannelConfigT) -> None:
        self.name = name
        self.config = config
        self.transaction_capacity = config.transaction_capacity
        self.counters = ChannelCounters(config.events_capacity())
        self.data_available = Signal()
        self.space_available = Signal()

    def transaction(self) -> Transaction:
        raise NotImplementedError

    @property
    def size(self) -> int:
        return self.counters.size

    async def start(self) -> None:
        self.counters.started()

    async def stop(self) -> None:
        self.counters.stopped()

    async def wait_for_events(self, timeout: float) -> bool:
        """Wait until the channel holds events (True) or `timeout` seconds pass (False)."""
        if self.size:
            return True
        return await self.data_available.wait(timeout)
