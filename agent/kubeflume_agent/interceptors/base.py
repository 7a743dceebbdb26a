"""What every interceptor is: a batch in, the batch to pass on out; a config that cannot work refused before start."""

from __future__ import annotations

from typing import Any, TypeVar

from kubeflume_agent.config.keys import Config, Configurable, InvalidSetting
from kubeflume_agent.core.counters import Counters
from kubeflume_agent.core.event import Event

InterceptorConfigT = TypeVar("InterceptorConfigT", bound=Config)


class Interceptor(Configurable[InterceptorConfigT]):
    """Built from its typed config: `class StaticInterceptor(Interceptor[StaticConfig])`."""

    counters: Counters | None = None  # interceptors that count what they do show it under INTERCEPTOR.<source>.<name>

    def __init__(self, config: InterceptorConfigT) -> None:
        self.config = config

    async def start(self) -> None:
        """Called before the source starts: interceptors that keep state up to date start that here."""

    async def stop(self) -> None:
        """Called after the source stopped."""

    def intercept(self, events: list[Event]) -> list[Event]:
        """Return the batch to pass on: events may be edited in place, dropped, never added."""
        raise NotImplementedError



def validated_by_building(cls: type[Interceptor[Any]], config: Config) -> list[tuple[str, str]]:
    """config_problems for interceptors whose constructor compiles what it needs: a regex that
    does not compile is then a config error, found before the agent starts."""
    try:
        cls(config)
    except InvalidSetting as error:
        return error.problems
    return []
