"""What every interceptor is: a batch in, the batch to pass on out; settings refused before start."""

from __future__ import annotations

from kubeflume_agent.config.keys import Configurable, InvalidSetting, Settings
from kubeflume_agent.core.counters import Counters
from kubeflume_agent.core.event import Event


class Interceptor(Configurable):
    counters: Counters | None = None  # interceptors that count what they do show it under INTERCEPTOR.<source>.<name>

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def start(self) -> None:
        """Called before the source starts: interceptors that keep state up to date start that here."""

    async def stop(self) -> None:
        """Called after the source stopped."""

    def intercept(self, events: list[Event]) -> list[Event]:
        """Return the batch to pass on: events may be edited in place, dropped, never added."""
        raise NotImplementedError

    @classmethod
    def validate_settings(cls, settings: Settings) -> list[tuple[str, str]]:
        return []


def validated_by_building(cls, settings: Settings) -> list[tuple[str, str]]:
    """validate_settings for interceptors whose constructor compiles what it needs: a regex that
    does not compile is then a config error, found before the agent starts."""
    try:
        cls(settings)
    except InvalidSetting as error:
        return error.problems
    return []
