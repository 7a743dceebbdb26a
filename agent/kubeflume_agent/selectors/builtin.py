"""Channel selectors: which channels each event goes to, required or optional (Flume's a.4/c.2).

A selector turns a batch into routes: (channel, the events for it). Required routes are committed
one after another and a failure fails the batch; optional routes are best effort.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from kubeflume_agent.config.keys import Config, Configurable, key, one_of, word_list
from kubeflume_agent.core.channel import Channel
from kubeflume_agent.core.event import Event

Route = tuple[Channel, list[Event]]


@dataclass(frozen=True)
class SelectorKeys(Config):
    """Base of a selector's config: the channels it names, so validation can check them."""

    def channel_references(self) -> list[tuple[str, list[str]]]:
        """(key, channel names) pairs this config mentions."""
        return []


SelectorConfigT = TypeVar("SelectorConfigT", bound=SelectorKeys)


class ChannelSelector(Configurable[SelectorConfigT]):
    """Picks, for each event of a batch, the channels of its source that receive it."""

    def __init__(self, config: SelectorConfigT, channels: dict[str, Channel]) -> None:
        self.config = config
        self.channels = channels

    def route(self, events: Sequence[Event]) -> tuple[list[Route], list[Route]]:
        """(required routes, optional routes) for a batch, channels in configuration order."""
        raise NotImplementedError

    def _named(self, names: Sequence[str]) -> list[Channel]:
        return [self.channels[name] for name in names]


@dataclass(frozen=True)
class ReplicatingConfig(SelectorKeys):
    optional: list[str] = key("optional", word_list, [], doc="channels whose write failures are ignored")

    def channel_references(self) -> list[tuple[str, list[str]]]:
        return [("optional", self.optional)]


class ReplicatingSelector(ChannelSelector[ReplicatingConfig]):
    """Every event to every channel; channels in `optional` may fail without failing the batch."""

    def __init__(self, config: ReplicatingConfig, channels: dict[str, Channel]) -> None:
        super().__init__(config, channels)
        optional = set(config.optional)
        self.required = [c for name, c in channels.items() if name not in optional]
        self.optional = [c for name, c in channels.items() if name in optional]

    def route(self, events: Sequence[Event]) -> tuple[list[Route], list[Route]]:
        batch = events if isinstance(events, list) else list(events)
        optional = [(c, batch) for c in self.optional] if self.optional else []
        return [(c, batch) for c in self.required], optional


@dataclass(frozen=True)
class MultiplexingConfig(SelectorKeys):
    header: str = key("header", str, "flume.selector.header", doc="the header whose value picks the channels")
    mapping: dict[str, list[str]] = key("mapping.", word_list, prefix=True,
                                        doc="mapping.<value> = channels for that value (required)")
    optional: dict[str, list[str]] = key("optional.", word_list, prefix=True,
                                         doc="optional.<value> = channels tried best effort")
    default: list[str] = key("default", word_list, [], doc="channels for events whose value has no mapping")

    def channel_references(self) -> list[tuple[str, list[str]]]:
        references = [("default", self.default)]
        references += [(f"mapping.{value}", names) for value, names in self.mapping.items()]
        references += [(f"optional.{value}", names) for value, names in self.optional.items()]
        return references


class MultiplexingSelector(ChannelSelector[MultiplexingConfig]):
    """Route by one header's value: `mapping.<value>`, else `default`; `optional.<value>` best effort."""

    def __init__(self, config: MultiplexingConfig, channels: dict[str, Channel]) -> None:
        super().__init__(config, channels)
        self.header = self.config.header
        self._routes: dict[str | None, tuple[list[Channel], list[Channel]]] = {}

    def _channels_for(self, value: str | None) -> tuple[list[Channel], list[Channel]]:
        cached = self._routes.get(value)
        if cached is None:
            mapping, optional = self.config.mapping, self.config.optional
            required_names = mapping.get(value) if value else None
            if not required_names:
                required_names = self.config.default
            optional_names = [n for n in optional.get(value, []) if n not in required_names] if value else []
            cached = (self._named(required_names), self._named(optional_names))
            if len(self._routes) < 10_000:  # header values come from clients: keep the cache bounded
                self._routes[value] = cached
        return cached

    def route(self, events: Sequence[Event]) -> tuple[list[Route], list[Route]]:
        required: dict[Channel, list[Event]] = {}
        optional: dict[Channel, list[Event]] = {}
        header = self.header
        for event in events:
            required_channels, optional_channels = self._channels_for(event.headers.get(header) or None)
            for channel in required_channels:
                required.setdefault(channel, []).append(event)
            for channel in optional_channels:
                optional.setdefault(channel, []).append(event)
        order = list(self.channels.values())
        return (
            sorted(required.items(), key=lambda route: order.index(route[0])),
            sorted(optional.items(), key=lambda route: order.index(route[0])),
        )


@dataclass(frozen=True)
class LoadBalancingConfig(SelectorKeys):
    policy: str = key("policy", one_of("round_robin", "random"), "round_robin")


class LoadBalancingSelector(ChannelSelector[LoadBalancingConfig]):
    """Each event to one channel, by round robin or at random (Flume 1.10+, FLUME-3412)."""

    def __init__(self, config: LoadBalancingConfig, channels: dict[str, Channel]) -> None:
        super().__init__(config, channels)
        self._all = list(channels.values())
        self._next = 0
        self._random = config.policy == "random"

    def route(self, events: Sequence[Event]) -> tuple[list[Route], list[Route]]:
        count = len(self._all)
        buckets: list[list[Event]] = [[] for _ in self._all]
        if self._random:
            for event in events:
                buckets[random.randrange(count)].append(event)
        else:
            start = self._next
            for offset, event in enumerate(events):
                buckets[(start + offset) % count].append(event)
            self._next = (start + len(events)) % count
        return [(c, b) for c, b in zip(self._all, buckets, strict=True) if b], []
