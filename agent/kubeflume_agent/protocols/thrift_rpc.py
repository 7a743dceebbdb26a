"""Thrift messages for Flume's thrift, scribe and thriftLegacy endpoints, encoded with thriftpy2.

The IDL files next to this module are the contracts (`flume.thrift`, `scribe.thrift`,
`flume_og.thrift`). This module turns one message's bytes into (method, seqid, arguments) and
answers back into bytes; transports (framing, TLS, sockets) belong to the sources and sinks.

Protocol flavours, as Flume configures them:
* `compact` (Flume's thrift default) and `binary` (strict write, lenient read) for ThriftSource;
* scribe: binary, lenient both ways, so replies use the old unversioned message header;
* legacy OG: binary, lenient read, over an unframed stream.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import thriftpy2
from thriftpy2.protocol import binary
from thriftpy2.protocol.binary import TBinaryProtocolFactory
from thriftpy2.protocol.compact import TCompactProtocol, TCompactProtocolFactory
from thriftpy2.thrift import TApplicationException, TMessageType, TType
from thriftpy2.transport import TMemoryBuffer, TTransportException

from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.accelerators import compiled
from kubeflume_agent.protocols.framing import FrameError, budget_exceeded


def load_idl(name: str):
    """The thriftpy2 module for `protocols/<name>.thrift`."""
    with resources.as_file(resources.files("kubeflume_agent.protocols").joinpath(f"{name}.thrift")) as path:
        return thriftpy2.load(str(path), module_name=f"kubeflume_{name}_thrift")


FLUME = load_idl("flume")
SCRIBE = load_idl("scribe")
FLUME_OG = load_idl("flume_og")

# --- containers a message cannot hold ---------------------------------------------------------
# thriftpy2 loops over a container's claimed size, and skipping an element of a type that has no
# bytes (STOP, VOID) reads nothing: a 20-byte message claiming 2^31 such elements kept a core busy
# for minutes, out of reach of the read budget. A container is refused unless its element types
# take bytes, and one claiming more elements than bytes are left is treated as running past the
# data (every element takes a byte or more): a frame is then cut short, a stream waits for more.

_ELEMENT_TYPES = frozenset({TType.BOOL, TType.BYTE, TType.DOUBLE, TType.I16, TType.I32, TType.I64, TType.STRING,
                            TType.BINARY, TType.STRUCT, TType.MAP, TType.SET, TType.LIST})


def _check_container(buffer: Any, size: int, *element_types: int) -> None:
    if size and any(t not in _ELEMENT_TYPES for t in element_types):
        raise FrameError(f"a Thrift container of elements of type {element_types}")
    if size < 0:
        raise FrameError(f"a Thrift container of {size} elements")
    left = getattr(buffer, "remaining", None)
    if left is not None and size > left:
        raise EOFError(f"a Thrift container of {size} elements in {left} bytes")


_read_list_begin, _read_map_begin = binary.read_list_begin, binary.read_map_begin


def _checked_list_begin(inbuf: Any) -> tuple[int, int]:
    element_type, size = _read_list_begin(inbuf)
    _check_container(inbuf, size, element_type)
    return element_type, size


def _checked_map_begin(inbuf: Any) -> tuple[int, int, int]:
    key_type, value_type, size = _read_map_begin(inbuf)
    _check_container(inbuf, size, key_type, value_type)
    return key_type, value_type, size


# The binary protocol's readers are module functions that call each other by name.
binary.read_list_begin, binary.read_map_begin = _checked_list_begin, _checked_map_begin


class _CheckedCompactProtocol(TCompactProtocol):
    def _read_collection_begin(self) -> tuple[int, int]:
        element_type, size = super()._read_collection_begin()
        _check_container(self.trans, size, element_type)
        return element_type, size

    def _read_map_begin(self) -> tuple[int, int, int]:
        key_type, value_type, size = super()._read_map_begin()
        _check_container(self.trans, size, key_type, value_type)
        return key_type, value_type, size


class _CheckedCompactProtocolFactory(TCompactProtocolFactory):
    def get_protocol(self, trans: Any) -> TCompactProtocol:
        return _CheckedCompactProtocol(trans, decode_response=self.decode_response, strict_decode=self.strict_decode)


PROTOCOLS = {
    "compact": _CheckedCompactProtocolFactory(),
    "binary": TBinaryProtocolFactory(strict_read=False, strict_write=True),
}
SCRIBE_PROTOCOL = TBinaryProtocolFactory(strict_read=False, strict_write=False)

# What a truncated message raises while being decoded: for unframed streams, "read more".
INCOMPLETE = (EOFError, struct.error, TTransportException, IndexError)


def text(value: str | bytes) -> str:
    """A Thrift `string` as text. thriftpy2 hands over bytes that are not valid UTF-8 as bytes;
    Java's readString decodes them with replacement characters, and so do we, so a header is
    always text whatever a client sends."""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


@dataclass
class ThriftCall:
    name: str
    seqid: int
    message_type: int
    args: Any  # the `<name>_args` struct, or None for an unknown method
    events: list[Any] | None = None  # an appendBatch read straight into events (thrift source)


def read_call(data: bytes, factory, service, max_reads: int | None = None) -> tuple[ThriftCall, int]:
    """(the call, bytes consumed). Raises one of INCOMPLETE if `data` ends inside the message,
    FrameError if it cannot be a Thrift message at all, and DecodeBudgetExceeded if decoding it
    takes more than `max_reads` reads (framing.decode_budget)."""
    buffer = _ReadBuffer(data, max_reads)
    protocol = factory.get_protocol(buffer)
    try:
        name, message_type, seqid = protocol.read_message_begin()
    except (FrameError, *INCOMPLETE):
        raise
    except Exception as error:
        raise FrameError(f"not a Thrift message: {error!r}") from error
    args_class = getattr(service, f"{name}_args", None)
    args = args_class() if args_class is not None and message_type in (
        TMessageType.CALL, TMessageType.ONEWAY) else None
    try:
        if args is None:
            protocol.skip(12)  # TType.STRUCT: consume the unknown call's arguments
        else:
            protocol.read_struct(args)
        protocol.read_message_end()
    except (FrameError, *INCOMPLETE):
        raise
    except Exception as error:
        raise FrameError(f"undecodable arguments of {name!r}: {error!r}") from error
    return ThriftCall(name, seqid, message_type, args), buffer.position


class _ReadBuffer:
    """The read side of a memory transport that knows how much was consumed and fails loudly
    (EOFError) when a message runs past the data, so a stream can wait for more. Every decoded
    value takes at least one read, so counting reads bounds what the message can make us build."""

    __slots__ = ("_budget", "_data", "_reads_left", "position")

    def __init__(self, data: bytes, max_reads: int | None = None) -> None:
        self._data = data
        self.position = 0
        self._budget = max_reads
        self._reads_left = sys.maxsize if max_reads is None else max_reads

    def read(self, size: int) -> bytes:
        self._reads_left -= 1
        if self._reads_left < 0:
            assert self._budget is not None, "reads run out only with a budget"
            raise budget_exceeded(self._budget)
        end = self.position + size
        if end > len(self._data):
            raise EOFError("message continues past the data received")
        chunk = self._data[self.position:end]
        self.position = end
        return chunk

    @property
    def remaining(self) -> int:
        return len(self._data) - self.position


def compact_batch_reader() -> Callable[[bytes, int], ThriftCall | None] | None:
    """The compiled reader of compact-protocol ThriftSourceProtocol `appendBatch` calls straight
    into events (protocols/_rpc_fast.pyx): (frame, max_reads) -> the call, or None for any frame
    it does not read; None when it is not built."""
    read = compiled("_rpc_fast", "thrift_compact_append_batch")
    if read is None:
        return None

    def read_batch(frame: bytes, max_reads: int) -> ThriftCall | None:
        found = read(frame, max_reads, Event)
        return None if found is None else ThriftCall("appendBatch", found[0], TMessageType.CALL, None, found[1])

    return read_batch


def write_reply(factory, service, call: ThriftCall, value: Any) -> bytes:
    result_class = getattr(service, f"{call.name}_result")
    result = result_class(success=value) if 0 in result_class.thrift_spec else result_class()
    return _message(factory, call.name, TMessageType.REPLY, call.seqid, result)


def write_unknown_method(factory, call: ThriftCall) -> bytes:
    error = TApplicationException(TApplicationException.UNKNOWN_METHOD, f"Invalid method name: '{call.name}'")
    return _message(factory, call.name, TMessageType.EXCEPTION, call.seqid, error)


def write_call(factory, service, name: str, seqid: int, **args: Any) -> bytes:
    return _message(factory, name, TMessageType.CALL, seqid, getattr(service, f"{name}_args")(**args))


def read_reply(data: bytes, factory, service, name: str) -> Any:
    """The `success` value of a reply; raises TApplicationException for an exception reply."""
    protocol = factory.get_protocol(TMemoryBuffer(data))
    _, message_type, _ = protocol.read_message_begin()
    if message_type == TMessageType.EXCEPTION:
        error = TApplicationException()
        protocol.read_struct(error)
        raise error
    result = getattr(service, f"{name}_result")()
    protocol.read_struct(result)
    return result.success


def _message(factory, name: str, message_type: int, seqid: int, struct_value: Any) -> bytes:
    buffer = TMemoryBuffer()
    protocol = factory.get_protocol(buffer)
    protocol.write_message_begin(name, message_type, seqid)
    protocol.write_struct(struct_value)
    protocol.write_message_end()
    return buffer.getvalue()
