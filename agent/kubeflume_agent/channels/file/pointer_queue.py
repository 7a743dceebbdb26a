"""The file channel's queue: record pointers, and beside each one its event while it is in memory.

Three ChunkedFifos kept in lockstep (every chunk goes into each with the same length, every pop and
push-back takes the same count from each): 64-bit pointers in arrays (what checkpoints save),
lists holding each queued event, or None where the event is only on disk (not cached, or
replayed), and the body size of each event held in memory (0 for the others), so the channel
can count its cache's bytes without touching the events. A batch of takes is then three slices
instead of a look-up per event. A replayed queue is cut
into chunks of `CHUNK`, so putting a rolled-back take back at the head never copies more than one
chunk.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from itertools import repeat

from kubeflume_agent.channels.fifo import ChunkedFifo
from kubeflume_agent.core.event import Event

CHUNK = 8192


def new_pointers(values: Iterable[int] = ()) -> array:
    return array("q", values)


def new_sizes(values: Iterable[int] = ()) -> array:
    return array("I", values)


def no_sizes(count: int) -> array:
    return array("I", bytes(4 * count))


class PointerQueue:
    __slots__ = ("_events", "_pointers", "_sizes")

    def __init__(self, pointers: Iterable[int] = ()) -> None:
        """A queue of `pointers` whose events are all on disk only (a replayed channel)."""
        self._pointers: ChunkedFifo[array] = ChunkedFifo(new_pointers)
        self._events: ChunkedFifo[list[Event | None]] = ChunkedFifo(list)
        self._sizes: ChunkedFifo[array] = ChunkedFifo(new_sizes)
        values = pointers if isinstance(pointers, array) else new_pointers(pointers)
        for start in range(0, len(values), CHUNK):
            chunk = values[start:start + CHUNK]
            self.append(chunk, [*repeat(None, len(chunk))], no_sizes(len(chunk)))

    def __len__(self) -> int:
        return len(self._pointers)

    def append(self, pointers: array, events: list[Event | None], sizes: array) -> None:
        """Queue a commit's pointers and, at the same places, their events (None: read from disk)
        and the body sizes of those held."""
        self._pointers.append_chunk(pointers)
        self._events.append_chunk(events)
        self._sizes.append_chunk(sizes)

    def pop_front(self, count: int) -> tuple[array, list[Event | None], array]:
        return self._pointers.pop_front(count), self._events.pop_front(count), self._sizes.pop_front(count)

    def push_front(self, pointers: array, events: list[Event | None], sizes: array) -> None:
        """Put a rolled-back take back at the head, in its order."""
        self._pointers.push_front(pointers)
        self._events.push_front(events)
        self._sizes.push_front(sizes)

    def snapshot(self) -> array:
        """Every queued pointer, head first, as one array (for a checkpoint)."""
        return self._pointers.snapshot()
