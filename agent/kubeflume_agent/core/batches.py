"""Cutting a run of events (or lines, or datagrams) into batches a channel transaction can hold.

Every place that cuts a batch goes through here: sources cutting what they read (`batches`, with
`batch_limit` for their size), the UDP sources' queue of datagrams (`take_batch`), a sink's take
from its transaction, and validation's check of batchSize against transactionCapacity.
"""

from __future__ import annotations

from collections import deque
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
    """The size of a batch: what was `wanted` (a batchSize key; None: no wish), never more than the
    channel side can hold (the channels' transactionCapacity, the room left in a transaction)."""
    return min(channel_limit, wanted or channel_limit)


def take_batch(queue: deque[T], size: int) -> list[T]:
    """The first `size` items of `queue` (fewer if fewer wait), removed: a cost per item taken,
    whatever the backlog behind them (slicing a list would copy the whole backlog each batch)."""
    popleft = queue.popleft
    return [popleft() for _ in range(min(size, len(queue)))]
