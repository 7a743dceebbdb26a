"""Flume's `null` sink (NullSink): takes events and drops them.

It measures what the rest of the pipeline costs (`bench`: seq -> memory -> null), so `write` does
one addition and one comparison per batch and nothing per event. Like Flume it logs an INFO line
each time another `logEveryNEvents` events went by.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from kubeflume_agent.config.keys import key, positive_integer
from kubeflume_agent.core.channel import Channel
from kubeflume_agent.core.event import Event
from kubeflume_agent.sinks.base import Sink, SinkKeys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NullSinkConfig(SinkKeys):
    log_every: int = key("logEveryNEvents", positive_integer, 10000, doc="log an INFO line every this many events")


class NullSink(Sink[NullSinkConfig]):
    """Flume's `null` sink: discards every event (committed, counted, then forgotten)."""

    def __init__(self, name: str, config: NullSinkConfig, channel: Channel) -> None:
        super().__init__(name, config, channel)
        self.log_every = self.config.log_every
        self.discarded = 0
        self._next_log = self.log_every

    async def write(self, events: Sequence[Event]) -> None:
        self.discarded += len(events)
        if self.discarded >= self._next_log:
            self._next_log = (self.discarded // self.log_every + 1) * self.log_every
            log.info("Null sink %s successful processed %d events.", self.name, self.discarded)
