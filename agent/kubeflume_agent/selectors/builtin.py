"""Channel selectors: which channels each event goes to, required or optional (Flume's a.4/c.2).

A selector turns a batch into routes: (channel, the events for it). Required routes are committed
one after another and a failure fails the batch; optional routes are best effort.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from kubeflume_agent.config.keys import Config, Configurable, Settings, key, one_of, word_list
from kubeflume_agent.core.channel import Channel
from kubeflume_agent.core.event import Event

Route = tuple[Channel, list[Event]]


class ChannelSelector(Configurable):
    """Picks, for each event of a batch, the channels of its source that receive it."""

    def __init__(self, settings: Settings, channels: dict[str, Channel]) -> None:
        self.settings = settings
        self.channels = channels

    def route(self, events: Sequence[Event]) -> tuple[list[Route], list[Route]]:
        """(required routes, optional routes) for a batch, channels in configuration order."""
        raise NotImplementedError

    @classmethod
    def channel_references(cls, settings: Settings) -> list[tuple[str, list[str]]]:
        """(key, channel names) pairs the selector mentions, so validation can check them."""
        return []

    def _named(self, names: Sequence[str]) -> list[Channel]:
        return [self.channels[name] for name in names]


@dataclass(frozen=True)
class ReplicatingConfig(Config):
    optional: list[str] = key("optional", word_list, [], doc="channels whose write failures are ignored")


class ReplicatingSelector(ChannelSelector):
    """Every event to every channel; channels in `optional` may fail without failing the batch."""

    config_class = ReplicatingConfig

    def __init__(self, settings: Settings, channels: dict[str, Channel]) -> None:
        super().__init__(settings, channels)
        optional = set(ReplicatingConfig.from_settings(settings).optional)
        self.required = [c for name, c in channels.items() if name not in optional]
        self.optional = [c for name, c in channels.items() if name in optional]

    def route(self, events: Sequence[Event]) -> tuple[list[Route], list[Route]]:
        batch = events if isinstance(events, list) else list(events)
        return [(c, batch) for c in self.required], [(c, batch) for c in self.optional]

    @classmethod
    def channel_references(cls, settings: Settings) -> list[tuple[str, list[str]]]:
        return [("optional", ReplicatingConfig.from_settings(settings).optional)]


@dataclass(frozen=True)
class MultiplexingConfig(Config):
    header: str = key("header", str, "flume.selector.header", doc="the header whose value picks the channels")
    mapping: dict[str, list[str]] = key("mapping.", word_list, prefix=True,
                                        doc="mapping.<value> = channels for that value (required)")
    optional: dict[str, list[str]] = key("optional.", word_list, prefix=True,
                                         doc="optional.<value> = channels tried best effort")
    default: list[str] = key("default", word_list, [], doc="channels for events whose value has no mapping")


class MultiplexingSelector(ChannelSelector):
    """Route by one header's value: `mapping.<value>`, else `default`; `optional.<value>` best effort."""

    config_class = MultiplexingConfig

    def __init__(self, settings: Settings, channels: dict[str, Channel]) -> None:
        super().__init__(settings, channels)
        self.config = MultiplexingConfig.from_settings(settings)
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

    @classmethod
    def channel_references(cls, settings: Settings) -> list[tuple[str, list[str]]]:
        config = MultiplexingConfig.from_settings(settings)
        references = [("default", config.default)]
        references += [(f"mapping.{value}", names) for value, names in config.mapping.items()]
        references += [(f"optional.{value}", names) for value, names in config.optional.items()]
        return references


@dataclass(frozen=True)
class LoadBalancingConfig(Config):
    policy: str = key("policy", one_of("round_robin", "random"), "round_robin")


class LoadBalancingSelector(ChannelSelector):
    """Each event to one channel, by round robin or at random (Flume 1.10+, FLUME-3412)."""

    config_class = LoadBalancingConfig

    def __init__(self, settings: Settings, channels: dict[str, Channel]) -> None:
        super().__init__(settings, channels)
        self._all = list(channels.values())
        self._next = 0
        self._random = LoadBalancingConfig.from_settings(settings).policy == "random"

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
