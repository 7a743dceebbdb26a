"""Flume's `seq` source: the bodies "0", "1", "2"... up to `totalEvents`, for tests and benchmarks.

A batch the channel refuses is generated again with the same numbers on the next poll, so the
sequence has no gaps (Flume retries the same counter values too).
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeflume_agent.config.keys import Config, key, positive_integer
from kubeflume_agent.core.errors import ChannelError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.status import Status
from kubeflume_agent.sources.base import ChannelProcessor, PollableSource

UNLIMITED = 2**63 - 1  # Flume's Long.MAX_VALUE


@dataclass(frozen=True)
class SequenceSourceConfig(Config):
    batch_size: int = key("batchSize", positive_integer, 1, doc="events per channel transaction")
    total_events: int = key("totalEvents", positive_integer, UNLIMITED, doc="stop after this many events")


class SequenceSource(PollableSource[SequenceSourceConfig]):
    def __init__(self, name: str, config: SequenceSourceConfig, processor: ChannelProcessor) -> None:
        super().__init__(name, config, processor)
        self.batch_size = self.config.batch_size
        self.total_events = self.config.total_events
        self.next_value = 0

    def describe(self) -> str:
        total = "" if self.total_events == UNLIMITED else f" (totalEvents {self.total_events})"
        return f"{type(self).__name__} counting from {self.next_value}{total}"

    async def process(self) -> Status:
        first = self.next_value
        last = min(first + self.batch_size, self.total_events)
        if first >= last:
            return Status.BACKOFF
        events = list(map(Event, [b"%d" % value for value in range(first, last)]))
        try:
            await self.deliver(events)
        except ChannelError:
            return Status.BACKOFF
        self.next_value = last
        return Status.READY
