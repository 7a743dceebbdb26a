"""Reading length-prefixed frames off a stream, with a bound on what one client may make us hold.

Thrift's framed transport and the Avro IPC Netty framing both start a message with big-endian
32-bit lengths; a hostile or broken client can claim any length, so every read checks the claim
against a limit before allocating anything.

A frame within its byte limit can still decode into far more objects than its size suggests (a
16 MB Avro batch of empty events is 8 million dicts, gigabytes of memory), so decoders also run
on a budget of reads (`decode_budget`): every decoded value costs at least one read of the
message, and a message needing more is refused before it is fully built.
"""

from __future__ import annotations

import asyncio
import struct
from typing import ClassVar, Generic, TypeVar

_UINT32 = struct.Struct(">I")
_INT32 = struct.Struct(">i")
M = TypeVar("M")


class FrameError(ValueError):
    """The peer sent a frame we refuse to read (too large, negative length, bad header).

    The connection that sent it is closed; the rest of the server keeps serving.
    """


class DecodeBudgetExceeded(FrameError):
    """A message decodes into more values than its call may carry (see `decode_budget`)."""


# Reads a decoder makes per event: about 4 per header plus a few for the event itself, so an
# event may carry some 14 headers on average before a full batch exhausts the budget.
READS_PER_EVENT = 64


def decode_budget(max_events: int) -> int:
    """The reads one call of at most `max_events` events may take to decode."""
    return READS_PER_EVENT * max_events


def budget_exceeded(budget: int) -> DecodeBudgetExceeded:
    return DecodeBudgetExceeded(
        f"message decodes into more values than {budget // READS_PER_EVENT} events may carry "
        f"({budget} reads); raise max-batch-events if the client is honest")


async def read_length(reader: asyncio.StreamReader, limit: int, what: str) -> int:
    """One big-endian signed 32-bit length, checked against `limit`."""
    (length,) = _INT32.unpack(await reader.readexactly(4))
    if length < 0 or length > limit:
        raise FrameError(f"{what} of {length} bytes is outside 0..{limit}")
    return length


async def read_length_prefixed(reader: asyncio.StreamReader, limit: int, what: str = "frame") -> bytes:
    """A 4-byte length followed by that many bytes (Thrift TFramedTransport)."""
    return await reader.readexactly(await read_length(reader, limit, what))


class ChunkedFramer(Generic[M]):
    """Messages of a stated length found in a stream's bytes as they arrive (sources.tcp_server's
    framer): the bytes are kept as they came and joined once, when a message can be complete.
    A subclass says what the message at a position is (`_message_at`)."""

    __slots__ = ("_held", "_parts", "_wanted")

    header_size: ClassVar[int]  # the fewest bytes a message can be

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._held = 0  # bytes in _parts
        self._wanted = self.header_size  # bytes the next message needs at least

    @property
    def partial(self) -> bool:
        return self._held > 0

    def feed(self, data: bytes) -> list[M]:
        """The messages `data` completes."""
        if not data:
            return []
        self._held += len(data)
        self._parts.append(data)
        if self._held < self._wanted:
            return []
        buffer = b"".join(self._parts) if len(self._parts) > 1 else data
        messages = []
        position = 0
        self._wanted = self.header_size
        while position < len(buffer):
            found = self._message_at(buffer, position)
            if isinstance(found, int):
                self._wanted = found
                break
            position, message = found
            messages.append(message)
        rest = buffer[position:] if position else buffer
        self._parts = [rest] if rest else []
        self._held = len(rest)
        return messages

    def flush(self) -> list[M]:
        """A message cut short by the end of the stream is dropped: nothing of it was answered."""
        return []

    def _message_at(self, buffer: bytes, start: int) -> tuple[int, M] | int:
        """(where it ends, the message at `start`), or how many bytes from `start` it needs at least."""
        raise NotImplementedError


class LengthPrefixedFramer(ChunkedFramer[bytes]):
    """4-byte length-prefixed frames (Thrift TFramedTransport); a length over `limit` is refused as
    soon as it arrives."""

    __slots__ = ("limit", "what")

    header_size = _INT32.size

    def __init__(self, limit: int, what: str = "frame") -> None:
        super().__init__()
        self.limit = limit
        self.what = what

    def _message_at(self, buffer: bytes, start: int) -> tuple[int, bytes] | int:
        if len(buffer) - start < _INT32.size:
            return _INT32.size
        length = _INT32.unpack_from(buffer, start)[0]
        if length < 0 or length > self.limit:
            raise FrameError(f"{self.what} of {length} bytes is outside 0..{self.limit}")
        end = start + _INT32.size + length
        if end > len(buffer):
            return end - start
        return end, buffer[start + _INT32.size:end]


def length_prefixed(payload: bytes) -> bytes:
    return _UINT32.pack(len(payload)) + payload
