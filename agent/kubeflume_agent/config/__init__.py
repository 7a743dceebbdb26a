"""The config model, shared by the agent and the operator: one AgentConfig, two input formats."""

from kubeflume_agent.config.model import (
    AgentConfig,
    ChannelConfig,
    ComponentConfig,
    ConfigError,
    SinkConfig,
    SinkGroupConfig,
    SourceConfig,
)

__all__ = [
    "AgentConfig",
    "ChannelConfig",
    "ComponentConfig",
    "ConfigError",
    "SinkConfig",
    "SinkGroupConfig",
    "SourceConfig",
]
