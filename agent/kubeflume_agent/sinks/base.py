"""What every sink is: take a batch from its channel inside a transaction, deliver it, commit.

Subclasses implement `write(events)`; the base class owns the transaction, so no sink can forget
to roll back: an exception from `write` rolls the batch back into the channel and is reported to
the sink runner as EventDeliveryError, which backs off and retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from kubeflume_agent.channels.base import Channel
from kubeflume_agent.config.keys import Key, Settings
from kubeflume_agent.errors import EventDeliveryError
from kubeflume_agent.event import Event
from kubeflume_agent.runtime.counters import SinkCounters
from kubeflume_agent.runtime.status import Status

# Keys that name where a sink delivers, in the order a person would look for them.
DESTINATION_KEYS = ("sink.directory", "hdfs.path", "endpoint", "hostname", "hosts")


class Sink:
    keys: ClassVar[tuple[Key, ...]] = ()
    batch_size_key: ClassVar[str | None] = "batchSize"

    def __init__(self, name: str, settings: Settings, channel: Channel) -> None:
        self.name = name
        self.settings = settings
        self.channel = channel
        self.counters = SinkCounters()
        self.batch_size: int = settings.get(self.batch_size_key, 100) if self.batch_size_key else 100

    async def start(self) -> None:
        self.counters.started()

    async def stop(self) -> None:
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
            counters.batch_empty += 1
            return Status.BACKOFF
        counters.drain_attempt += count
        try:
            await self.write(events)
        except Exception as error:
            tx.rollback()
            counters.event_write_fail += 1
            raise EventDeliveryError(f"sink {self.name}: {error}") from error
        await tx.commit()
        counters.drain_success += count
        if count < self.batch_size:
            counters.batch_underflow += 1
        else:
            counters.batch_complete += 1
        return Status.READY

    async def write(self, events: Sequence[Event]) -> None:
        """Deliver `events` durably (or raise): the channel forgets them once this returns."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for people: what this sink is and where it writes."""
        destination = next((str(self.settings[key]) for key in DESTINATION_KEYS if self.settings.get(key)), "")
        if destination and self.settings.get("port"):
            destination += f":{self.settings['port']}"
        return f"{type(self).__name__} {destination}".strip()

    @classmethod
    def validate_settings(cls, settings: Settings) -> list[tuple[str, str]]:
        return []

    @classmethod
    def storage_paths(cls, settings: Settings) -> list[str]:
        return []
