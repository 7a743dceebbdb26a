"""The one way the operator reports a problem: a field path in the manifest and a message.

It is the agent's own `ConfigError` (so `kubeflume validate` prints agent and operator problems
alike) with the whole path as its location: `spec.sources.r1.type`, `spec.files[0].name`.
"""

from __future__ import annotations

from collections.abc import Iterable

from kubeflume_agent.config.model import SEVERITY_ERROR, ConfigError


def at(path: str, message: str, severity: str = SEVERITY_ERROR) -> ConfigError:
    """A problem at a manifest field path."""
    return ConfigError(path, "", message, severity)


def where(problem: ConfigError) -> str:
    return f"{problem.component}.{problem.key}" if problem.key else problem.component


def describe(problem: ConfigError) -> str:
    """`path: message`, the way a condition, an Event or a status says it."""
    return f"{where(problem)}: {problem.message}"


def describe_all(problems: Iterable[ConfigError]) -> str:
    return "; ".join(describe(problem) for problem in problems)
