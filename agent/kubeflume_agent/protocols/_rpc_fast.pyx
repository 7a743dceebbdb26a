# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""C speed for the two RPC calls that carry Flume's bulk traffic: Avro `appendBatch` (Netty
transport, on a connection past its handshake) and Thrift `appendBatch` in the compact protocol.

Each reads one call's bytes straight into events, and only the usual shape of that call: anything
else (another message, an unexpected field, type or order, a negative length, bytes that are not
UTF-8 where fastavro wants text, more reads than the decode budget) returns None, and the generic
decoders (fastavro, thriftpy2) read the call as before and give its answer or its error. Both stay
the reference: the property tests check these readers against them.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8


cdef class _Reader:
    """A position in a bytes object; every method returns -1 (or None) past the end or on bad input."""

    cdef const char* data
    cdef Py_ssize_t size, position
    cdef long long reads  # thriftpy2's trans.read() calls, for the decode budget

    def __cinit__(self, bytes data, Py_ssize_t position):
        self.data = PyBytes_AS_STRING(data)
        self.size = PyBytes_GET_SIZE(data)
        self.position = position
        self.reads = 0

    cdef int byte(self) noexcept:
        if self.position >= self.size:
            return -1
        self.reads += 1
        self.position += 1
        return <unsigned char>self.data[self.position - 1]

    cdef long long varint(self) noexcept:
        """An unsigned LEB128 varint of at most 9 bytes (one read per byte, as thriftpy2), or -1."""
        cdef long long result = 0
        cdef int shift = 0, byte
        while shift < 63:
            byte = self.byte()
            if byte < 0:
                return -1
            result |= <long long>(byte & 0x7f) << shift
            if byte < 0x80:
                return result
            shift += 7
        return -1

    cdef long long zigzag(self) noexcept:
        """An Avro long that must not be negative, or -1."""
        cdef long long raw = self.varint()
        if raw < 0 or raw & 1:
            return -1
        return raw >> 1

    cdef object chunk(self, long long length):
        """The next `length` bytes as bytes (one read), or None."""
        if length < 0 or length > self.size - self.position:
            return None
        self.reads += 1
        self.position += length
        return PyBytes_FromStringAndSize(self.data + self.position - length, length)

    cdef object text(self, long long length, const char* errors):
        """The next `length` bytes decoded as UTF-8 (one read), or None (strict decoding failed)."""
        if length < 0 or length > self.size - self.position:
            return None
        self.reads += 1
        self.position += length
        try:
            return PyUnicode_DecodeUTF8(self.data + self.position - length, length, errors)
        except UnicodeDecodeError:
            return None


def avro_append_batch(bytes payload, event_type):
    """The events of an Avro `appendBatch` request without a handshake (meta map, message name,
    array of AvroFlumeEvent), or None when it is not one or not in the usual shape."""
    cdef _Reader reader = _Reader(payload, 0)
    cdef long long count, length
    if not skip_avro_meta(reader):
        return None
    length = reader.zigzag()
    if length != 11 or reader.text(length, NULL) != "appendBatch":
        return None
    events = []
    while True:
        count = reader.zigzag()  # negative counts (blocks with sizes) are left to fastavro
        if count < 0:
            return None
        if count == 0:
            return events
        for _ in range(count):
            event = avro_event(reader, event_type)
            if event is None:
                return None
            events.append(event)


cdef bint skip_avro_meta(_Reader reader):
    """The request's meta map (string -> bytes), read and dropped as Flume's responder does."""
    cdef long long count
    while True:
        count = reader.zigzag()
        if count < 0:
            return False
        if count == 0:
            return True
        for _ in range(count):
            if reader.text(reader.zigzag(), NULL) is None or reader.chunk(reader.zigzag()) is None:
                return False


cdef object avro_event(_Reader reader, event_type):
    cdef long long count
    headers = {}
    while True:
        count = reader.zigzag()
        if count < 0:
            return None
        if count == 0:
            break
        for _ in range(count):
            key = reader.text(reader.zigzag(), NULL)
            value = reader.text(reader.zigzag(), NULL) if key is not None else None
            if value is None:
                return None
            headers[key] = value
    body = reader.chunk(reader.zigzag())
    if body is None:
        return None
    event = event_type.__new__(event_type)
    event.body = body
    event.headers = headers
    return event


cdef enum:  # Thrift compact protocol bytes; field headers are (delta << 4) | type
    COMPACT_PROTOCOL_ID = 0x82
    COMPACT_VERSION_CALL = 0x21  # version 1, message type CALL (1 << 5)
    FIELD_1_LIST = 0x19
    FIELD_1_MAP = 0x1B
    FIELD_2_BINARY = 0x18
    STRUCT_ELEMENTS = 0x0C
    BINARY_KEYS_AND_VALUES = 0x88
    STOP = 0x00


def thrift_compact_append_batch(bytes frame, long long max_reads, event_type):
    """(seqid, events) of a compact-protocol ThriftSourceProtocol `appendBatch` call, or None when
    it is not one, not in the usual shape, or would take the generic reader more than `max_reads`
    reads (it then raises the budget error itself)."""
    cdef _Reader reader = _Reader(frame, 0)
    cdef long long seqid, length, count
    if reader.byte() != COMPACT_PROTOCOL_ID or reader.byte() != COMPACT_VERSION_CALL:
        return None
    seqid = reader.varint()
    length = reader.varint()
    if seqid < 0 or seqid > 0x7fffffff or length != 11 or reader.text(length, NULL) != "appendBatch":
        return None
    if reader.byte() != FIELD_1_LIST:
        return None
    count = reader.byte()
    if count < 0 or count & 0x0f != STRUCT_ELEMENTS:
        return None
    count >>= 4
    if count == 15:
        count = reader.varint()
        if count < 0:
            return None
    events = []
    for _ in range(count):
        event = thrift_event(reader, event_type)
        if event is None or reader.reads > max_reads:
            return None
        events.append(event)
    if reader.byte() != STOP or reader.reads > max_reads:
        return None
    return seqid, events


cdef object thrift_event(_Reader reader, event_type):
    cdef long long count, length
    if reader.byte() != FIELD_1_MAP:
        return None
    count = reader.varint()
    if count < 0 or (count > 0 and reader.byte() != BINARY_KEYS_AND_VALUES):
        return None
    headers = {}
    for _ in range(count):
        key = reader.text(reader.varint(), "replace")
        value = reader.text(reader.varint(), "replace") if key is not None else None
        if value is None:
            return None
        headers[key] = value
    if reader.byte() != FIELD_2_BINARY:
        return None
    body = reader.chunk(reader.varint())
    if body is None or reader.byte() != STOP:
        return None
    event = event_type.__new__(event_type)
    event.body = body
    event.headers = headers
    return event
