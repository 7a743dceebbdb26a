"""Java's meaning of a charset name where Python's differs, for text Flume reads and writes.

Java's `UTF-16` and `UTF-32` decoders honour a byte order mark and read big-endian without one
(Python's read the machine's order); Java's `UTF-16` encoder writes a big-endian mark once, at the
start of a stream, and its `UTF-32` encoder none (Python writes a little-endian mark on every call).
Every other name means the same in both.
"""

from __future__ import annotations

import codecs

# Python codec name -> (codec Java encodes with, byte order mark Java writes at a stream's start)
_JAVA_ENCODERS = {"utf-16": ("utf-16-be", b"\xfe\xff"), "utf-32": ("utf-32-be", b"")}
_MARKS = {"utf-16": (b"\xfe\xff", b"\xff\xfe"), "utf-32": (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")}


def java_encoder(charset: str) -> tuple[str, bytes]:
    """(Python codec, mark to write once before a stream's first bytes) for Java's `charset`."""
    name = codecs.lookup(charset).name
    return _JAVA_ENCODERS.get(name, (name, b""))


def decode_java(raw: bytes, charset: str, errors: str = "strict") -> str:
    """One whole text in Java's `charset` (UTF-16/32 without a mark are big-endian)."""
    decoder = JavaDecoder(charset, errors)
    return decoder.decode(raw, final=True)


class JavaDecoder:
    """An incremental decoder with Java's reading of `charset`."""

    def __init__(self, charset: str, errors: str = "replace") -> None:
        self.name = codecs.lookup(charset).name
        self.errors = errors
        self._marks = _MARKS.get(self.name)
        self._head = b""  # the first bytes of a UTF-16/32 stream, until they show a mark or none
        self._decoder = None if self._marks else codecs.getincrementaldecoder(self.name)(errors)

    @property
    def pending(self) -> bool:
        """Bytes of a character not yet complete are held."""
        return bool(self._head) or (self._decoder is not None and bool(self._decoder.getstate()[0]))

    def decode(self, data: bytes, final: bool = False) -> str:
        if self._decoder is None:
            marks = self._marks
            assert marks is not None, "only a charset with byte order marks starts without a decoder"
            self._head += data
            mark_size = len(marks[0])
            if len(self._head) < mark_size and not final:
                return ""
            has_mark = self._head[:mark_size] in marks
            codec = self.name if has_mark else f"{self.name}-be"
            self._decoder = codecs.getincrementaldecoder(codec)(self.errors)
            data, self._head = self._head, b""
        return self._decoder.decode(data, final)
