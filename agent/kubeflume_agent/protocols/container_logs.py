"""Container log files as the kubelet's runtimes write them, turned back into the lines programs wrote.

Formats (one physical line each, ended by LF):
- `cri` (containerd, CRI-O): `<RFC3339Nano time> <stdout|stderr> <tags> <message>`; the tags are
  `F` (a full line) or `P` (a partial one: the runtime split a long line, the next pieces follow),
  possibly with more tags after a `:`;
- `docker` (json-file): `{"log": "<message>\\n", "stream": "stdout", "time": "<RFC3339Nano>"}`; a
  `log` without its trailing LF is a partial line;
- `raw`: the line itself, one stream.

`LineAssembler` joins partial pieces into one record per stream, optionally groups lines into
multiline records (a stack trace: a first line matching `start`, then its continuation lines), and
keeps each record under `max_bytes`. It works per file, on lines given with their offsets, so the
reader can tell which offsets are safe to commit: `pending_starts()` says where each stream's
unfinished record begins. After a restart, `replay()` skips what had been delivered before (lines
of a stream before its unfinished record, up to the old read offset), so a partial line cut by
a restart is neither lost nor sent twice.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

LINE_FORMATS = ("raw", "cri", "docker")
STREAMS = {b"stdout": "stdout", b"stderr": "stderr"}


class MalformedLine(ValueError):
    """A line that is not in the expected format; its message says why (for the parseError header)."""


# One physical line, parsed: (stream, time in epoch ms or None, text, partial or not).
Piece = tuple[str, int | None, bytes, bool]


# One event's worth, as a plain tuple (made for every line, so as cheap as can be):
# (text, offset of its first line, stream, time of its first line in epoch ms or None,
#  why the line is malformed (it is then passed through raw) or None, cut: split at the bound)
Record = tuple[bytes, int, str, int | None, str | None, bool]


# --- timestamps ------------------------------------------------------------------------------

# "YYYY-MM-DDTHH:MM:SS" (+ zone unless UTC) -> epoch seconds: many lines share a second
_SECONDS: dict[bytes, int] = {}


def _epoch_seconds(seconds: bytes, zone: bytes) -> int:
    """Epoch seconds of `YYYY-MM-DDTHH:MM:SS` at UTC offset `zone` (`Z` or `+HH:MM`)."""
    key = seconds if zone in (b"Z", b"z") else seconds + zone
    found = _SECONDS.get(key)
    if found is None:
        try:
            fields = time.strptime(seconds.decode("ascii"), "%Y-%m-%dT%H:%M:%S")
        except (ValueError, UnicodeDecodeError):
            raise MalformedLine(f"bad time {seconds!r}") from None
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        found = _SECONDS[key] = calendar.timegm(fields) - _zone_offset(zone)
    return found


def _zone_offset(zone: bytes) -> int:
    if zone in (b"Z", b"z"):
        return 0
    if len(zone) == 6 and zone[0] in b"+-" and zone[3:4] == b":" and zone[1:3].isdigit() and zone[4:].isdigit():
        offset = int(zone[1:3]) * 3600 + int(zone[4:]) * 60
        return offset if zone[0:1] == b"+" else -offset
    raise MalformedLine(f"bad time zone {zone!r}")


def rfc3339_millis(text: bytes) -> int:
    """Epoch milliseconds of an RFC 3339 time with optional fraction (up to nanoseconds)."""
    zone_at = len(text) - 1 if text[-1:] in (b"Z", b"z") else len(text) - 6
    if zone_at < 19 or text[10:11] not in (b"T", b"t"):
        raise MalformedLine(f"bad time {text[:40]!r}")
    millis = 0
    if zone_at > 19:
        fraction = text[20:zone_at]
        if text[19:20] != b"." or not fraction.isdigit():
            raise MalformedLine(f"bad time {text[:40]!r}")
        millis = int(fraction[:3].ljust(3, b"0"))
    return _epoch_seconds(text[:19], text[zone_at:]) * 1000 + millis


# --- one physical line -------------------------------------------------------------------------

def parse_cri(line: bytes) -> Piece:
    try:
        stamp, stream_name, tags, message = line.split(b" ", 3)
    except ValueError:  # no message: an empty line is `<time> <stream> F` (or ends in a space)
        stamp, stream_name, tags, message = (*line.split(b" ", 2), b"", b"", b"")[:4]
    stream = STREAMS.get(stream_name)
    if stream is None or not tags:
        raise MalformedLine("not <time> <stdout|stderr> <P|F> <message>")
    partial = tags == b"P" or (tags != b"F" and b"P" in tags.split(b":"))
    seconds = _SECONDS.get(stamp[:19])
    if seconds is not None and len(stamp) == 30 and stamp[29] == 90 and stamp[19] == 46:
        nanoseconds = stamp[20:29]
        if nanoseconds.isdigit():  # containerd's UTC ...SS.nnnnnnnnnZ, in a second seen before
            return stream, seconds * 1000 + int(nanoseconds) // 1_000_000, message, partial
    return stream, rfc3339_millis(stamp), message, partial


def parse_docker(line: bytes) -> Piece:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise MalformedLine("not a JSON object") from None
    if not isinstance(record, dict) or not isinstance(text := record.get("log"), str):
        raise MalformedLine('no "log" string')
    stream = record.get("stream")
    if stream not in ("stdout", "stderr"):
        raise MalformedLine('"stream" is not stdout or stderr')
    stamp = record.get("time")
    time_ms = rfc3339_millis(stamp.encode()) if isinstance(stamp, str) else None
    partial = not text.endswith("\n")
    return stream, time_ms, (text if partial else text[:-1]).encode(), partial


def parse_raw(line: bytes) -> Piece:
    return "", None, line[:-1] if line.endswith(b"\r") else line, False


PARSERS: dict[str, Callable[[bytes], Piece]] = {"raw": parse_raw, "cri": parse_cri, "docker": parse_docker}


# --- joining -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Multiline:
    """How lines group into one record: a line matching `start` begins one; at most `max_lines`;
    an unfinished one is sent after `flush_timeout` seconds."""

    start: re.Pattern[bytes]
    max_lines: int
    flush_timeout: float


class _Open:
    """A record being joined: where its first line starts, its pieces, and when it began."""

    __slots__ = ("lines", "parts", "since", "size", "start", "time_ms")

    def __init__(self, start: int, time_ms: int | None, message: bytes, since: float) -> None:
        self.start = start
        self.time_ms = time_ms
        self.parts = [message]
        self.size = len(message)
        self.lines = 1
        self.since = since


class LineAssembler:
    """Physical lines of one file in, whole records out (see the module's docstring)."""

    def __init__(self, line_format: str, *, max_bytes: int, multiline: Multiline | None = None,
                 partial_timeout: float) -> None:
        self.format = line_format
        self.parse = PARSERS[line_format]
        self.max_bytes = max_bytes
        self.multiline = multiline
        self.partial_timeout = partial_timeout
        self._partial: dict[str, _Open] = {}  # stream -> pieces of a line split by the runtime
        self._group: dict[str, _Open] = {}  # stream -> multiline record being grouped
        self._replay_to = -1
        self._replay_pending: dict[str, int] = {}

    def fresh(self) -> LineAssembler:
        """An assembler with the same settings and nothing held: one per file."""
        return LineAssembler(self.format, max_bytes=self.max_bytes, multiline=self.multiline,
                             partial_timeout=self.partial_timeout)

    def replay(self, read_to: int, pending: dict[str, int]) -> None:
        """Lines ending at or before `read_to` were read before a restart: skip those already
        delivered (all but each stream's lines from its `pending` start on)."""
        self._replay_to, self._replay_pending = read_to, dict(pending)

    def pending_starts(self) -> dict[str, int]:
        """Stream -> offset of its first line not yet in a delivered record."""
        starts = {stream: record.start for stream, record in self._group.items()}
        for stream, record in self._partial.items():
            starts[stream] = min(record.start, starts.get(stream, record.start))
        return starts

    def feed_lines(self, data: bytes, offset: int, limit: int, now: float, out: list[Record]) -> int:
        """Add the LF-ended lines of `data` (found at `offset` in the file) until `out` holds `limit`
        records; returns how many bytes of `data` were used (whole lines)."""
        parse, plain, max_bytes, append = self.parse, self.multiline is None, self.max_bytes, out.append
        replay_to = self._replay_to  # lines ending at or before it were read before a restart
        lines = data.split(b"\n")
        lines.pop()  # what follows the last LF: no whole line
        start = offset
        for line in lines:
            if len(out) >= limit:
                break
            end = start + len(line) + 1
            try:
                stream, time_ms, message, is_partial = parse(line)
            except MalformedLine as error:
                self._malformed(line, start, end, error, out)
            else:
                if plain and not is_partial and end > replay_to and len(message) <= max_bytes and not self._partial:
                    append((message, start, stream, time_ms, None, False))  # the usual line
                else:
                    self._piece(start, end, stream, time_ms, message, is_partial, now, out)
            start = end
        return start - offset

    def feed(self, start: int, end: int, line: bytes, now: float, out: list[Record]) -> None:
        """Add the line found at [start, end) of the file; completed records go to `out`."""
        try:
            stream, time_ms, message, is_partial = self.parse(line)
        except MalformedLine as error:
            self._malformed(line, start, end, error, out)
        else:
            self._piece(start, end, stream, time_ms, message, is_partial, now, out)

    def _malformed(self, line: bytes, start: int, end: int, error: MalformedLine, out: list[Record]) -> None:
        if end > self._replay_to:
            out.append((line, start, "", None, str(error), False))

    def _piece(self, start: int, end: int, stream: str, time_ms: int | None, message: bytes, is_partial: bool,
               now: float, out: list[Record]) -> None:
        if end <= self._replay_to and start < self._replay_pending.get(stream, end):
            return
        partial = self._partial.get(stream)
        if is_partial:
            self._add_partial(partial, start, stream, time_ms, message, now, out)
        elif partial is None:
            self._line(stream, start, time_ms, message, now, out)
        else:
            del self._partial[stream]
            partial.parts.append(message)
            self._line(stream, partial.start, partial.time_ms, b"".join(partial.parts), now, out)

    def flush(self, now: float, out: list[Record], *, everything: bool = False) -> None:
        """Send unfinished records that waited long enough (all of them with `everything`)."""
        for stream, partial in list(self._partial.items()):
            if everything or now - partial.since >= self.partial_timeout:
                del self._partial[stream]
                self._line(stream, partial.start, partial.time_ms, b"".join(partial.parts), now, out)
        timeout = self.multiline.flush_timeout if self.multiline else 0.0
        for stream, group in list(self._group.items()):
            if everything or now - group.since >= timeout:
                self._send_group(stream, out)

    @property
    def holds_anything(self) -> bool:
        return bool(self._partial or self._group)

    def _add_partial(self, partial: _Open | None, start: int, stream: str, time_ms: int | None, message: bytes,
                     now: float, out: list[Record]) -> None:
        if partial is not None and partial.size + len(message) > self.max_bytes:
            del self._partial[stream]
            self._send_group(stream, out)
            out.append((b"".join(partial.parts), partial.start, stream, partial.time_ms, None, True))
            partial = None
        if len(message) > self.max_bytes:  # one piece past the bound: sent at once, in bounded parts
            self._send_group(stream, out)
            self._send_cut(stream, start, time_ms, message, out)
        elif partial is None:
            self._partial[stream] = _Open(start, time_ms, message, now)
        else:
            partial.parts.append(message)
            partial.size += len(message)

    def _line(self, stream: str, start: int, time_ms: int | None, message: bytes, now: float,
              out: list[Record]) -> None:
        """A whole line of `stream`: a record of its own, or a line of a multiline record."""
        multiline = self.multiline
        if len(message) > self.max_bytes:
            self._send_group(stream, out)
            self._send_cut(stream, start, time_ms, message, out)
            return
        if multiline is None:
            out.append((message, start, stream, time_ms, None, False))
            return
        group = self._group.get(stream)
        if group is not None:
            first = multiline.start.match(message) is not None
            if first or group.size + 1 + len(message) > self.max_bytes:
                self._send_group(stream, out, cut=not first)
                group = None
        if group is None:
            group = self._group[stream] = _Open(start, time_ms, message, now)
        else:
            group.parts.append(message)
            group.size += 1 + len(message)
            group.lines += 1
        if group.lines >= multiline.max_lines:
            self._send_group(stream, out)

    def _send_group(self, stream: str, out: list[Record], cut: bool = False) -> None:
        group = self._group.pop(stream, None)
        if group is not None:
            out.append((b"\n".join(group.parts), group.start, stream, group.time_ms, None, cut))

    def _send_cut(self, stream: str, start: int, time_ms: int | None, message: bytes, out: list[Record]) -> None:
        for at in range(0, len(message), self.max_bytes):
            out.append((message[at:at + self.max_bytes], start, stream, time_ms, None, True))
