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

_UINT32 = struct.Struct(">I")
_INT32 = struct.Struct(">i")


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


def length_prefixed(payload: bytes) -> bytes:
    return _UINT32.pack(len(payload)) + payload


def pack_int32(value: int) -> bytes:
    return _INT32.pack(value)


def unpack_int32(data: bytes, offset: int = 0) -> int:
    return _INT32.unpack_from(data, offset)[0]
