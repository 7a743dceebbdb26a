"""Where a source's batch goes: interceptors, then the selector, then one transaction per channel.

As in Flume, required channels are committed one after another; the first failure raises to the
source (which then acknowledges nothing), and channels committed before it keep the batch, so a
client's retry may duplicate events there. Optional channels are written last, best effort.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kubeflume_agent.core.errors import ChannelError
from kubeflume_agent.core.event import Event
from kubeflume_agent.interceptors.base import Interceptor
from kubeflume_agent.selectors.builtin import ChannelSelector

log = logging.getLogger(__name__)


class ChannelProcessor:
    def __init__(self, selector: ChannelSelector, interceptors: Sequence[Interceptor] = ()) -> None:
        self.selector = selector
        self.interceptors = tuple(interceptors)
        # The most events one batch may hold: every channel must take it in one transaction.
        self.max_batch = min(channel.transaction_capacity for channel in selector.channels.values())

    async def start(self) -> None:
        for interceptor in self.interceptors:
            await interceptor.start()

    async def stop(self) -> None:
        for interceptor in self.interceptors:
            await interceptor.stop()

    async def process(self, event: Event) -> None:
        await self.process_batch([event])

    async def process_batch(self, events: Sequence[Event]) -> None:
        """Store `events` in their channels; raises ChannelError (ChannelFull) if a required one refuses."""
        for interceptor in self.interceptors:
            events = interceptor.intercept(events if isinstance(events, list) else list(events))
        if not events:
            return
        required, optional = self.selector.route(events)
        for channel, batch in required:
            await self._commit(channel, batch)
        for channel, batch in optional:
            try:
                await self._commit(channel, batch)
            except ChannelError as error:
                log.warning("optional channel %s refused %d events: %s", channel.name, len(batch), error)

    @staticmethod
    async def _commit(channel, batch: list[Event]) -> None:
        tx = channel.transaction()
        try:
            tx.put_all(batch)
            await tx.commit()
        except BaseException:
            tx.rollback()
            raise
