"""The unit of data that flows through an agent, as in Flume: string headers and a byte body."""

from __future__ import annotations


class Event:
    """A Flume event. `__slots__` keeps creation cheap: sources make millions of these a second."""

    __slots__ = ("body", "headers")

    def __init__(self, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.body = body
        self.headers = {} if headers is None else headers

    def __repr__(self) -> str:
        return f"Event(headers={self.headers!r}, body={self.body[:32]!r}{'...' if len(self.body) > 32 else ''})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self.body == other.body and self.headers == other.headers

    __hash__ = None  # type: ignore[assignment]  # events are mutable (interceptors edit headers)
