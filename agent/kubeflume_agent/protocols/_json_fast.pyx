# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""C speed for the http source's usual request: a UTF-8 JSON array of `{"headers": {text: text...},
"body": text}` objects, read straight into events (the body's bytes are the request's own, with no
detour through a str).

Only that shape, with strings free of escapes and control characters, each object holding
"headers" and "body" once and nothing else, header names unique: anything else returns None and
the reference (orjson and sources.http._json_events) reads the request as before, with its answer
or its error. The property tests check this reader against the reference.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Copy
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from libc.string cimport memcmp, memcpy

from kubeflume_agent.core.event import Event

cdef extern from "Python.h":
    # NULL (and an error set) rather than an exception where failing just means "not ours"
    const char* _utf8_of "PyUnicode_AsUTF8AndSize"(object text, Py_ssize_t* size)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object text)
    bint PyUnicode_IS_COMPACT_ASCII(object text)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    PyObject* _decode_utf8 "PyUnicode_DecodeUTF8"(const char* data, Py_ssize_t size, const char* errors)
    void PyErr_Clear()
    void Py_DECREF_raw "Py_DECREF"(PyObject* value)
    ctypedef object (*allocfunc)(PyTypeObject*, Py_ssize_t)
    ctypedef struct _AllocType "PyTypeObject":
        allocfunc tp_alloc

cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    const int T_OBJECT_EX


cdef Py_ssize_t _slot_offset(object descriptor) except -1:
    """Where an Event keeps this `__slots__` attribute (the offset its member descriptor writes at)."""
    if type(descriptor).__name__ != "member_descriptor" or \
            (<PyMemberDescrObject*>descriptor).d_member.type != T_OBJECT_EX:
        raise ImportError(f"Event.{descriptor.__name__} is not a plain __slots__ attribute")
    return (<PyMemberDescrObject*>descriptor).d_member.offset


# An Event is made as Event.__new__ would, its two slots filled as their descriptors would fill
# them (an empty slot given a reference): no attribute lookup by name, no argument tuple, none of
# the descriptors' checks.
cdef object _event_type = Event
cdef Py_ssize_t _body_offset = _slot_offset(Event.__dict__["body"])
cdef Py_ssize_t _headers_offset = _slot_offset(Event.__dict__["headers"])


cdef inline object _new_event(object body, dict headers):
    cdef object event = (<_AllocType*>_event_type).tp_alloc(<PyTypeObject*>_event_type, 0)
    cdef char* slots = <char*><PyObject*>event
    Py_INCREF(body)
    (<PyObject**>(slots + _body_offset))[0] = <PyObject*>body
    Py_INCREF(headers)
    (<PyObject**>(slots + _headers_offset))[0] = <PyObject*>headers
    return event

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* How many of s[0:KF_PLAIN_RUN] come before the first quote, backslash or control byte, or
       also non-ASCII byte while `ascii` (KF_PLAIN_RUN if none): sixteen at a time where SSE2 is
       (every x86-64), else eight, all or nothing. Once a string is known not to be ASCII, its
       other non-ASCII bytes no longer stop the run. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #define KF_PLAIN_RUN 16
    static inline int kf_plain_run(const unsigned char* s, int ascii) {
        __m128i bytes = _mm_loadu_si128((const __m128i*)s);
        __m128i controls = ascii
            ? _mm_cmplt_epi8(bytes, _mm_set1_epi8(0x20))  /* signed: non-ASCII bytes are below 0x20 too */
            : _mm_cmpeq_epi8(_mm_min_epu8(bytes, _mm_set1_epi8(0x1F)), bytes);  /* unsigned <= 0x1F */
        __m128i flagged = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(0x22)), _mm_cmpeq_epi8(bytes, _mm_set1_epi8(0x5C))),
            controls);
        int mask = _mm_movemask_epi8(flagged);
        return mask ? __builtin_ctz(mask) : 16;
    }
    #else
    #define KF_PLAIN_RUN 8
    static inline int kf_plain_run(const unsigned char* s, int ascii) {
        const uint64_t ones = 0x0101010101010101ULL;
        uint64_t w, quotes, backslashes;
        memcpy(&w, s, 8);
        quotes = w ^ 0x2222222222222222ULL;
        backslashes = w ^ 0x5C5C5C5C5C5C5C5CULL;
        return ((((quotes - ones) & ~quotes) | ((backslashes - ones) & ~backslashes)
                 | ((w - 0x2020202020202020ULL) & ~w) | (ascii ? w : 0)) & 0x8080808080808080ULL) ? 0 : 8;
    }
    #endif
    """
    const int KF_PLAIN_RUN
    int kf_plain_run(const unsigned char* s, bint ascii) noexcept nogil


cdef inline Py_ssize_t _skip_space(const unsigned char* s, Py_ssize_t i, Py_ssize_t n) noexcept:
    while i < n and s[i] <= 32 and (s[i] == 32 or s[i] == 10 or s[i] == 13 or s[i] == 9):
        i += 1
    return i


cdef inline Py_ssize_t _string_end(const unsigned char* s, Py_ssize_t i, Py_ssize_t n, bint* ascii) noexcept:
    """The index of the quote closing the string whose first byte is s[i]; -1 at an escape, a
    control byte or the end of the input. Plain bytes are skipped KF_PLAIN_RUN at a time."""
    cdef unsigned char c
    cdef int plain
    ascii[0] = True
    while True:
        if i + KF_PLAIN_RUN <= n:
            plain = kf_plain_run(s + i, ascii[0])
            i += plain
            if plain == KF_PLAIN_RUN:
                continue
        elif i >= n:
            return -1
        c = s[i]
        if c == 34:
            return i
        if c == 92 or c < 32:
            return -1
        if c >= 128:
            ascii[0] = False
        i += 1


cdef inline Py_ssize_t _after_key(const unsigned char* s, Py_ssize_t i, Py_ssize_t n, const char* quoted,
                                   Py_ssize_t size) noexcept:
    """The index after `quoted` (a key with its quotes) and its colon at s[i], or -1 if it is not there."""
    if i + size > n or memcmp(s + i, quoted, size) != 0:
        return -1
    i = _skip_space(s, i + size, n)
    return i + 1 if i < n and s[i] == 58 else -1  # :


cdef bint _valid_utf8(const unsigned char* s, Py_ssize_t size) noexcept:
    """Whether the text of a plain string (no quote, backslash or control byte) is UTF-8 as Python's
    strict decoder wants it, checked in place (decoding a body only to check it cost as much as
    reading the rest of its event). ASCII runs are skipped KF_PLAIN_RUN bytes at a time."""
    cdef Py_ssize_t i = 0
    while i < size:
        if s[i] >= 128:
            i = _utf8_sequence_end(s, i, size)
            if i < 0:
                return False
        elif i + KF_PLAIN_RUN <= size:
            i += kf_plain_run(s + i, True) or 1  # up to the next non-ASCII byte
        else:
            i += 1
    return True


cdef inline Py_ssize_t _utf8_sequence_end(const unsigned char* s, Py_ssize_t i, Py_ssize_t size) noexcept:
    """The index after the UTF-8 sequence that the non-ASCII byte s[i] starts, or -1 if it is not one
    (Unicode's table 3-7: no overlong form, no surrogate, nothing above U+10FFFF)."""
    cdef unsigned char lead = s[i]
    cdef unsigned char low = 0x80, high = 0xBF  # the second byte's range
    cdef Py_ssize_t follow, k
    if lead < 0xC2:
        return -1  # a continuation byte, or an overlong two-byte form
    if lead < 0xE0:
        follow = 1
    elif lead < 0xF0:
        follow = 2
        if lead == 0xE0:
            low = 0xA0
        elif lead == 0xED:
            high = 0x9F  # surrogates
    elif lead < 0xF5:
        follow = 3
        if lead == 0xF0:
            low = 0x90
        elif lead == 0xF4:
            high = 0x8F  # beyond U+10FFFF
    else:
        return -1
    if i + follow >= size or not low <= s[i + 1] <= high:
        return -1
    for k in range(i + 2, i + follow + 1):
        if not 0x80 <= s[k] <= 0xBF:
            return -1
    return i + follow + 1


cdef class _Previous:
    """The previous event's header names and values in order (the next event likely has the same
    names and some of the same values: equal texts share one str), and its headers dict."""
    cdef list names
    cdef list values
    cdef Py_ssize_t count
    cdef dict headers

    def __cinit__(self):
        self.names = []
        self.values = []
        self.count = 0


def json_events(bytes raw):
    """The events of a request body, or None when it is not the usual shape (see the module)."""
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    cdef Py_ssize_t i, end
    cdef bint ascii
    cdef dict headers
    cdef object body
    cdef _Previous previous = _Previous()
    events = []
    i = _skip_space(s, 0, n)
    if i >= n or s[i] != 91:  # [
        return None
    i = _skip_space(s, i + 1, n)
    if i < n and s[i] == 93:  # ]
        return events if _skip_space(s, i + 1, n) == n else None
    while True:
        if i >= n or s[i] != 123:  # {
            return None
        i = _skip_space(s, i + 1, n)
        headers = None
        body = None
        while True:  # the members of one event object
            end = _after_key(s, i, n, '"body"', 6) if body is None else -1
            if end >= 0:
                i = _skip_space(s, end, n)
                if i >= n or s[i] != 34:
                    return None
                end = _string_end(s, i + 1, n, &ascii)
                if end < 0:
                    return None
                if not ascii and not _valid_utf8(s + i + 1, end - i - 1):
                    return None
                body = PyBytes_FromStringAndSize(<const char*>s + i + 1, end - i - 1)
                i = end + 1
            else:
                end = _after_key(s, i, n, '"headers"', 9) if headers is None else -1
                if end < 0:
                    return None  # another member, or a key written with escapes
                i = _skip_space(s, end, n)
                headers = _read_headers(s, &i, n, previous)
                if headers is None:
                    return None
            i = _skip_space(s, i, n)
            if i < n and s[i] == 44:  # ,
                i = _skip_space(s, i + 1, n)
                continue
            if i < n and s[i] == 125:  # }
                i += 1
                break
            return None
        if headers is None or body is None:
            return None
        events.append(_new_event(body, headers))
        i = _skip_space(s, i, n)
        if i < n and s[i] == 44:
            i = _skip_space(s, i + 1, n)
            continue
        if i < n and s[i] == 93:
            return events if _skip_space(s, i + 1, n) == n else None
        return None


cdef inline Py_ssize_t _known_end(object known, const unsigned char* s, Py_ssize_t i, Py_ssize_t n) noexcept:
    """The index of the closing quote if the string starting at s[i] is the str `known`, else -1.
    `known` was read from a plain string (no quote, backslash or control byte in its UTF-8), so
    its bytes followed by a quote are the whole string: no scanning."""
    cdef Py_ssize_t size
    cdef const char* utf8
    if PyUnicode_IS_COMPACT_ASCII(known):
        utf8 = <const char*>PyUnicode_DATA(known)
        size = PyUnicode_GET_LENGTH(known)
    else:
        utf8 = _utf8_of(known, &size)  # kept by the str: made once
        if utf8 == NULL:
            PyErr_Clear()
            return -1
    if i + size < n and s[i + size] == 34 and memcmp(utf8, s + i, size) == 0:
        return i + size
    return -1


cdef object _text(const unsigned char* s, Py_ssize_t* at, Py_ssize_t n, list seen, Py_ssize_t index,
                  bint* made):
    """The plain string starting at s[at[0]] (after its opening quote) as a str, at[0] moved to its
    closing quote: the previous event's at `index` if it is the same (one str shared by every
    event's headers), else made (and remembered, `made` set). None if it is not a plain UTF-8 string."""
    cdef Py_ssize_t start = at[0]
    cdef Py_ssize_t end
    cdef bint ascii
    cdef PyObject* decoded
    if index < len(seen):
        end = _known_end(seen[index], s, start, n)
        if end >= 0:
            at[0] = end
            made[0] = False
            return seen[index]
    end = _string_end(s, start, n, &ascii)
    if end < 0:
        return None
    if ascii:
        text = PyUnicode_New(end - start, 127)
        memcpy(PyUnicode_DATA(text), s + start, end - start)
    else:
        decoded = _decode_utf8(<const char*>s + start, end - start, NULL)
        if decoded == NULL:
            PyErr_Clear()
            return None
        text = <object>decoded
        Py_DECREF_raw(decoded)
    if index < len(seen):
        seen[index] = text
    else:
        seen.append(text)
    at[0] = end
    made[0] = True
    return text


cdef dict _first_headers(_Previous previous, Py_ssize_t count):
    """A dict of the first `count` names and values remembered (those of the event being read)."""
    cdef dict headers = {}
    cdef Py_ssize_t index
    for index in range(count):
        headers[previous.names[index]] = previous.values[index]
    return headers


cdef dict _read_headers(const unsigned char* s, Py_ssize_t* at, Py_ssize_t n, _Previous previous):
    """Reads `{"name": "value", ...}` at s[at[0]] into a dict, moving at[0] past it; None when it is
    not text pairs with unique names.

    While the names are the previous event's, in order, the dict is a copy of the previous event's
    (a memcpy of its table: no hashing, no growth) with the values that differ replaced. Nobody has
    seen that dict yet, so it is as it was read."""
    cdef Py_ssize_t i = at[0]
    cdef Py_ssize_t count = 0
    cdef bint made
    cdef bint copying = previous.count > 0
    cdef dict headers = None if copying else {}
    if i >= n or s[i] != 123:
        return None
    i = _skip_space(s, i + 1, n)
    if i < n and s[i] == 125:
        headers = {}
    else:
        while True:
            if i >= n or s[i] != 34:
                return None
            i += 1
            name = _text(s, &i, n, previous.names, count, &made)
            if name is None:
                return None
            if copying and (made or count >= previous.count):
                copying = False  # the names differ from here on
                headers = _first_headers(previous, count)
            elif copying and count == 0:
                headers = PyDict_Copy(previous.headers)
            i = _skip_space(s, i + 1, n)
            if i >= n or s[i] != 58:
                return None
            i = _skip_space(s, i + 1, n)
            if i >= n or s[i] != 34:
                return None
            i += 1
            value = _text(s, &i, n, previous.values, count, &made)
            if value is None:
                return None
            if not copying or made:
                headers[name] = value
            count += 1
            if not copying and len(headers) != count:
                return None  # a name repeated: the reference decides
            i = _skip_space(s, i + 1, n)
            if i < n and s[i] == 44:
                i = _skip_space(s, i + 1, n)
                continue
            if i < n and s[i] == 125:
                break
            return None
        if copying and count < previous.count:
            headers = _first_headers(previous, count)  # fewer names than the previous event
    previous.count = count
    previous.headers = headers
    at[0] = i + 1
    return headers
