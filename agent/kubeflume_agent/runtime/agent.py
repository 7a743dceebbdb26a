"""The agent: builds components from an AgentConfig, starts and stops them, reloads on change.

Start order is channels, sinks, sources (so nothing is accepted before it can be stored and
drained); stop order is the reverse, and sinks get `drain_timeout` seconds to empty memory
channels before they stop, because a memory channel's content dies with the process.
A reload replaces only what changed: a source or sink restarts when its own settings changed or
a channel it uses was replaced; a channel whose settings are unchanged keeps its events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubeflume_agent.config.keys import Config
from kubeflume_agent.config.model import AgentConfig, ConfigError, resolve_component
from kubeflume_agent.config.validation import config_errors
from kubeflume_agent.core.channel import Channel
from kubeflume_agent.core.counters import Counters
from kubeflume_agent.core.registry import lookup
from kubeflume_agent.runtime.channel_processor import ChannelProcessor
from kubeflume_agent.runtime.runners import PollableSourceRunner, SinkRunner
from kubeflume_agent.sinks.base import Sink
from kubeflume_agent.sources.base import PollableSource, Source

if TYPE_CHECKING:
    from kubeflume_agent.runtime.metrics import MetricsServer

log = logging.getLogger(__name__)


class InvalidConfig(ValueError):
    """A config with errors: the agent does not start it (or keeps the running one on reload)."""

    def __init__(self, problems: list[ConfigError]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _configured(kind: str, type_name: str, params: dict[str, str]) -> tuple[type, Config]:
    """A component class and the typed config it is built from."""
    component_class = lookup(kind, type_name)
    return component_class, resolve_component(component_class, params)[0]


@dataclass
class _Group:
    """One sink runner: a sink group, or a lone sink with the default processor."""

    name: str
    sinks: list[str]
    runner: SinkRunner


class Agent:
    def __init__(self, config: AgentConfig, *, metrics_host: str = "0.0.0.0", metrics_port: int | None = None,
                 drain_timeout: float = 5.0) -> None:
        self.config = config
        self.drain_timeout = drain_timeout
        self.channels: dict[str, Channel] = {}
        self.sources: dict[str, Source] = {}
        self.sinks: dict[str, Sink] = {}
        self._source_runners: dict[str, PollableSourceRunner] = {}
        self._processors: dict[str, ChannelProcessor] = {}  # each source's, with its interceptors
        self._groups: dict[str, _Group] = {}
        self._metrics_host = metrics_host
        self._metrics_port = metrics_port
        self.metrics_server: MetricsServer | None = None
        self.ready = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        errors = config_errors(self.config)
        if errors:
            raise InvalidConfig(errors)
        if self._metrics_port is not None:
            from kubeflume_agent.runtime.metrics import MetricsServer  # prometheus only when serving

            self.metrics_server = MetricsServer(self.counters, lambda: self.ready, self.config.name,
                                                self._metrics_host, self._metrics_port)
            await self.metrics_server.start()
        await self._start_components(self.config, set(self.config.channels), set(self.config.sinks),
                                     set(self.config.sources))
        self.ready = True
        log.info("agent %s started: %d sources, %d channels, %d sinks", self.config.name,
                 len(self.sources), len(self.channels), len(self.sinks))

    async def stop(self) -> None:
        self.ready = False
        await self._stop_components(set(self.sources), set(self.sinks), set(self.channels), drain=True)
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        log.info("agent %s stopped", self.config.name)

    async def stop_sources(self) -> None:
        """The first half of a stop (a pod's preStop asks for it): nothing new comes in, the pod stops
        being ready, and the sinks go on emptying the channels until `stop()`."""
        self.ready = False
        await self._stop_components(set(self.sources), set(), set(), drain=False)
        log.info("agent %s: sources stopped; the sinks go on draining the channels", self.config.name)

    async def reload(self, new: AgentConfig) -> None:
        """Switch to `new`, restarting only what changed. Raises InvalidConfig and changes nothing
        if `new` has errors."""
        errors = config_errors(new)
        if errors:
            raise InvalidConfig(errors)
        old = self.config
        channels = {n for n in old.channels | new.channels.keys()
                    if old.channels.get(n) != new.channels.get(n)}
        sinks = {n for n in old.sinks | new.sinks.keys()
                 if old.sinks.get(n) != new.sinks.get(n) or (n in new.sinks and new.sinks[n].channel in channels)}
        sinks |= {s for group in old.sinkgroups | new.sinkgroups.keys()
                  if old.sinkgroups.get(group) != new.sinkgroups.get(group)
                  for s in _group_sinks(old, group) | _group_sinks(new, group)}
        sinks |= {s for group in self._groups.values() if set(group.sinks) & sinks for s in group.sinks}
        sources = {n for n in old.sources | new.sources.keys()
                   if old.sources.get(n) != new.sources.get(n)
                   or (n in new.sources and set(new.sources[n].channels) & channels)}
        log.info("reloading agent %s: restarting sources %s, sinks %s, channels %s", new.name,
                 sorted(sources) or "-", sorted(sinks) or "-", sorted(channels) or "-")
        self.ready = False
        await self._stop_components(sources & self.sources.keys(), sinks & self.sinks.keys(),
                                    channels & self.channels.keys(), drain=False)
        self.config = new
        await self._start_components(new, channels & new.channels.keys(), sinks & new.sinks.keys(),
                                     sources & new.sources.keys())
        self.ready = True

    def counters(self) -> dict[str, Counters]:
        """Every component's counters under Flume's metric names (`SOURCE.r1`, `CHANNEL.c1`...)."""
        found: dict[str, Counters] = {}
        for components in (self.sources, self.channels, self.sinks):
            for name, component in components.items():
                found[f"{component.counters.TYPE}.{name}"] = component.counters
        for name, processor in self._processors.items():
            specs = self.config.sources[name].interceptors  # in the processor's order
            for spec, interceptor in zip(specs, processor.interceptors, strict=False):
                if interceptor.counters is not None:
                    found[f"{interceptor.counters.TYPE}.{name}.{spec.name}"] = interceptor.counters
        return found

    def sink_errors(self) -> dict[str, str]:
        """The latest failure of each sink runner (a group or a lone sink) that failed so far."""
        return {name: group.runner.last_error for name, group in self._groups.items() if group.runner.last_error}

    # --- building ----------------------------------------------------------------------------

    async def _start_components(self, config: AgentConfig, channels: set[str], sinks: set[str],
                                sources: set[str]) -> None:
        for name in channels:
            spec = config.channels[name]
            channel_class, channel_config = _configured("channel", spec.type, spec.params)
            channel = channel_class(name, channel_config)
            await channel.start()
            self.channels[name] = channel
        for name in sinks:
            sink_spec = config.sinks[name]
            sink_class, sink_config = _configured("sink", sink_spec.type, sink_spec.params)
            self.sinks[name] = sink_class(name, sink_config, self.channels[sink_spec.channel.strip()])
        await self._start_sink_runners(config, sinks)
        for name in sources:
            await self._start_source(config, name)

    async def _start_sink_runners(self, config: AgentConfig, sinks: set[str]) -> None:
        grouped = {sink for group in config.sinkgroups.values() for sink in group.sinks}
        plans = [(group.name, group.sinks, group.processor) for group in config.sinkgroups.values()
                 if set(group.sinks) & sinks]
        plans += [(sink, [sink], {}) for sink in config.sinks if sink in sinks and sink not in grouped]
        for name, members, processor_params in plans:
            params = dict(processor_params)
            processor_class, processor_config = _configured("processor", params.pop("type", "default"), params)
            group_sinks = [self.sinks[s] for s in members]
            processor = processor_class(processor_config, group_sinks)
            await processor.start()
            runner = SinkRunner(processor, list({id(s.channel): s.channel for s in group_sinks}.values()))
            runner.start()
            self._groups[name] = _Group(name, [s.name for s in group_sinks], runner)

    async def _start_source(self, config: AgentConfig, name: str) -> None:
        spec = config.sources[name]
        selector_params = dict(spec.selector)
        selector_class, selector_config = _configured("selector", selector_params.pop("type", "replicating"),
                                                      selector_params)
        selector = selector_class(selector_config, {c: self.channels[c] for c in spec.channels})
        interceptors = []
        for interceptor in spec.interceptors:
            interceptor_class, interceptor_config = _configured("interceptor", interceptor.type, interceptor.params)
            interceptors.append(interceptor_class(interceptor_config))
        source_class, source_config = _configured("source", spec.type, spec.params)
        processor = ChannelProcessor(selector, interceptors)
        source = source_class(name, source_config, processor)
        await processor.start()
        try:
            await source.start()
        except BaseException:
            await processor.stop()
            raise
        self._processors[name] = processor
        self.sources[name] = source
        if isinstance(source, PollableSource):
            runner = PollableSourceRunner(source)
            runner.start()
            self._source_runners[name] = runner

    async def _stop_components(self, sources: set[str], sinks: set[str], channels: set[str], *,
                               drain: bool) -> None:
        """Stop sources, then sink runners, then channels. With `drain`, and for every channel
        being replaced, sinks first get `drain_timeout` seconds to empty their channels."""
        for name in sources:
            runner = self._source_runners.pop(name, None)
            if runner is not None:
                await runner.stop()
            source = self.sources.pop(name)
            await source.stop()
            await self._processors.pop(name).stop()
        for group_name, group in list(self._groups.items()):
            if not set(group.sinks) & sinks:
                continue
            must_drain = drain or any(c.name in channels for c in group.runner.channels)
            if must_drain and not await group.runner.drain(self.drain_timeout):
                log.warning("sink runner %s stopped before its channel drained", group_name)
            await group.runner.stop()
            await group.runner.processor.stop()
            for sink in group.sinks:
                self.sinks.pop(sink, None)
            del self._groups[group_name]
        for name in channels:
            channel = self.channels.pop(name)
            if channel.size:
                log.warning("channel %s stops holding %d events", name, channel.size)
            await channel.stop()


def _group_sinks(config: AgentConfig, group: str) -> set[str]:
    found = config.sinkgroups.get(group)
    return set(found.sinks) if found else set()
