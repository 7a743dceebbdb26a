"""A FIFO kept as a deque of chunks with an offset into the first one.

Channels move batches, not single events: a committed batch goes in as one chunk, and a take of
n items costs one step per chunk it touches (a slice, or the whole chunk handed over as it is)
instead of one Python operation per item. Chunks are lists (the memory channel's events) or
arrays (the file channel's record pointers).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, MutableSequence
from typing import Generic, TypeVar, cast

Chunk = TypeVar("Chunk", bound=MutableSequence)


class ChunkedFifo(Generic[Chunk]):
    __slots__ = ("_chunks", "_head", "_new_chunk", "length")

    def __init__(self, new_chunk: Callable[[], Chunk]) -> None:
        self._chunks: deque[Chunk] = deque()
        self._head = 0  # index of the first live item in the first chunk
        # how many items are queued: read by the channels on every commit, where len() would
        # cost a Python call to __len__ (set only by this class)
        self.length = 0
        self._new_chunk = new_chunk

    def __len__(self) -> int:
        return self.length

    def append_chunk(self, chunk: Chunk) -> None:
        """Queue `chunk` as it is: the FIFO owns it from now on."""
        if chunk:
            self._chunks.append(chunk)
            self.length += len(chunk)

    def pop_front(self, count: int) -> Chunk:
        """Up to `count` items from the head, in order."""
        chunks = self._chunks
        whole_first_chunk = chunks and not self._head and len(chunks[0]) <= count
        taken = chunks.popleft() if whole_first_chunk else self._new_chunk()  # whole batches: no copy
        while len(taken) < count and chunks:
            chunk, head = chunks[0], self._head
            end = min(len(chunk), head + count - len(taken))
            taken.extend(chunk[head:end])
            if end == len(chunk):
                chunks.popleft()
                self._head = 0
            else:
                self._head = end
        self.length -= len(taken)
        return taken

    def push_front(self, items: Chunk) -> None:
        """Put items back at the head, in their order (a rolled-back take)."""
        if not items:
            return
        if self._head:
            self._chunks[0] = cast(Chunk, self._chunks[0][self._head:])  # a slice of a list is a list
            self._head = 0
        self._chunks.appendleft(items)
        self.length += len(items)

    def snapshot(self) -> Chunk:
        """Every queued item, head first, as one chunk."""
        values = self._new_chunk()
        for index, chunk in enumerate(self._chunks):
            values.extend(chunk[self._head:] if index == 0 else chunk)
        return values
