"""Thrift calls built with the Apache library (not thriftpy2, which the agent uses), for tests."""

from __future__ import annotations

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.Thrift import TMessageType, TType
from thrift.transport.TTransport import TMemoryBuffer

APACHE = {"compact": TCompactProtocol, "binary": TBinaryProtocol}


def batch_of_empty_events(protocol: str, count: int) -> bytes:
    """appendBatch of `count` events that are nothing but a field stop: 1 byte per event (compact)."""
    buffer = TMemoryBuffer()
    p = APACHE[protocol](buffer)
    p.writeMessageBegin("appendBatch", TMessageType.CALL, 1)
    p.writeStructBegin("appendBatch_args")
    p.writeFieldBegin("events", TType.LIST, 1)
    p.writeListBegin(TType.STRUCT, count)
    for _ in range(count):
        p.writeFieldStop()
    p.writeListEnd()
    p.writeFieldEnd()
    p.writeFieldStop()
    p.writeStructEnd()
    p.writeMessageEnd()
    return buffer.getvalue()
