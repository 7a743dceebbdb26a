"""Handing freed memory back to the system after a burst.

glibc's malloc keeps what a program frees for its own reuse: after thousands of connections come
and go, the process would hold their memory for ever (a high-water mark). `malloc_trim` returns
the free pages; it costs about a millisecond, so it is called after bursts, never per request.
Where the C library has no `malloc_trim` (musl, macOS), this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Return the C heap's free pages to the system (glibc's malloc_trim), where it can be done."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
