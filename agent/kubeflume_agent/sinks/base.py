"""What every sink is: take a batch from its channel inside a transaction, deliver it, commit.

Subclasses implement `write(events)`; the base class owns the transaction, so no sink can forget
to roll back: an exception from `write` rolls the batch back into the channel and is reported to
the sink runner as EventDeliveryError, which backs off and retries. A commit that fails rolls
back too, so the batch is delivered again (at least once, never lost).

On a channel whose commits wait for a disk (the file channel: a take is durable only after an
fdatasync), a sink goes on with the next batch while the last ones' takes are being made durable,
up to COMMITS_IN_FLIGHT of them; otherwise one fdatasync per batch would set the pace of every
sink. `committed(events)` tells a subclass when the channel has really let a batch go.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from kubeflume_agent.config.keys import Config, Configurable, key, positive_integer
from kubeflume_agent.core.channel import Channel
from kubeflume_agent.core.counters import SinkCounters
from kubeflume_agent.core.errors import EventDeliveryError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.status import Status

log = logging.getLogger(__name__)

COMMITS_IN_FLIGHT = 2


@dataclass(frozen=True)
class SinkKeys(Config):
    """What every sink's config tells the Sink base. A sink that spells its batch size otherwise
    (`hdfs.batchSize`, `batch-size`) declares the `batch_size` field again with its own key."""

    batch_size: int = key("batchSize", positive_integer, 100, doc="events taken from the channel per transaction")

    def destination(self) -> str:
        """Where the sink delivers, for people (a directory, a URL, host:port); "" if nowhere in particular."""
        return ""


SinkConfigT = TypeVar("SinkConfigT", bound=SinkKeys)


class Sink(Configurable[SinkConfigT]):
    """Takes batches from its channel: `class NullSink(Sink[NullSinkConfig])`, built from that config."""

    def __init__(self, name: str, config: SinkConfigT, channel: Channel) -> None:
        self.name = name
        self.config = config
        self.channel = channel
        self.counters = SinkCounters()
        self.batch_size = config.batch_size
        self._commits: deque[asyncio.Future] = deque()  # takes delivered, not yet durably committed

    async def start(self) -> None:
        self.counters.started()

    async def stop(self) -> None:
        try:
            await self.settle_commits()
        except Exception as error:  # rolled back: the channel delivers the batch again
            log.warning("sink %s: the last take did not commit while stopping: %s", self.name, error)
        self.counters.stopped()

    async def process(self) -> Status:
        counters = self.counters
        tx = self.channel.transaction()
        try:
            events = tx.take(self.batch_size)
        except Exception:
            tx.rollback()
            counters.channel_read_fail += 1
            raise
        count = len(events)
        if not count:
            tx.rollback()
            if self._commits:  # events may arrive while the last takes settle: look again then
                await self.settle_commits()
                return Status.READY
            counters.batch_empty += 1
            return Status.BACKOFF
        counters.drain_attempt += count
        try:
            await self.write(events)
        except Exception as error:
            tx.rollback()
            counters.event_write_fail += 1
            raise EventDeliveryError(f"sink {self.name}: {error}") from error
        if not self.channel.commits_wait_for_disk:
            await self._commit(tx, events)
            return Status.READY
        self._commits.append(asyncio.ensure_future(self._commit(tx, events)))
        while len(self._commits) > COMMITS_IN_FLIGHT:
            await self._commits.popleft()
        return Status.READY

    @property
    def settled(self) -> bool:
        """No take waits for its commit (see COMMITS_IN_FLIGHT)."""
        return not self._commits

    async def settle_commits(self) -> None:
        """Wait for every take in flight to be committed (or fail, rolled back)."""
        while self._commits:
            await self._commits.popleft()

    async def _commit(self, tx, events: Sequence[Event]) -> None:
        try:
            await tx.commit()
        except Exception:
            tx.rollback()
            raise
        counters = self.counters
        counters.drain_success += len(events)
        if len(events) < self.batch_size:
            counters.batch_underflow += 1
        else:
            counters.batch_complete += 1
        self.committed(events)

    def committed(self, events: Sequence[Event]) -> None:
        """The channel has durably let `events` go (their take committed). For subclasses."""

    async def write(self, events: Sequence[Event]) -> None:
        """Deliver `events` durably (or raise): the channel forgets them once this returns."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for people: what this sink is and where it writes."""
        return f"{type(self).__name__} {self.config.destination()}".strip()
