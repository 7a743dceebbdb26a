"""validate(config): every problem of a config at once, each located and explained.

Checks the structure (what Flume's FlumeConfiguration checks: listed channels, a channel for every
source and sink, groups) and each component's keys against the typed config its class declares
(`config_class`), with that config's own checks across keys.
Flume drops broken components one by one and runs the rest; we refuse the whole config instead,
because a half-started pipeline silently loses the data of the dropped part.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubeflume_agent.config.keys import Config, Configurable
from kubeflume_agent.config.model import (
    SEVERITY_WARNING,
    AgentConfig,
    ComponentConfig,
    ConfigError,
    component_problems,
    resolve_component,
)
from kubeflume_agent.core.batches import batch_limit
from kubeflume_agent.core.channel import ChannelKeys
from kubeflume_agent.core.registry import UnknownType, lookup
from kubeflume_agent.selectors.builtin import SelectorKeys
from kubeflume_agent.sink_processors.builtin import ProcessorKeys


def validate(config: AgentConfig) -> list[ConfigError]:
    problems = list(config.notes)
    if problems and not (config.channels or config.sources or config.sinks):
        return problems  # nothing could be read: "lists no channels" would only repeat that
    if not config.channels:
        problems.append(ConfigError("agent", "channels", f"agent {config.name} lists no channels"))
    if not config.sources and not config.sinks:
        problems.append(ConfigError("agent", "", f"agent {config.name} has neither sources nor sinks"))
    capacities: dict[str, int] = {}
    for name, channel in config.channels.items():
        channel_config, found = _check_component("channel", f"channels.{name}", channel)
        problems += found
        if isinstance(channel_config, ChannelKeys):
            capacities[name] = channel_config.transaction_capacity
    for name, source in config.sources.items():
        problems += _check_source(config, name, source, capacities)
    for name, sink in config.sinks.items():
        problems += _check_sink(config, name, sink, capacities)
    problems += _check_groups(config)
    return problems



def config_errors(config: AgentConfig) -> list[ConfigError]:
    """The problems that stop an agent from running the config (warnings left out)."""
    return [problem for problem in validate(config) if problem.is_error]


def _check_component(kind: str, where: str, component: ComponentConfig, prefix: str = "",
                     sink_names: Sequence[str] = ()) -> tuple[Config | None, list[ConfigError]]:
    """(typed config or None, problems) for one component's type and keys.

    A config that resolves without errors is then checked across its keys (`config_problems`);
    a sink processor's also against its group's `sink_names`.
    """
    if not component.type:
        return None, [ConfigError(where, prefix + "type", f"no type given for this {kind}")]
    try:
        component_class: type[Configurable[Config]] = lookup(kind, component.type)
    except UnknownType as error:
        return None, [ConfigError(where, prefix + "type", str(error))]
    config, found = resolve_component(component_class, component.params)
    problems = component_problems(where, found, prefix)
    if not any(p.is_error for p in problems):
        extra = component_class.config_problems(config)
        if isinstance(config, ProcessorKeys):
            extra += config.group_problems(sink_names)
        problems += [ConfigError(where, prefix + key, message) for key, message in extra]
    return config, problems


def _batch_size_problem(where: str, config: Config, channel: str, capacities: dict[str, int]) -> list[ConfigError]:
    """A batch larger than the channel's transactionCapacity would be cut short (or refused): say so."""
    key, batch, capacity = config.batch_size_key(), config.batch_size_wanted(), capacities.get(channel)
    if key is None or batch is None or capacity is None or batch_limit(capacity, batch) == batch:
        return []
    return [ConfigError(where, key, f"{batch} exceeds the transactionCapacity ({capacity}) of channel "
                                    f"{channel}; lower it or raise the channel's transactionCapacity")]


def _check_source(config: AgentConfig, name: str, source, capacities) -> list[ConfigError]:
    where = f"sources.{name}"
    source_config, problems = _check_component("source", where, source)
    if not source.channels:
        problems.append(ConfigError(where, "channels", "this source has no channel to write to"))
    for channel in source.channels:
        if channel not in config.channels:
            problems.append(ConfigError(where, "channels", f"channel {channel!r} is not defined in "
                                                           f"{config.name}.channels"))
        elif source_config is not None:
            problems += _batch_size_problem(where, source_config, channel, capacities)
    problems += _check_selector(where, source)
    for interceptor in source.interceptors:
        problems += _check_component("interceptor", where, interceptor,
                                     prefix=f"interceptors.{interceptor.name}.")[1]
    return problems


def _check_selector(where: str, source) -> list[ConfigError]:
    params = dict(source.selector)
    selector = ComponentConfig("selector", params.pop("type", "replicating"), params)
    selector_config, problems = _check_component("selector", where, selector, prefix="selector.")
    if not isinstance(selector_config, SelectorKeys):
        return problems
    for key, names in selector_config.channel_references():
        for channel in names:
            if channel not in source.channels:
                message = f"channel {channel!r} is not one of this source's channels ({' '.join(source.channels)})"
                problems.append(ConfigError(where, f"selector.{key}", message))
    return problems


def _check_sink(config: AgentConfig, name: str, sink, capacities) -> list[ConfigError]:
    where = f"sinks.{name}"
    sink_config, problems = _check_component("sink", where, sink)
    channels = sink.channel.split()
    if not channels:
        problems.append(ConfigError(where, "channel", "this sink has no channel to read from"))
    elif len(channels) > 1:
        problems.append(ConfigError(where, "channel", f"a sink reads from exactly one channel, got "
                                                      f"{len(channels)}: {sink.channel}"))
    elif channels[0] not in config.channels:
        problems.append(ConfigError(where, "channel", f"channel {channels[0]!r} is not defined in "
                                                      f"{config.name}.channels"))
    elif sink_config is not None:
        problems += _batch_size_problem(where, sink_config, channels[0], capacities)
    return problems


def _check_groups(config: AgentConfig) -> list[ConfigError]:
    problems: list[ConfigError] = []
    owner: dict[str, str] = {}
    for name, group in config.sinkgroups.items():
        where = f"sinkgroups.{name}"
        if not group.sinks:
            problems.append(ConfigError(where, "sinks", "this sink group lists no sinks"))
        for sink in group.sinks:
            if sink not in config.sinks:
                problems.append(ConfigError(where, "sinks", f"sink {sink!r} is not defined in {config.name}.sinks"))
            elif sink in owner:
                problems.append(ConfigError(where, "sinks", f"sink {sink!r} already belongs to sink group "
                                                            f"{owner[sink]}; a sink may be in one group only"))
            else:
                owner[sink] = name
        params = dict(group.processor)
        processor = ComponentConfig(name, params.pop("type", "default"), params)
        problems += _check_component("processor", where, processor, prefix="processor.",
                                     sink_names=group.sinks)[1]
        if processor.type.lower() == "default" and len(group.sinks) > 1:
            problems.append(ConfigError(where, "processor.type", "the default processor drives one sink; use "
                                                                  "failover or load_balance for several",
                                        SEVERITY_WARNING))
    return problems
