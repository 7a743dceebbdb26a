"""Cutting a run of events (or lines, or datagrams) into batches a channel transaction can hold."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in consecutive slices of at most `size`; the sequence itself when it fits (no copy)."""
    if len(items) <= size:
        if items:
            yield items
        return
    for start in range(0, len(items), size):
        yield items[start:start + size]


def batch_limit(channel_limit: int, wanted: int | None = None) -> int:
    """A source's batch size: what it `wanted` (its batchSize key), never more than its channels hold."""
    return min(channel_limit, wanted or channel_limit)
