"""Reading length-prefixed frames off a stream, with a bound on what one client may make us hold.

Thrift's framed transport and the Avro IPC Netty framing both start a message with big-endian
32-bit lengths; a hostile or broken client can claim any length, so every read checks the claim
against a limit before allocating anything.
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
