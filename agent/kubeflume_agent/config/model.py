"""AgentConfig: one agent's sources, channels, sinks and sink groups, whatever format it came from.

Both input formats (Flume properties files and FlumeAgent manifests) parse into this model; it is
plain data, and the modules above it work on it: `properties.flume_conf()` renders it back to a
flume.conf deterministically (the operator hashes what it deploys with `properties.fingerprint()`),
`validation.validate()` checks every component's keys and returns every problem at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubeflume_agent.config.keys import Config, Problem, resolve

SEVERITY_ERROR = "error"
SEVERITY_WARNING = "warning"


@dataclass(frozen=True)
class ConfigError:
    """One problem in a config, located as precisely as a person needs to fix it."""

    component: str  # "sources.r1", "sinks.k1", "channels.c1", "sinkgroups.g1", or "agent"
    key: str
    message: str
    severity: str = SEVERITY_ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == SEVERITY_ERROR

    def __str__(self) -> str:
        where = f"{self.component}.{self.key}" if self.key else self.component
        return f"{self.severity}: {where}: {self.message}"


@dataclass
class ComponentConfig:
    """A named component: its `type` and its other keys, exactly as written (strings)."""

    name: str
    type: str = ""
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class ChannelConfig(ComponentConfig):
    pass


@dataclass
class SourceConfig(ComponentConfig):
    channels: list[str] = field(default_factory=list)
    selector: dict[str, str] = field(default_factory=dict)  # keys below `selector.`, with `type`
    interceptors: list[ComponentConfig] = field(default_factory=list)


@dataclass
class SinkConfig(ComponentConfig):
    channel: str = ""


@dataclass
class SinkGroupConfig:
    name: str
    sinks: list[str] = field(default_factory=list)
    processor: dict[str, str] = field(default_factory=dict)  # keys below `processor.`, with `type`


@dataclass
class AgentConfig:
    """One agent. Dicts keep the order in which components were declared."""

    name: str
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    channels: dict[str, ChannelConfig] = field(default_factory=dict)
    sinks: dict[str, SinkConfig] = field(default_factory=dict)
    sinkgroups: dict[str, SinkGroupConfig] = field(default_factory=dict)
    # Problems found while parsing (keys that fit nowhere, a manifest field of the wrong shape);
    # validate() reports them along with everything else.
    notes: list[ConfigError] = field(default_factory=list)


def component_problems(component: str, problems: list[Problem], prefix: str = "") -> list[ConfigError]:
    """Locate key-level problems inside a component."""
    return [ConfigError(component, prefix + p.key, p.message, p.severity) for p in problems]


def resolve_component(component_class: type, params: dict[str, str]) -> tuple[Config, list[Problem]]:
    """The typed config of a component class (its `config_class`, see config.keys) from its keys as written."""
    return resolve(getattr(component_class, "config_class", Config), params)
