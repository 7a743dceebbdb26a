"""The file channel's queue: record pointers, and beside each one its event while it is in memory.

Two ChunkedFifos kept in lockstep (every chunk goes into both with the same length, every pop and
push-back takes the same count from both): 64-bit pointers in arrays (what checkpoints save), and
lists holding each queued event, or None where the event is only on disk (not cached, or replayed).
A batch of takes is then two slices instead of a dict look-up per event. A replayed queue is cut
into chunks of `CHUNK`, so putting a rolled-back take back at the head never copies more than one
chunk.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from itertools import repeat

from kubeflume_agent.channels.fifo import ChunkedFifo
from kubeflume_agent.event import Event

CHUNK = 8192


def new_pointers(values: Iterable[int] = ()) -> array:
    return array("q", values)


class PointerQueue:
    __slots__ = ("_events", "_pointers")

    def __init__(self, pointers: Iterable[int] = ()) -> None:
        """A queue of `pointers` whose events are all on disk only (a replayed channel)."""
        self._pointers: ChunkedFifo[array] = ChunkedFifo(new_pointers)
        self._events: ChunkedFifo[list[Event | None]] = ChunkedFifo(list)
        values = pointers if isinstance(pointers, array) else new_pointers(pointers)
        for start in range(0, len(values), CHUNK):
            chunk = values[start:start + CHUNK]
            self.append(chunk, [*repeat(None, len(chunk))])

    def __len__(self) -> int:
        return len(self._pointers)

    def append(self, pointers: array, events: list[Event | None]) -> None:
        """Queue a commit's pointers and, at the same places, their events (None: read from disk)."""
        self._pointers.append_chunk(pointers)
        self._events.append_chunk(events)

    def pop_front(self, count: int) -> tuple[array, list[Event | None]]:
        return self._pointers.pop_front(count), self._events.pop_front(count)

    def push_front(self, pointers: array, events: list[Event | None]) -> None:
        """Put a rolled-back take back at the head, in its order."""
        self._pointers.push_front(pointers)
        self._events.push_front(events)

    def snapshot(self) -> array:
        """Every queued pointer, head first, as one array (for a checkpoint)."""
        return self._pointers.snapshot()
