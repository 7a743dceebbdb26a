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
from cpython.object cimport PyObject, PyTypeObject
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint64_t
from libc.string cimport memcmp, memcpy

from kubeflume_agent.core.event import Event

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object text)
    ctypedef int (*descrsetfunc)(PyObject*, PyObject*, PyObject*) except -1
    ctypedef struct _DescrType "PyTypeObject":
        descrsetfunc tp_descr_set
    ctypedef object (*allocfunc)(PyTypeObject*, Py_ssize_t)
    ctypedef struct _AllocType "PyTypeObject":
        allocfunc tp_alloc
    _DescrType* _descr_type "Py_TYPE"(object descriptor)

# An Event is made as Event.__new__ would, its two slots set through their descriptors: no
# attribute lookup by name, no argument tuple (a third of this reader's time otherwise).
cdef object _event_type = Event
cdef object _body_slot = Event.__dict__["body"]
cdef object _headers_slot = Event.__dict__["headers"]


cdef inline object _new_event(object body, dict headers):
    cdef object event = (<_AllocType*>_event_type).tp_alloc(<PyTypeObject*>_event_type, 0)
    _descr_type(_body_slot).tp_descr_set(<PyObject*>_body_slot, <PyObject*>event, <PyObject*>body)
    _descr_type(_headers_slot).tp_descr_set(<PyObject*>_headers_slot, <PyObject*>event, <PyObject*>headers)
    return event

cdef extern from *:
    """
    /* Sixteen bytes at a time where SSE2 is (every x86-64): how many of s[0:16] come before the
       first quote, backslash, control byte or non-ASCII byte (16 if none). */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #define KF_PLAIN_RUN 16
    static inline int kf_plain_run(const unsigned char* s) {
        __m128i bytes = _mm_loadu_si128((const __m128i*)s);
        __m128i flagged = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(0x22)), _mm_cmpeq_epi8(bytes, _mm_set1_epi8(0x5C))),
            _mm_cmplt_epi8(bytes, _mm_set1_epi8(0x20)));  /* signed: non-ASCII bytes are below 0x20 too */
        int mask = _mm_movemask_epi8(flagged);
        return mask ? __builtin_ctz(mask) : 16;
    }
    #else
    #define KF_PLAIN_RUN 0
    static inline int kf_plain_run(const unsigned char* s) { (void)s; return 0; }
    #endif
    """
    const int KF_PLAIN_RUN
    int kf_plain_run(const unsigned char* s) noexcept nogil

cdef uint64_t _ONES = 0x0101010101010101ULL
cdef uint64_t _HIGHS = 0x8080808080808080ULL
cdef uint64_t _QUOTES = 0x2222222222222222ULL
cdef uint64_t _BACKSLASHES = 0x5C5C5C5C5C5C5C5CULL
cdef uint64_t _SPACES = 0x2020202020202020ULL


cdef inline Py_ssize_t _skip_space(const unsigned char* s, Py_ssize_t i, Py_ssize_t n) noexcept:
    while i < n and (s[i] == 32 or s[i] == 10 or s[i] == 13 or s[i] == 9):
        i += 1
    return i


cdef inline bint _plain_word(uint64_t w) noexcept:
    """None of these 8 bytes is a quote, a backslash, a control byte or non-ASCII."""
    cdef uint64_t quotes = w ^ _QUOTES
    cdef uint64_t backslashes = w ^ _BACKSLASHES
    cdef uint64_t flagged = ((quotes - _ONES) & ~quotes) | ((backslashes - _ONES) & ~backslashes) \
        | ((w - _SPACES) & ~w) | w
    return (flagged & _HIGHS) == 0


cdef inline Py_ssize_t _string_end(const unsigned char* s, Py_ssize_t i, Py_ssize_t n, bint* ascii) noexcept:
    """The index of the quote closing the string whose first byte is s[i]; -1 at an escape, a
    control byte or the end of the input. Sixteen or eight bytes at a time while they are plain ASCII."""
    cdef unsigned char c
    cdef uint64_t word
    cdef int plain
    ascii[0] = True
    while KF_PLAIN_RUN and i + KF_PLAIN_RUN <= n:
        plain = kf_plain_run(s + i)
        i += plain
        if plain < KF_PLAIN_RUN:
            break
    while i + 8 <= n:
        memcpy(&word, s + i, 8)
        if not _plain_word(word):
            break
        i += 8
    while i < n:
        c = s[i]
        if c == 34:
            return i
        if c == 92 or c < 32:
            return -1
        if c >= 128:
            ascii[0] = False
        i += 1
    return -1


cdef inline bint _is_key(const unsigned char* s, Py_ssize_t start, Py_ssize_t end, const char* name,
                         Py_ssize_t size) noexcept:
    return end - start == size and memcmp(s + start, name, size) == 0


def json_events(bytes raw):
    """The events of a request body, or None when it is not the usual shape (see the module)."""
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    cdef Py_ssize_t i, end, name_end
    cdef bint ascii
    cdef dict headers
    cdef object body
    # the previous event's header names and values, in order: the next one likely has the same
    cdef list names = []
    cdef list values = []
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
            if i >= n or s[i] != 34:
                return None
            name_end = _string_end(s, i + 1, n, &ascii)
            if name_end < 0:
                return None
            end = _skip_space(s, name_end + 1, n)
            if end >= n or s[end] != 58:  # :
                return None
            if _is_key(s, i + 1, name_end, "body", 4) and body is None:
                i = _skip_space(s, end + 1, n)
                if i >= n or s[i] != 34:
                    return None
                end = _string_end(s, i + 1, n, &ascii)
                if end < 0:
                    return None
                if not ascii:
                    try:
                        PyUnicode_DecodeUTF8(<const char*>s + i + 1, end - i - 1, NULL)
                    except UnicodeDecodeError:
                        return None
                body = PyBytes_FromStringAndSize(<const char*>s + i + 1, end - i - 1)
                i = end + 1
            elif _is_key(s, i + 1, name_end, "headers", 7) and headers is None:
                headers = {}
                i = _read_headers(s, _skip_space(s, end + 1, n), n, headers, names, values)
                if i < 0:
                    return None
            else:
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


cdef object _text(const unsigned char* s, Py_ssize_t start, Py_ssize_t end, bint ascii, list seen,
                  Py_ssize_t index):
    """The string s[start:end] as a str: the previous event's at `index` if it is the same (one str
    shared by every event's headers), else made (and remembered). Raises UnicodeDecodeError."""
    cdef Py_ssize_t size
    cdef const char* known
    if index < len(seen):
        known = PyUnicode_AsUTF8AndSize(seen[index], &size)
        if size == end - start and memcmp(known, s + start, size) == 0:
            return seen[index]
    if ascii:
        text = PyUnicode_New(end - start, 127)
        memcpy(PyUnicode_DATA(text), s + start, end - start)
    else:
        text = PyUnicode_DecodeUTF8(<const char*>s + start, end - start, NULL)
    if index < len(seen):
        seen[index] = text
    else:
        seen.append(text)
    return text


cdef Py_ssize_t _read_headers(const unsigned char* s, Py_ssize_t i, Py_ssize_t n, dict headers,
                              list names, list values) except -2:
    """Reads `{"name": "value", ...}` at s[i] into `headers`; the index after it, or -1."""
    cdef Py_ssize_t end
    cdef Py_ssize_t count = 0
    cdef bint ascii
    if i >= n or s[i] != 123:
        return -1
    i = _skip_space(s, i + 1, n)
    if i < n and s[i] == 125:
        return i + 1
    while True:
        if i >= n or s[i] != 34:
            return -1
        end = _string_end(s, i + 1, n, &ascii)
        if end < 0:
            return -1
        try:
            name = _text(s, i + 1, end, ascii, names, count)
        except UnicodeDecodeError:
            return -1
        i = _skip_space(s, end + 1, n)
        if i >= n or s[i] != 58:
            return -1
        i = _skip_space(s, i + 1, n)
        if i >= n or s[i] != 34:
            return -1
        end = _string_end(s, i + 1, n, &ascii)
        if end < 0 or name in headers:
            return -1
        try:
            headers[name] = _text(s, i + 1, end, ascii, values, count)
        except UnicodeDecodeError:
            return -1
        count += 1
        i = _skip_space(s, end + 1, n)
        if i < n and s[i] == 44:
            i = _skip_space(s, i + 1, n)
            continue
        if i < n and s[i] == 125:
            return i + 1
        return -1
