"""Avro IPC as Flume speaks it: the handshake, call/response payloads, Netty framing, deflate.

Wire facts (Avro 1.11 `Requestor`/`Responder`, `NettyTransportCodec`):

* frame := serial:int32 count:int32 (length:int32 bytes){count}; one call's payload is the
  concatenation of the buffers. The server echoes the serial.
* request  := [HandshakeRequest until the connection is connected] meta:map<bytes> name:string params
* response := [HandshakeResponse if the request had one] meta:map<bytes> error:boolean value|error
* A handshake answered NONE carries only the HandshakeResponse; the client resends with its protocol.
* `compression-type deflate` compresses the whole framed stream (zlib, sync-flushed per write).

`Responder` and `Requestor` hold the handshake state and turn payloads into calls and back; they
do no I/O, so the sources and sinks own their sockets and the same code serves Netty framing
(avro source/sink) and Avro's HTTP framing (legacy source).

A responder given a decode budget (framing.decode_budget) reads large call parameters through a
reader that counts fastavro's reads (one or more per decoded value), so a frame of tiny values
cannot make it build millions of objects; small payloads cannot, and skip the counting.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from kubeflume_agent.protocols.framing import ChunkedFramer, FrameError, budget_exceeded, read_length

_HEADER = struct.Struct(">ii")
_LENGTH = struct.Struct(">i")
_EMPTY_META = b"\x00"
_NO_ERROR = b"\x00"
_ERROR = b"\x01"
_SYSTEM_ERROR = parse_schema(["string"])
_META = parse_schema({"type": "map", "values": "bytes"})
_STRING = parse_schema("string")
_BOOLEAN = parse_schema("boolean")
_PROTOCOL_CACHE_LIMIT = 64
# Below this many bytes of parameters a call decodes into a few tens of MB at most: no counting.
_COUNTED_DECODE_BYTES = 512 * 1024


def _package_text(name: str) -> str:
    return resources.files("kubeflume_agent.protocols").joinpath(name).read_text(encoding="utf-8")


HANDSHAKE_REQUEST = parse_schema(json.loads(_package_text("HandshakeRequest.avsc")))
HANDSHAKE_RESPONSE = parse_schema(json.loads(_package_text("HandshakeResponse.avsc")))


class AvroRpcError(Exception):
    """A call failed on the remote side (Avro system error) or the exchange made no sense."""


@dataclass(frozen=True)
class Message:
    name: str
    request: Any  # parsed record schema of the parameters
    response: Any
    one_way: bool


@dataclass
class AvroProtocol:
    """An Avro protocol and its MD5, the identity the handshake compares."""

    text: str
    md5: bytes = field(init=False)
    messages: dict[str, Message] = field(init=False)

    def __post_init__(self) -> None:
        self.md5 = hashlib.md5(self.text.encode()).digest()
        declaration = json.loads(self.text)
        namespace = declaration.get("namespace")
        named: dict[str, Any] = {}
        declared_types: dict[str, Any] = {}
        for declared in declaration.get("types", []):
            declared = dict(declared, namespace=declared.get("namespace", namespace))
            parse_schema(declared, named_schemas=named)
            declared_types[declared["name"]] = declared_types[f"{declared['namespace']}.{declared['name']}"] = declared
        self.messages = {}
        for name, spec in declaration.get("messages", {}).items():
            request = parse_schema(
                {"type": "record", "name": f"{name}_request", "namespace": namespace, "fields": spec["request"]},
                named_schemas=dict(named),
            )
            response_type = spec.get("response", "null")
            response = parse_schema(declared_types.get(response_type, response_type) if isinstance(
                response_type, str) else response_type, named_schemas=dict(named))
            self.messages[name] = Message(name, request, response, bool(spec.get("one-way")))

    @classmethod
    def packaged(cls, name: str) -> AvroProtocol:
        """A protocol shipped as `protocols/<name>.avpr` (exact text: its MD5 must match Java's)."""
        return cls(_package_text(f"{name}.avpr"))


def _read(buffer: io.BytesIO, schema: Any, reader_schema: Any = None) -> Any:
    return schemaless_reader(buffer, schema, reader_schema)


class _CountingReader:
    """What fastavro reads from: a payload, and a budget of reads that it must not exceed."""

    __slots__ = ("_budget", "_read", "_reads_left")

    def __init__(self, data: bytes, budget: int) -> None:
        self._read = io.BytesIO(data).read
        self._budget = budget
        self._reads_left = budget

    def read(self, size: int = -1) -> bytes:
        self._reads_left -= 1
        if self._reads_left < 0:
            raise budget_exceeded(self._budget)
        return self._read(size)


def _write(schema: Any, value: Any) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, schema, value)
    return out.getvalue()


@dataclass
class Call:
    """A decoded request. `reply` is set instead of `message` when the payload already has its
    answer (handshake-only ping, NONE match, unknown message)."""

    handshake: bytes = b""
    message: Message | None = None
    params: dict[str, Any] | None = None
    reply: bytes | None = None
    events: list[Any] | None = None  # an appendBatch read straight into events (`batch_reader`)


class Session:
    """Per-connection handshake state (Netty transport is stateful; HTTP is not)."""

    __slots__ = ("connected", "remote")

    def __init__(self) -> None:
        self.connected = False
        self.remote: AvroProtocol | None = None


class Responder:
    """Server side of Avro IPC for one local protocol; client protocols are cached by MD5.

    `max_reads` bounds the decoding of one call's parameters (framing.decode_budget).
    `batch_reader`: reads a whole `appendBatch` request of an established session into events,
    or returns None for anything it does not read (the compiled reader of the Avro source)."""

    def __init__(self, local: AvroProtocol, max_reads: int | None = None, *,
                 batch_reader: Callable[[bytes], list[Any] | None] | None = None) -> None:
        self.local = local
        self.max_reads = max_reads
        self.batch_reader = batch_reader
        self._protocols: dict[bytes, AvroProtocol] = {local.md5: local}

    def read_call(self, payload: bytes, session: Session) -> Call:
        if (self.batch_reader is not None and session.connected and session.remote is self.local
                and len(payload) <= _COUNTED_DECODE_BYTES):
            events = self.batch_reader(payload)
            if events is not None:
                return Call(message=self.local.messages["appendBatch"], events=events)
        buffer = io.BytesIO(payload)
        call = Call()
        try:
            if not session.connected:
                call.handshake, match = self._handshake(buffer, session)
                if match == "NONE":
                    call.reply = call.handshake
                    return call
            _read(buffer, _META)
            name = _read(buffer, _STRING)
        except (EOFError, ValueError, IndexError, UnicodeDecodeError, StopIteration) as error:
            raise FrameError(f"undecodable Avro request: {error!r}") from error
        if name == "":
            call.reply = call.handshake  # a handshake-only ping
            return call
        local_message = self.local.messages.get(name)
        remote = session.remote
        remote_message = remote.messages.get(name) if remote else None
        if local_message is None or remote_message is None:
            call.reply = self.error(call, f"No such remote message: {name}")
            return call
        params = self._params_reader(payload, buffer)
        try:
            if remote is self.local:
                call.params = _read(params, local_message.request)
            else:
                call.params = _read(params, remote_message.request, local_message.request)
        except FrameError:
            raise
        except Exception as error:
            raise FrameError(f"undecodable parameters of {name}: {error!r}") from error
        call.message = local_message
        return call

    def _params_reader(self, payload: bytes, buffer: io.BytesIO):
        """`buffer` itself, or for a large payload a reader counting against the budget."""
        if self.max_reads is None or len(payload) - buffer.tell() <= _COUNTED_DECODE_BYTES:
            return buffer
        return _CountingReader(payload[buffer.tell():], self.max_reads)

    def _handshake(self, buffer: io.BytesIO, session: Session) -> tuple[bytes, str]:
        request = _read(buffer, HANDSHAKE_REQUEST)
        client_hash = request["clientHash"]
        remote = self._protocols.get(client_hash)
        if remote is None and request["clientProtocol"] is not None:
            try:
                remote = AvroProtocol(request["clientProtocol"])
            except Exception as error:
                raise FrameError(f"client sent an unusable protocol: {error!r}") from error
            if len(self._protocols) >= _PROTOCOL_CACHE_LIMIT:
                self._protocols = {self.local.md5: self.local}
            self._protocols[client_hash] = remote
        if remote is None:
            match = "NONE"
        elif request["serverHash"] == self.local.md5:
            match = "BOTH"
        else:
            match = "CLIENT"
        response: dict[str, Any] = {"match": match, "serverProtocol": None, "serverHash": None, "meta": None}
        if match != "BOTH":
            response["serverProtocol"] = self.local.text
            response["serverHash"] = self.local.md5
        if remote is not None:
            session.connected = True
            session.remote = remote
        return _write(HANDSHAKE_RESPONSE, response), match

    def response(self, call: Call, value: Any) -> bytes:
        assert call.message is not None, "only a call to a known message is answered with a value"
        return call.handshake + _EMPTY_META + _NO_ERROR + _write(call.message.response, value)

    @staticmethod
    def error(call: Call, message: str) -> bytes:
        """A system error (Java's AvroRuntimeException on the client)."""
        return call.handshake + _EMPTY_META + _ERROR + _write(_SYSTEM_ERROR, message)


class Requestor:
    """Client side of Avro IPC over one connection (stateful, like Java's NettyTransceiver)."""

    def __init__(self, local: AvroProtocol) -> None:
        self.local = local
        self.connected = False
        self._server_hash = local.md5
        self._server: AvroProtocol = local
        self._send_protocol = False

    def request(self, name: str, params: dict[str, Any]) -> bytes:
        message = self.local.messages[name]
        prefix = b""
        if not self.connected:
            prefix = _write(HANDSHAKE_REQUEST, {
                "clientHash": self.local.md5,
                "clientProtocol": self.local.text if self._send_protocol else None,
                "serverHash": self._server_hash,
                "meta": None,
            })
        return prefix + _EMPTY_META + _write(_STRING, name) + _write(message.request, params)

    def read_response(self, name: str, payload: bytes) -> tuple[bool, Any]:
        """(True, value) for an answer; (False, None) when the call must be resent (NONE match).

        Raises AvroRpcError for an error response."""
        buffer = io.BytesIO(payload)
        if not self.connected:
            handshake = _read(buffer, HANDSHAKE_RESPONSE)
            if handshake["serverHash"] is not None:
                self._server_hash = handshake["serverHash"]
            if handshake["serverProtocol"] is not None:
                self._server = AvroProtocol(handshake["serverProtocol"])
            if handshake["match"] == "NONE":
                if self._send_protocol:
                    raise AvroRpcError("server does not accept our protocol")
                self._send_protocol = True
                return False, None
            self.connected = True
        _read(buffer, _META)
        if _read(buffer, _BOOLEAN):
            raise AvroRpcError(str(_read(buffer, _SYSTEM_ERROR)))
        local = self.local.messages[name]
        remote = self._server.messages.get(name)
        if remote is None:
            raise AvroRpcError(f"server protocol has no message {name}")
        return True, _read(buffer, remote.response, local.response)


# --- Netty framing ---------------------------------------------------------------------------


async def read_netty_frame(reader, max_bytes: int) -> tuple[int, bytes]:
    """(serial, payload) of one frame; FrameError if it claims more than `max_bytes` in total."""
    serial, count = _HEADER.unpack(await reader.readexactly(8))
    if count <= 0 or count * 8 > max_bytes:
        raise FrameError(f"frame with {count} buffers refused")
    parts = []
    remaining = max_bytes
    for _ in range(count):
        length = await read_length(reader, remaining, "Avro frame buffer")
        parts.append(await reader.readexactly(length))
        remaining -= length
    return serial, parts[0] if count == 1 else b"".join(parts)


def netty_frame(serial: int, payload: bytes) -> bytes:
    return _HEADER.pack(serial, 1) + _LENGTH.pack(len(payload)) + payload


class NettyFramer(ChunkedFramer[tuple[int, bytes]]):
    """Netty frames found in a connection's bytes as they arrive: (serial, payload) per frame,
    FrameError for one claiming more than `max_bytes` in all; and what the connection's calls
    share: its handshake `session`, and `frame` for its answers."""

    __slots__ = ("max_bytes", "session")

    header_size = _HEADER.size

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self.session = Session()

    def more(self) -> list[tuple[int, bytes]]:
        """Frames already received but not yet handed out (see InflatingNettyFramer)."""
        return []

    def frame(self, serial: int, payload: bytes) -> bytes:
        return netty_frame(serial, payload)

    def _message_at(self, buffer: bytes, start: int) -> tuple[int, tuple[int, bytes]] | int:
        if len(buffer) - start < _HEADER.size:
            return _HEADER.size
        serial, count = _HEADER.unpack_from(buffer, start)
        if count <= 0 or count * 8 > self.max_bytes:
            raise FrameError(f"frame with {count} buffers refused")
        position, remaining, parts = start + _HEADER.size, self.max_bytes, []
        for _ in range(count):
            if len(buffer) - position < _LENGTH.size:
                return position + _LENGTH.size - start
            (length,) = _LENGTH.unpack_from(buffer, position)
            if length < 0 or length > remaining:
                raise FrameError(f"Avro frame buffer of {length} bytes is outside 0..{remaining}")
            position += _LENGTH.size
            if len(buffer) - position < length:
                return position + length - start
            parts.append(buffer[position:position + length])
            position += length
            remaining -= length
        return position, (serial, parts[0] if count == 1 else b"".join(parts))


class InflatingNettyFramer(NettyFramer):
    """NettyFramer for `compression-type = deflate`: what arrives is one zlib stream, inflated a
    chunk at a time and never past the next whole frame, so a small message cannot make us hold a
    huge inflated one (`more` goes on with the rest); answers are deflated."""

    __slots__ = ("_deflate", "_inflater")

    _CHUNK = 65536

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self._inflater = zlib.decompressobj()
        self._deflate = Deflater()

    @property
    def partial(self) -> bool:
        return self._held > 0 or bool(self._inflater.unconsumed_tail)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        tail = self._inflater.unconsumed_tail
        pending = tail + data if tail else data
        frames: list[tuple[int, bytes]] = []
        while pending and not frames:
            try:
                inflated = self._inflater.decompress(pending, self._CHUNK)
            except zlib.error as error:
                raise FrameError(f"bad deflate stream: {error}") from error
            pending = self._inflater.unconsumed_tail
            frames = super().feed(inflated)
        return frames

    def more(self) -> list[tuple[int, bytes]]:
        return self.feed(b"")

    def frame(self, serial: int, payload: bytes) -> bytes:
        return self._deflate(netty_frame(serial, payload))


# --- Avro HTTP framing (HttpTransceiver; Flume OG's avro sink) ---------------------------------


def http_buffers(payload: bytes) -> bytes:
    """Buffers as (length:int32 bytes)*, ended by a zero length."""
    return _LENGTH.pack(len(payload)) + payload + _LENGTH.pack(0)


def parse_http_buffers(body: bytes) -> bytes:
    parts: list[bytes] = []
    position = 0
    while True:
        if position + 4 > len(body):
            raise FrameError("Avro HTTP body ends inside a buffer length")
        (length,) = _LENGTH.unpack_from(body, position)
        position += 4
        if length == 0:
            return b"".join(parts)
        if length < 0 or position + length > len(body):
            raise FrameError(f"Avro HTTP buffer of {length} bytes does not fit the body")
        parts.append(body[position:position + length])
        position += length


# --- deflate (compression-type = deflate) ----------------------------------------------------


class InflatingReader:
    """A StreamReader look-alike that inflates a zlib stream, never more than asked for (the avro
    sink reads its deflated answers through it; sources use InflatingNettyFramer)."""

    _CHUNK = 65536

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._inflater = zlib.decompressobj()
        self._buffer = bytearray()

    async def readexactly(self, count: int) -> bytes:
        buffer = self._buffer
        while len(buffer) < count:
            inflater = self._inflater
            if inflater.unconsumed_tail:
                buffer += inflater.decompress(inflater.unconsumed_tail, self._CHUNK)
                continue
            raw = await self._reader.read(self._CHUNK)
            if not raw:
                raise asyncio.IncompleteReadError(bytes(buffer), count)
            try:
                buffer += inflater.decompress(raw, self._CHUNK)
            except zlib.error as error:
                raise FrameError(f"bad deflate stream: {error}") from error
        data = bytes(buffer[:count])
        del buffer[:count]
        return data


class Deflater:
    """Compresses each outgoing write as a sync-flushed piece of one zlib stream."""

    def __init__(self, level: int = 6) -> None:
        self._deflater = zlib.compressobj(level)

    def __call__(self, data: bytes) -> bytes:
        return self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
