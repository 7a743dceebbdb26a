"""FlumeAgent manifests (the YAML one would `kubectl apply`) -> AgentConfig.

The spec holds the pipeline either as `config:` (a flume.conf, unchanged) or structured:

    sources:
      r1: {type: netcat, channels: [c1], bind: 0.0.0.0, port: 44444,
           selector: {type: multiplexing, header: state, mapping: {CA: c1}},
           interceptors: [{name: ts, type: timestamp}]}
    channels: {c1: {type: memory, capacity: 10000}}
    sinks:    {k1: {type: file_roll, channel: c1, sink: {directory: /data}}}
    sinkGroups: {g1: {sinks: [k1, k2], processor: {type: failover, priority: {k1: 10}}}}

Nested maps are Flume's dotted keys written as YAML (`sink: {directory: x}` is `sink.directory = x`),
lists are Flume's space-separated lists, and numbers and booleans become the strings Flume reads.
Interceptors are a list because their order matters and Kubernetes does not keep map order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubeflume_agent.config.model import (
    AgentConfig,
    ChannelConfig,
    ComponentConfig,
    ConfigError,
    SinkConfig,
    SinkGroupConfig,
    SourceConfig,
)
from kubeflume_agent.config.properties import ConfigParseError, parse_properties

DEFAULT_AGENT_NAME = "agent"
PIPELINE_FIELDS = ("sources", "channels", "sinks", "sinkGroups")


def spec_of(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The spec of a FlumeAgent object, or `doc` itself when it already is a spec."""
    if "kind" in doc or "apiVersion" in doc or isinstance(doc.get("spec"), Mapping):
        spec = doc.get("spec")
        return spec if isinstance(spec, Mapping) else {}
    return doc


def parse_manifest(doc: Mapping[str, Any]) -> AgentConfig:
    """An AgentConfig from a FlumeAgent (or its spec). Shape problems become notes for validate()."""
    spec = spec_of(doc)
    agent_name = spec.get("agentName")
    if spec.get("config") is not None:
        return _from_config_string(spec, agent_name)
    config = AgentConfig(str(agent_name or DEFAULT_AGENT_NAME))
    for field in PIPELINE_FIELDS:
        section = spec.get(field) or {}
        if not isinstance(section, Mapping):
            config.notes.append(ConfigError("spec", field, f"must be a map of component name to settings, "
                                                           f"got {type(section).__name__}"))
            continue
        for name, body in section.items():
            if not isinstance(body, Mapping):
                config.notes.append(ConfigError(f"{field}.{name}", "", "must be a map of settings"))
                continue
            _add_component(config, field, str(name), body)
    return config


def _from_config_string(spec: Mapping[str, Any], agent_name: str | None) -> AgentConfig:
    stray = [field for field in PIPELINE_FIELDS if spec.get(field)]
    try:
        config = parse_properties(str(spec["config"]), agent_name, environ={})
    except ConfigParseError as error:
        config = AgentConfig(str(agent_name or DEFAULT_AGENT_NAME))
        config.notes.append(ConfigError("spec", "config", str(error)))
    for field in stray:
        config.notes.append(ConfigError("spec", field, "give the pipeline either as config: or as "
                                                       "sources/channels/sinks, not both"))
    return config


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """YAML values -> Flume's dotted string keys (`{a: {b: 1}}` -> `{"a.b": "1"}`)."""
    if isinstance(value, Mapping):
        flat: dict[str, str] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: to_flume_string(value)}


def to_flume_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return " ".join(to_flume_string(item) for item in value)
    return "" if value is None else str(value)


def _add_component(config: AgentConfig, field: str, name: str, body: Mapping[str, Any]) -> None:
    body = dict(body)
    component_type = to_flume_string(body.pop("type", ""))
    if field == "sources":
        channels = to_flume_string(body.pop("channels", "")).split()
        selector = flatten(body.pop("selector", {}) or {})
        interceptors = _interceptors(config, name, body.pop("interceptors", []) or [])
        config.sources[name] = SourceConfig(name, component_type, flatten(body), channels, selector, interceptors)
    elif field == "channels":
        config.channels[name] = ChannelConfig(name, component_type, flatten(body))
    elif field == "sinks":
        channel = to_flume_string(body.pop("channel", ""))
        config.sinks[name] = SinkConfig(name, component_type, flatten(body), channel)
    else:
        sinks = to_flume_string(body.pop("sinks", "")).split()
        processor = flatten(body.pop("processor", {}) or {})
        for key in body:
            config.notes.append(ConfigError(f"sinkgroups.{name}", key, "unknown key: a sink group has only "
                                                                        "sinks and processor"))
        config.sinkgroups[name] = SinkGroupConfig(name, sinks, processor)


def _interceptors(config: AgentConfig, source: str, items: Any) -> list[ComponentConfig]:
    if not isinstance(items, list):
        config.notes.append(ConfigError(f"sources.{source}", "interceptors",
                                        "must be a list of {name, type, ...}: their order matters"))
        return []
    interceptors = []
    for position, item in enumerate(items):
        if not isinstance(item, Mapping) or not item.get("name"):
            config.notes.append(ConfigError(f"sources.{source}", f"interceptors[{position}]",
                                            "each interceptor needs a name and a type"))
            continue
        body = dict(item)
        name = str(body.pop("name"))
        interceptors.append(ComponentConfig(name, to_flume_string(body.pop("type", "")), flatten(body)))
    return interceptors
