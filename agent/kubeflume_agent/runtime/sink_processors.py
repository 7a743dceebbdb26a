"""Sink processors: how a sink group shares work among its sinks (Flume's a.5/c.8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from kubeflume_agent.config.keys import Key, Settings
from kubeflume_agent.runtime.status import Status
from kubeflume_agent.sinks.base import Sink


class SinkProcessor:
    """Runs one `process()` step over a group of sinks. Raises EventDeliveryError when every sink failed."""

    keys: ClassVar[tuple[Key, ...]] = ()

    def __init__(self, settings: Settings, sinks: Sequence[Sink]) -> None:
        self.settings = settings
        self.sinks = list(sinks)

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def stop(self) -> None:
        for sink in self.sinks:
            await sink.stop()

    async def process(self) -> Status:
        raise NotImplementedError

    @classmethod
    def validate_settings(cls, settings: Settings, sink_names: Sequence[str] = ()) -> list[tuple[str, str]]:
        return []


class DefaultSinkProcessor(SinkProcessor):
    """A single sink, used for every sink outside a group."""

    async def process(self) -> Status:
        return await self.sinks[0].process()
