"""Interceptors: per-batch header and body rewriting and filtering, run in the listed order."""

from __future__ import annotations

from typing import ClassVar

from kubeflume_agent.config.keys import Key, Settings
from kubeflume_agent.event import Event


class Interceptor:
    keys: ClassVar[tuple[Key, ...]] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def intercept(self, events: list[Event]) -> list[Event]:
        """Return the batch to pass on: events may be edited in place, dropped, never added."""
        raise NotImplementedError

    @classmethod
    def validate_settings(cls, settings: Settings) -> list[tuple[str, str]]:
        return []
