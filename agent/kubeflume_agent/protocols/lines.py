"""Lines off a byte stream, the two ways Flume reads them.

`BoundedLineSplitter`: LF-terminated lines with the netcat source's bound on line length. Flume's
netcat source counts `max-line-length` in characters, including the LF. A line over the
bound is refused whole (up to and including its LF) and stands in the output as `TOO_LONG`, in
its place, so the caller can answer every line in order; nothing of it becomes an event. What is
held between reads is bounded too: a line is refused as soon as it has grown past the limit,
without waiting for its LF.

`TextLineSplitter`: the same for a charset in which LF is not the single byte 0x0A (UTF-16,
UTF-32): the stream is decoded as Java's reader decodes it, split at LF characters, and each line
comes out encoded in UTF-8.

`ReadLineSplitter`: lines as Java's BufferedReader.readLine() ends them (\n, \r or \r\n), as the
exec source reads a command's output.
"""

from __future__ import annotations

import re
from typing import cast

from kubeflume_agent.protocols.java_charsets import JavaDecoder

TOO_LONG = None  # stands for a refused line in what `BoundedLineSplitter.feed()` returns
_READLINE_END = re.compile(rb"\r\n|\r|\n")


class BoundedLineSplitter:
    __slots__ = ("_discarding", "_pending", "encoding", "limit")

    def __init__(self, max_line_length: int, encoding: str = "utf-8") -> None:
        self.limit = max_line_length - 1  # the longest line without its LF
        self.encoding = encoding
        self._pending = b""
        self._discarding = False  # inside a refused line, waiting for its LF

    @property
    def partial(self) -> bool:
        """Part of a line has been received (or a refused one is being skipped)."""
        return bool(self._pending) or self._discarding

    def feed(self, data: bytes) -> list[bytes | None]:
        """The lines (without LF) completed by `data`, with TOO_LONG for each refused one."""
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return []
            self._discarding = False
            data = data[end + 1:]
        complete = (self._pending + data if self._pending else data).split(b"\n")
        rest = complete.pop()
        limit = self.limit
        lines = cast("list[bytes | None]", complete)  # TOO_LONG (None) marks a refused line
        if lines and max(map(len, complete)) > limit:
            lines = [TOO_LONG if self._too_long(line) else line for line in complete]
        if len(rest) > limit and self._too_long(rest):
            lines.append(TOO_LONG)
            rest = b""
            self._discarding = True
        self._pending = rest
        return lines

    def flush(self) -> list[bytes]:
        """At end of stream: a last line the client sent without LF."""
        rest, self._pending = self._pending, b""
        return [rest] if rest else []

    def _too_long(self, line: bytes) -> bool:
        """Bytes over the limit are only too long if the characters are (multi-byte charsets)."""
        return len(line) > self.limit and len(line.decode(self.encoding, "replace")) > self.limit


def splits_at_lf_byte(encoding: str) -> bool:
    """LF is the byte 0x0A in `encoding`, and that byte is part of no other character (UTF-8, the
    ISO-8859 and Windows code pages, the CJK multi-byte charsets), so lines split as bytes."""
    return "\n".encode(encoding) == b"\n"


class TextLineSplitter:
    """BoundedLineSplitter's contract for charsets where LF is several bytes (UTF-16, UTF-32):
    lines as UTF-8 bytes, TOO_LONG for each refused one, the limit in characters."""

    __slots__ = ("_decoder", "_discarding", "_pending", "limit")

    def __init__(self, max_line_length: int, encoding: str) -> None:
        self.limit = max_line_length - 1
        self._decoder = JavaDecoder(encoding)
        self._pending = ""
        self._discarding = False

    @property
    def partial(self) -> bool:
        return bool(self._pending) or self._discarding or self._decoder.pending

    def feed(self, data: bytes) -> list[bytes | None]:
        text = self._decoder.decode(data)
        if self._discarding:
            end = text.find("\n")
            if end < 0:
                return []
            self._discarding = False
            text = text[end + 1:]
        lines = (self._pending + text).split("\n")
        rest = lines.pop()
        out: list[bytes | None] = [TOO_LONG if len(line) > self.limit else line.encode() for line in lines]
        if len(rest) > self.limit:
            out.append(TOO_LONG)
            rest = ""
            self._discarding = True
        self._pending = rest
        return out

    def flush(self) -> list[bytes]:
        rest = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return [rest.encode()] if rest and not self._discarding else []


class ReadLineSplitter:
    """Splits a byte stream into lines at \\n, \\r or \\r\\n, even when a \\r\\n straddles two reads."""

    def __init__(self) -> None:
        self._rest = b""
        self._after_cr = False

    def feed(self, data: bytes) -> list[bytes]:
        if self._after_cr and data.startswith(b"\n"):
            data = data[1:]
        self._after_cr = data.endswith(b"\r")
        parts = _READLINE_END.split(self._rest + data)
        self._rest = parts.pop()
        return parts

    def finish(self) -> list[bytes]:
        rest, self._rest = self._rest, b""
        return [rest] if rest else []
