# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""C speed for `SyslogUtilsParser.parse_all` (protocols/syslog.py), which stays the reference.

Each frame's header is read by hand along the first path Flume's regexes try (`<PRI>`, then
`V SP STAMP|- SP HOST|- SP` for RFC 5424 or `Mmm d HH:MM:SS SP HOST SP` for RFC 3164, single
spaces, greedy counts). Whenever that path does not reach the message, or the frame is anything
unusual (cut at eventSize, a CR or LF in the message), the frame is handed to the Python parser,
so a header read here is one the regex would read the same way, and every other frame gets the
reference's answer. Timestamps go through the parser's own memos, so both give the same values.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.string cimport memchr

cdef extern from "Python.h":
    object PyLong_FromLongLong(long long value)


cdef inline bint is_digit(char c) noexcept:
    return b"0" <= c <= b"9"


cdef inline bint is_host_start(char c) noexcept:
    return (b"a" <= c <= b"z") or (b"A" <= c <= b"Z") or is_digit(c) or c == b"_"


cdef inline bint is_host_char(char c) noexcept:
    return is_host_start(c) or c == b"." or c == b"@" or c == b"-"


cdef inline bint digits_at(const char* s, Py_ssize_t start, Py_ssize_t count) noexcept:
    cdef Py_ssize_t i
    for i in range(start, start + count):
        if not is_digit(s[i]):
            return False
    return True


cdef Py_ssize_t rfc5424_stamp_end(const char* s, Py_ssize_t q, Py_ssize_t n) noexcept:
    """End of `YYYY-MM-DDTHH:MM:SS[.f{1,6}][Z|+hh:mm]` at q, or -1."""
    if n - q < 19 or not (digits_at(s, q, 4) and s[q + 4] == b"-" and digits_at(s, q + 5, 2)
                          and s[q + 7] == b"-" and digits_at(s, q + 8, 2) and s[q + 10] == b"T"
                          and digits_at(s, q + 11, 2) and s[q + 13] == b":" and digits_at(s, q + 14, 2)
                          and s[q + 16] == b":" and digits_at(s, q + 17, 2)):
        return -1
    q += 19
    cdef Py_ssize_t digits = 0
    if q < n and s[q] == b".":
        while q + 1 + digits < n and is_digit(s[q + 1 + digits]):
            digits += 1
        if digits == 0 or digits > 6:
            return -1
        q += 1 + digits
    if q < n and (s[q] == b"+" or s[q] == b"-"):
        if n - q < 6 or not (digits_at(s, q + 1, 2) and s[q + 3] == b":" and digits_at(s, q + 4, 2)):
            return -1
        q += 6
    elif q < n and s[q] == b"Z":
        q += 1
    return q


cdef Py_ssize_t host_end(const char* s, Py_ssize_t q, Py_ssize_t n) noexcept:
    """End of a host name at q (`[A-Za-z0-9_][A-Za-z0-9_.@-]*`), or -1."""
    if q >= n or not is_host_start(s[q]):
        return -1
    q += 1
    while q < n and is_host_char(s[q]):
        q += 1
    return q


cdef class FrameParser:
    """Frames -> events for one SyslogUtilsParser without keepFields (see the module docstring)."""

    cdef object fallback  # the Python parser's parse(frame)
    cdef object event_type
    cdef object priority_of  # PRI digits -> (Facility, Severity, priority) texts
    cdef list priorities  # by (digit count - 1) * 1000 + value
    cdef object seconds_memo, stamps_5424_memo, stamps_3164_memo
    cdef dict seconds, stamps_5424, stamps_3164
    cdef object local_seconds, rfc5424_millis, rfc3164_millis
    cdef list versions
    cdef str facility_key, severity_key, priority_key, version_key, timestamp_key, host_key

    def __init__(self, parser, *, event_type, priority_of, local_seconds, rfc5424_millis, rfc3164_millis,
                 keys):
        self.fallback = parser.parse
        self.event_type = event_type
        self.priority_of = priority_of
        self.priorities = [None] * 3000
        self.seconds_memo = parser.rfc5424_times.seconds
        self.stamps_5424_memo = parser.rfc5424_times.stamps
        self.stamps_3164_memo = parser.rfc3164_times.stamps
        self.seconds = self.seconds_memo.values
        self.stamps_5424 = self.stamps_5424_memo.values
        self.stamps_3164 = self.stamps_3164_memo.values
        self.local_seconds = local_seconds
        self.rfc5424_millis = rfc5424_millis
        self.rfc3164_millis = rfc3164_millis
        self.versions = [str(digit) for digit in range(10)]
        (self.facility_key, self.severity_key, self.priority_key, self.version_key, self.timestamp_key,
         self.host_key) = keys

    def parse_all(self, list frames):
        cdef list events = []
        cdef Py_ssize_t i
        cdef object frame, event
        for i in range(PyList_GET_SIZE(frames)):
            frame = <object>PyList_GET_ITEM(frames, i)
            event = self.parse(PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), frame) if type(frame) is bytes else None
            events.append(self.fallback(frame) if event is None else event)
        return events

    def parse_lines(self, bytes buffer, Py_ssize_t max_size, bint octet_counting):
        """(events, end): the events of the LF-terminated lines at the start of `buffer`, read as
        SyslogFramer would frame them, up to the last LF or to the first line the framer must read
        itself (one reaching `max_size`, or starting with a non-zero digit when octet counting is
        on); `end` is where the reading stopped."""
        cdef const char* s = PyBytes_AS_STRING(buffer)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(buffer), position = 0, length
        cdef const char* lf
        cdef list events = []
        while position < n:
            if s[position] == b"\n":  # LF between messages
                position += 1
                continue
            if octet_counting and b"1" <= s[position] <= b"9":
                break
            lf = <const char*>memchr(s + position, b"\n", min(n - position, max_size + 1))
            if lf == NULL:
                break
            length = lf - (s + position)
            if length >= max_size:
                break
            event = self.parse(s + position, length, None)
            events.append(self.fallback(PyBytes_FromStringAndSize(s + position, length)) if event is None else event)
            position += length + 1
        return events, position

    cdef object parse(self, const char* s, Py_ssize_t n, object frame):
        """The event of the n bytes at s (the bytes object `frame`, or None to make one if needed),
        or None when the Python parser is to read them."""
        cdef Py_ssize_t p = 1, q, stamp_start, stamp_end, host_start = 0, end
        cdef int value = 0
        cdef char version = 0
        cdef bint rfc5424
        if n < 4 or s[0] != b"<":
            return None
        while p < n and p <= 3 and is_digit(s[p]):
            value = value * 10 + (s[p] - 48)
            p += 1
        if p == 1 or p >= n or s[p] != b">":
            return None
        priority = self.priority(s, p - 1, value)
        q = p + 1
        rfc5424 = is_digit(s[q]) if q < n else False
        if rfc5424:  # V SP (STAMP | -) SP
            if n - q < 4 or s[q + 1] != b" ":
                return None
            version = s[q]
            q += 2
            stamp_start = q
            if s[q] == b"-":
                stamp_end = q = q + 1
            elif is_digit(s[q]):
                stamp_end = q = rfc5424_stamp_end(s, q, n)
                if q < 0:
                    return None
            else:
                return None
        elif q < n and b"A" <= s[q] <= b"Z":  # Mmm SP{1,2} D{1,2} SP HH:MM:SS
            stamp_start = q
            if n - q < 15 or not (b"a" <= s[q + 1] <= b"z" and b"a" <= s[q + 2] <= b"z" and s[q + 3] == b" "):
                return None
            q += 5 if s[q + 4] == b" " else 4
            if q + 1 >= n or not is_digit(s[q]):
                return None
            q += 2 if is_digit(s[q + 1]) else 1
            if n - q < 10 or s[q] != b" " or not (digits_at(s, q + 1, 2) and s[q + 3] == b":"
                                                  and digits_at(s, q + 4, 2) and s[q + 6] == b":"
                                                  and digits_at(s, q + 7, 2)):
                return None
            stamp_end = q = q + 9
        else:
            return None
        if q >= n or s[q] != b" ":
            return None
        q += 1
        if rfc5424 and q < n and s[q] == b"-":  # the nil host
            end = q + 1
        else:
            host_start = q
            end = host_end(s, q, n)
            if end < 0:
                return None
        if end >= n or s[end] != b" ":
            return None
        end += 1
        if memchr(s + end, b"\r", n - end) != NULL or memchr(s + end, b"\n", n - end) != NULL:
            return None
        headers = {self.facility_key: priority[0], self.severity_key: priority[1],
                   self.priority_key: priority[2]}
        if rfc5424:
            PyDict_SetItem(headers, self.version_key, self.versions[version - 48])
        if stamp_end - stamp_start > 1 or not rfc5424:
            millis = (self.rfc5424_time(s, stamp_start, stamp_end) if rfc5424
                      else self.rfc3164_time(s, stamp_start, stamp_end))
            if millis is not None:
                PyDict_SetItem(headers, self.timestamp_key, millis)
        if host_start:
            PyDict_SetItem(headers, self.host_key, PyUnicode_DecodeASCII(s + host_start, end - 1 - host_start, NULL))
        event = self.event_type.__new__(self.event_type)
        if end < n:
            event.body = PyBytes_FromStringAndSize(s + end, n - end)
        else:  # no message: the body is the whole frame
            event.body = frame if frame is not None else PyBytes_FromStringAndSize(s, n)
        event.headers = headers
        return event

    cdef object priority(self, const char* s, Py_ssize_t digits, int value):
        cdef Py_ssize_t index = (digits - 1) * 1000 + value
        found = self.priorities[index]
        if found is None:
            found = self.priorities[index] = self.priority_of(PyBytes_FromStringAndSize(s + 1, digits))
        return found

    cdef object rfc5424_time(self, const char* s, Py_ssize_t start, Py_ssize_t end):
        cdef PyObject* found
        cdef long long millis
        cdef Py_ssize_t i
        if end - start > 20 and s[start + 19] == b".":  # the local second, plus the fraction as ms
            second = PyBytes_FromStringAndSize(s + start, 19)
            found = PyDict_GetItem(self.seconds, second)
            local = <object>found if found != NULL else self.seconds_memo.get(second, self.local_seconds)
            if local is None:
                return None
            millis = 0
            i = start + 20
            while i < end and i < start + 23 and is_digit(s[i]):
                millis = millis * 10 + (s[i] - 48)
                i += 1
            return str(local + PyLong_FromLongLong(millis))
        stamp = PyBytes_FromStringAndSize(s + start, end - start)
        found = PyDict_GetItem(self.stamps_5424, stamp)
        return <object>found if found != NULL else self.stamps_5424_memo.get(stamp, self.rfc5424_millis)

    cdef object rfc3164_time(self, const char* s, Py_ssize_t start, Py_ssize_t end):
        stamp = PyBytes_FromStringAndSize(s + start, end - start)
        cdef PyObject* found = PyDict_GetItem(self.stamps_3164, stamp)
        return <object>found if found != NULL else self.stamps_3164_memo.get(stamp, self.rfc3164_millis)
