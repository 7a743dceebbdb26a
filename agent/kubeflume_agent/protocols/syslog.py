"""Syslog (RFC 3164 / RFC 5424) to Flume events, the way Flume 1.11 does it, plus TCP framing.

Flume has two parsers with different outputs, and users' downstream configs depend on them:

* `SyslogUtilsParser`, used by `syslogtcp` and `syslogudp` (Flume's SyslogUtils): headers
  `Facility`, `Severity`, `priority`, `version`, `timestamp`, `host`, and `flume.syslog.status`
  `Invalid` (bad PRI) or `Incomplete` (line cut at `eventSize`). Regexes must match the whole line.
* `MultiportSyslogParser`, used by `multiport_syslogtcp` (Flume's SyslogParser): a hand parser
  writing `Priority`, `Facility`, `Severity`, `Version`, `timestamp`, `host`.

`SyslogFramer` splits a TCP stream into messages: LF-terminated lines as Flume reads them, and
also RFC 6587 octet-counted frames (`123 <13>...`), which rsyslog and syslog-ng send and Flume
cannot read. Every frame is bounded by `eventSize`, so one client cannot make us buffer more.

Parsing works on bytes (regexes with ASCII classes, like Java's defaults); bodies keep the bytes
the client sent. Timestamps repeat within a second, so their conversions are cached.
"""

from __future__ import annotations

import calendar
import datetime
import re
import time
from collections.abc import Callable
from typing import Any

from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.accelerators import compiled

FACILITY = "Facility"
SEVERITY = "Severity"
TIMESTAMP = "timestamp"
HOST = "host"
STATUS = "flume.syslog.status"
INVALID = "Invalid"
INCOMPLETE = "Incomplete"

KEEP_FIELD_NAMES = ("priority", "version", "timestamp", "hostname")
KEEP_ALL = frozenset(("all",))

# Flume's SyslogUtils regexes, without their last part: the message `(.*)` after the header. Java's
# `matches()` takes the whole line and its `.` stops at \r and \n, so a message holding either does
# not match; the parser checks that with two byte searches instead of running the regex engine
# over every byte of the message.
_RFC5424 = re.compile(
    rb"<(\d{1,3})>(\d?)\s?"
    rb"(?:(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[+-]\d{2}:\d{2}|Z)?)|-)\s"
    rb"(?:([A-Za-z0-9_][A-Za-z0-9_.@\-]*)|-)\s"
)
_RFC3164 = re.compile(
    rb"<(\d{1,3})>(\d)?\s?"
    rb"([A-Z][a-z][a-z]\s{1,2}\d{1,2}\s\d{2}:\d{2}:\d{2})\s"
    rb"([A-Za-z0-9_][A-Za-z0-9_.@\-]*)\s"
)
_PRI = re.compile(rb"<(\d{1,3})>")
_FRACTION = re.compile(rb"\d{1,3}")
_MONTHS = {name.encode(): number for number, name in enumerate(calendar.month_abbr) if name}
_FACILITY_SEVERITY = [(str(pri // 8), str(pri % 8)) for pri in range(1000)]
_CACHE_LIMIT = 4096
_MONTH_SECONDS = 31 * 86400


def parse_keep_fields(text: str) -> frozenset[str]:
    """Flume's `keepFields`: none | all | a list of priority version timestamp hostname.

    `true` / `false` are the deprecated spellings of all / none.
    """
    words = frozenset(text.replace(",", " ").lower().split())
    if not words or words <= {"none", "false"}:
        return frozenset()
    if words & {"all", "true"}:
        return KEEP_ALL
    unknown = words - set(KEEP_FIELD_NAMES)
    if unknown:
        from kubeflume_agent.config.keys import InvalidValue

        raise InvalidValue(
            f"expected none, all, or some of {' '.join(KEEP_FIELD_NAMES)}; got {' '.join(sorted(unknown))}"
        )
    return words


def add_kept_fields(
    keep: frozenset[str], body: bytes, priority: bytes, version: bytes | None,
    timestamp: bytes | None, hostname: bytes | None,
) -> bytes:
    """Put the fields named in `keepFields` back in front of the message, in Flume's order."""
    if "hostname" in keep and hostname:
        body = hostname + b" " + body
    if "timestamp" in keep and timestamp:
        body = timestamp + b" " + body
    if "version" in keep and version:
        body = version + b" " + body
    if "priority" in keep:
        body = b"<" + priority + b">" + body
    return body


class Truncated(bytes):
    """A frame cut at `eventSize`: the parser marks its event `Incomplete`."""


class SyslogFramer:
    """Splits a TCP byte stream into syslog messages; state is kept across reads.

    A message starting with `<` (or anything but a digit) runs to the next LF, as in Flume. A
    message starting with a non-zero digit, a space and `<` is RFC 6587 octet counting
    (`MSG-LEN SP MSG`, and a syslog MSG starts with its `<PRI>`); other lines starting with digits
    ("200 OK ...") stay lines, so a sender that is not syslog cannot make us swallow what follows. A line
    reaching `max_size` bytes is cut there (Flume's `eventSize`); the rest of that line becomes
    the next message, as in Flume. An over-long octet-counted frame is cut and its rest skipped.
    """

    __slots__ = ("_buffer", "_skip", "max_size", "octet_counting")

    def __init__(self, max_size: int, octet_counting: bool = True) -> None:
        self.max_size = max_size
        self.octet_counting = octet_counting
        self._buffer = b""
        self._skip = 0  # bytes still to drop of an over-long octet-counted frame

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        buffer = self._buffer + data if self._buffer else data
        if not (self.octet_counting and _may_hold_counted_frames(buffer)):
            lines = buffer.split(b"\n")
            rest = lines.pop()
            if len(rest) < self.max_size and (not lines or max(map(len, lines)) < self.max_size):
                self._buffer = rest
                return [line for line in lines if line]  # LF between messages: skipped, as below
        frames: list[bytes] = []
        append = frames.append
        find = buffer.find
        size = len(buffer)
        max_size = self.max_size
        position = 0
        while position < size:
            first = buffer[position]
            if first == 10:  # LF between messages (Flume skips it in its START state)
                position += 1
                continue
            if 49 <= first <= 57 and self.octet_counting:
                consumed = self._octet_counted(buffer, position, frames)
                if consumed < 0:
                    break
                if consumed:
                    position += consumed
                    continue
            end = find(b"\n", position)
            if end < 0:
                if size - position >= max_size:
                    append(Truncated(buffer[position:position + max_size]))
                    position += max_size
                    continue
                break
            if end - position >= max_size:
                append(Truncated(buffer[position:position + max_size]))
                position += max_size
                continue
            append(buffer[position:end])
            position = end + 1
        self._buffer = buffer[position:]
        return frames

    def feed_lines(self, data: bytes,
                   parse_lines: Callable[[bytes, int, bool], tuple[list, int]]) -> tuple[list, list[bytes]]:
        """`feed` for a caller that reads plain lines itself: `parse_lines(buffer, max_size,
        octet_counting)` reads whole LF-terminated lines from the start of the buffer, as this
        framer would frame them, and says where it stopped; the rest is framed here. Returns (what
        parse_lines made, the frames after it)."""
        if self._skip:
            return [], self.feed(data)
        buffer = self._buffer + data if self._buffer else data
        made, end = parse_lines(buffer, self.max_size, self.octet_counting)
        self._buffer = b""
        return made, self.feed(buffer[end:] if end else buffer)

    def flush(self) -> list[bytes]:
        """At end of stream: what is left is the last message (a sender closed without LF)."""
        rest, self._buffer = self._buffer, b""
        return [rest] if rest.strip(b"\n") else []

    def _octet_counted(self, buffer: bytes, position: int, frames: list[bytes]) -> int:
        """Bytes consumed by one octet-counted frame; 0 if this is not one; -1 if more data is needed."""
        header_end = buffer.find(b" ", position, position + 11)
        if header_end < 0:
            tail = buffer[position:position + 11]
            if len(tail) <= 10 and tail.isdigit():
                return -1  # the length is still arriving
            return 0
        digits = buffer[position:header_end]
        if not digits.isdigit():
            return 0
        length = int(digits)
        start = header_end + 1
        available = len(buffer) - start
        if not available:
            return -1  # is a `<` coming?
        if buffer[start] != 60:  # `<`
            return 0
        if length > self.max_size:
            if available < self.max_size:
                return -1
            frames.append(Truncated(buffer[start:start + self.max_size]))
            rest_in_buffer = min(available, length) - self.max_size
            self._skip = length - self.max_size - rest_in_buffer
            return header_end + 1 - position + self.max_size + rest_in_buffer
        if available < length:
            return -1
        frame = buffer[start:start + length]
        if frame.endswith(b"\n"):
            frame = frame[:-1]
        frames.append(frame)
        return header_end + 1 - position + length


_COUNTED_LINE = re.compile(rb"\n[1-9]")


def _may_hold_counted_frames(buffer: bytes) -> bool:
    """Whether a line of `buffer` starts with a non-zero digit (it may be octet-counted): only
    then do lines need the byte-by-byte framing; all others are one split."""
    first = buffer[:1]
    return (first.isdigit() and first != b"0") or _COUNTED_LINE.search(buffer) is not None


class _Memo:
    """Bounded memo for conversions a busy sender repeats: the same second, the same header."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: dict[bytes, Any] = {}  # read directly by the accelerator

    def get(self, key: bytes, convert: Callable[[bytes], Any]) -> Any:
        values = self.values
        if key in values:
            return values[key]
        if len(values) >= _CACHE_LIMIT:
            values.clear()
        value = values[key] = convert(key)
        return value


def _local_millis(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    return int(time.mktime((year, month, day, hour, minute, second, 0, 0, -1))) * 1000


def rfc5424_millis_flume(text: bytes) -> str | None:
    """SyslogUtils' conversion (java.text.SimpleDateFormat), quirks included.

    A fraction is read as a count of milliseconds after truncation to 3 digits (`.52` = 52 ms)
    and then the zone is ignored (local time); without a fraction the zone is honoured.
    """
    if text[19:20] == b".":
        local = local_seconds_millis(text[:19])
        return None if local is None else str(local + fraction_millis(text))
    try:
        base = datetime.datetime.strptime(text[:19].decode(), "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    rest = text[19:]
    if not rest:
        return str(_local_millis(base.year, base.month, base.day, base.hour, base.minute, base.second))
    offset = 0 if rest == b"Z" else _offset_seconds(rest)
    return str((calendar.timegm(base.timetuple()) - offset) * 1000)


def local_seconds_millis(text: bytes) -> int | None:
    """`YYYY-MM-DDTHH:MM:SS` read as local time, in ms; None if it is no valid date."""
    try:
        base = datetime.datetime.strptime(text.decode(), "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return _local_millis(base.year, base.month, base.day, base.hour, base.minute, base.second)


def fraction_millis(text: bytes) -> int:
    """SyslogUtils' reading of an RFC 5424 fraction (`...:SS.ffffff`): its first 3 digits as ms."""
    match = _FRACTION.match(text, 20)
    assert match is not None, "the timestamp's pattern has digits after its dot"
    return int(match.group())


def _offset_seconds(zone: bytes) -> int:
    sign = -1 if zone[:1] == b"-" else 1
    return sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)


def _roll_year(stamp_ms: int, now_ms: int, year_shift) -> int:
    """RFC 3164 has no year: take this year, unless that puts the date > 1 month ahead (then last
    year) or > 11 months behind (then next year), as both Flume parsers intend."""
    if stamp_ms - _MONTH_SECONDS * 1000 > now_ms:
        return year_shift(-1)
    if stamp_ms + 11 * 30 * 86400 * 1000 < now_ms:
        return year_shift(1)
    return stamp_ms


def rfc3164_millis(text: bytes, utc: bool, now: float | None = None) -> str | None:
    """`Mmm d HH:MM:SS` with the current (UTC) year; SyslogUtils reads local time, SyslogParser UTC."""
    now = time.time() if now is None else now
    parts = text.split()
    if len(parts) != 3 or parts[0] not in _MONTHS:
        return None
    try:
        day = int(parts[1])
        hour, minute, second = (int(p) for p in parts[2].split(b":"))
        month = _MONTHS[parts[0]]
        year = time.gmtime(now).tm_year

        def at(year_: int) -> int:
            if utc:
                return calendar.timegm((year_, month, day, hour, minute, second, 0, 0, 0)) * 1000
            return _local_millis(year_, month, day, hour, minute, second)

        datetime.datetime(year, month, day, hour, minute, second)  # validates the fields
        return str(_roll_year(at(year), int(now * 1000), lambda shift: at(year + shift)))
    except ValueError:
        return None


def _rfc3164_local(text: bytes) -> str | None:
    return rfc3164_millis(text, utc=False)


def _rfc3164_utc(text: bytes) -> str | None:
    return rfc3164_millis(text, utc=True)


FRAME_PARSER_ACCELERATOR: type | None = compiled("_syslog_fast", "FrameParser")

_PRIORITIES: dict[bytes, tuple[str, str, str]] = {}


def _priority(digits: bytes) -> tuple[str, str, str]:
    """(Facility, Severity, priority) header values for PRI digits, memoised (at most 1111)."""
    found = _PRIORITIES.get(digits)
    if found is None:
        facility, severity = _FACILITY_SEVERITY[int(digits)]
        found = _PRIORITIES[digits] = (facility, severity, digits.decode())
    return found


def _header_values(match: re.Match, millis_of: Callable[[bytes], str | None]) -> dict[str, str]:
    """SyslogUtils' headers for one matched header: Facility, Severity, priority, version,
    timestamp and host (the last three only when present)."""
    priority, version, stamp, hostname = match.groups()
    facility, severity, priority_text = _priority(priority)
    headers = {FACILITY: facility, SEVERITY: severity, "priority": priority_text}
    if version:
        headers["version"] = version.decode()
    millis = millis_of(stamp) if stamp else None
    if millis is not None:
        headers[TIMESTAMP] = millis
    if hostname:
        headers[HOST] = hostname.decode()
    return headers


class Rfc5424Times:
    """SyslogUtils' RFC 5424 times, memoised. Stamps with a fraction differ on every line of a busy
    sender, so for those the memo holds the local second and the fraction is added per line."""

    __slots__ = ("seconds", "stamps")

    def __init__(self) -> None:
        self.seconds = _Memo()  # b"YYYY-MM-DDTHH:MM:SS" -> local ms (int) or None
        self.stamps = _Memo()  # whole stamps without a fraction -> rfc5424_millis_flume's text

    def millis(self, stamp: bytes) -> str | None:
        if stamp[19:20] == b".":
            local = self.seconds.get(stamp[:19], local_seconds_millis)
            return None if local is None else str(local + fraction_millis(stamp))
        return self.stamps.get(stamp, rfc5424_millis_flume)


class Rfc3164Times:
    """SyslogUtils' RFC 3164 times (local time, this year), memoised by stamp."""

    __slots__ = ("stamps",)

    def __init__(self) -> None:
        self.stamps = _Memo()

    def millis(self, stamp: bytes) -> str | None:
        return self.stamps.get(stamp, _rfc3164_local)


class SyslogUtilsParser:
    """Flume's SyslogUtils: one frame (a line without its LF, or a datagram) -> one event.

    Flume forgets to reset `priority`/`version` between events, so an invalid event after a good
    one may carry stale headers; we do not copy that bug.
    """

    __slots__ = ("_accelerated", "_formats", "_headers", "keep", "rfc3164_times", "rfc5424_times")

    def __init__(self, keep_fields: frozenset[str] = frozenset(), *,
                 accelerator: type | None = FRAME_PARSER_ACCELERATOR) -> None:
        """`accelerator`: the compiled frame parser to use for `parse_all` (None: pure Python)."""
        self.keep = keep_fields
        self.rfc5424_times = Rfc5424Times()
        self.rfc3164_times = Rfc3164Times()
        # (regex, its timestamps' conversion). A line matching one can never match the other
        # (where RFC 5424 needs a digit or "-", RFC 3164 has a month name), so trying the format
        # that matched last first changes no result and saves a regex call per line.
        self._formats = [(_RFC5424, self.rfc5424_times.millis), (_RFC3164, self.rfc3164_times.millis)]
        self._headers: dict[bytes, dict[str, str]] = {}  # header bytes (PRI to host) -> their headers
        self._accelerated = None
        if accelerator is not None and not keep_fields:
            self._accelerated = accelerator(
                self, event_type=Event, priority_of=_priority, local_seconds=local_seconds_millis,
                rfc5424_millis=rfc5424_millis_flume, rfc3164_millis=_rfc3164_local,
                keys=(FACILITY, SEVERITY, "priority", "version", TIMESTAMP, HOST))

    def parse_all(self, frames: list[bytes]) -> list[Event]:
        if self._accelerated is not None:
            return self._accelerated.parse_all(frames)
        parse = self.parse
        return [parse(frame) for frame in frames]

    def parse_stream(self, framer: SyslogFramer, data: bytes) -> list[Event]:
        """The events of the frames `data` completes on `framer`'s stream (`parse_all(framer.feed(data))`;
        the accelerator frames and parses plain lines in one pass)."""
        if self._accelerated is None:
            return self.parse_all(framer.feed(data))
        events, frames = framer.feed_lines(data, self._accelerated.parse_lines)
        if frames:
            events += self.parse_all(frames)
        return events

    def parse(self, frame: bytes) -> Event:
        formats = self._formats
        regex, millis_of = formats[0]
        match = regex.match(frame)
        if match is None:
            regex, millis_of = formats[1]
            match = regex.match(frame)
            if match is None:
                return self._unparsed(frame)
            formats.reverse()
        end = match.end()
        message = frame[end:]
        if b"\r" in message or b"\n" in message:
            return self._unparsed(frame)
        header = frame[:end]
        known = self._headers.get(header)
        if known is None:
            known = self._remember(header, _header_values(match, millis_of))
        headers = known.copy()
        if type(frame) is Truncated:
            headers[STATUS] = INCOMPLETE
        keep = self.keep
        if keep is KEEP_ALL or not message:
            body = bytes(frame)
        elif keep:
            priority, version, stamp, hostname = match.groups()
            body = add_kept_fields(keep, message, priority, version, stamp, hostname)
        else:
            body = message
        return Event(body, headers)

    def _remember(self, header: bytes, headers: dict[str, str]) -> dict[str, str]:
        if len(self._headers) >= _CACHE_LIMIT:
            self._headers.clear()
        self._headers[header] = headers
        return headers

    @staticmethod
    def _unparsed(frame: bytes) -> Event:
        """No format matched: a valid PRI gives Facility/Severity and the raw line as body;
        anything else is Invalid with Facility and Severity 0."""
        pri = _PRI.match(frame)
        if pri is None:
            headers = {FACILITY: "0", SEVERITY: "0", STATUS: INVALID}
        else:
            facility, severity = _FACILITY_SEVERITY[int(pri.group(1))]
            headers = {FACILITY: facility, SEVERITY: severity}
            if type(frame) is Truncated:
                headers[STATUS] = INCOMPLETE
        return Event(bytes(frame), headers)


class MultiportSyslogParser:
    """Flume's SyslogParser (multiport_syslogtcp): a hand parser, decoding with the port's charset.

    Differences from SyslogUtils users see: `Priority` and `Version` headers (capitalised), a
    missing (`-`) timestamp becomes the time of receipt, RFC 3164 times are UTC, RFC 3339 zones and
    fractions are honoured, and anything unparseable is `Invalid` with the whole line as body.
    """

    __slots__ = ("_rfc3164_times", "keep")

    def __init__(self, keep_fields: frozenset[str] = frozenset()) -> None:
        self.keep = keep_fields
        self._rfc3164_times = _Memo()

    def parse(self, frame: bytes, charset: str) -> Event:
        """One line -> one event; raises UnicodeDecodeError if the line is not in `charset`
        (the source then emits it `Invalid` and counts an EventReadFail, as Flume does)."""
        text = frame.decode(charset)
        try:
            headers, body = self._parse_text(text, charset)
        except ValueError:
            return Event(bytes(frame), {STATUS: INVALID})
        if type(frame) is Truncated:
            headers[STATUS] = INCOMPLETE
        return Event(body, headers)

    def _parse_text(self, text: str, charset: str) -> tuple[dict[str, str], bytes]:
        if not text.startswith("<"):
            raise ValueError("cannot find open bracket '<'")
        close = text.find(">")
        if not 0 < close <= 6:
            raise ValueError("cannot find end bracket '>'")
        priority = text[1:close]
        pri = int(priority)
        headers = {"Priority": priority, FACILITY: str(pri // 8), SEVERITY: str(pri % 8)}
        if len(text) <= close + 1:
            raise ValueError("no data except priority")
        position = close + 1
        version = None
        if len(text) > position + 2 and text[position:position + 2] == "1 ":
            version = headers["Version"] = "1"
            position += 2
        stamp, millis, position = self._timestamp(text, position)
        headers[TIMESTAMP] = millis
        space = text.find(" ", position)
        if space < 0:
            raise ValueError("missing hostname")
        hostname = text[position:space]
        headers[HOST] = hostname
        if len(text) > space + 1 and self.keep is not KEEP_ALL:
            body = add_kept_fields(
                self.keep, text[space + 1:].encode(charset), priority.encode(charset),
                version.encode() if version else None, stamp.encode(charset), hostname.encode(charset),
            )
        else:
            body = text.encode(charset)
        return headers, body

    def _timestamp(self, text: str, position: int) -> tuple[str, str, int]:
        first = text[position:position + 1]
        if first == "-":
            if len(text) <= position + 2:
                raise ValueError("missing hostname")
            return "-", str(int(time.time() * 1000)), position + 2
        if "A" <= first <= "Z":
            if len(text) <= position + 15:
                raise ValueError("bad timestamp format")
            stamp = text[position:position + 15]
            millis = self._rfc3164_times.get(stamp.encode(), _rfc3164_utc)
            return stamp, millis or "0", position + 16
        space = text.find(" ", position)
        if space < 0:
            raise ValueError("bad timestamp format")
        stamp = text[position:space]
        return stamp, rfc3339_millis(stamp), space + 1


_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?")


def rfc3339_millis(stamp: str) -> str:
    """SyslogParser's RFC 3339 reading: zone and fraction honoured; raises ValueError if invalid."""
    match = _RFC3339.fullmatch(stamp)
    if match is None:
        raise ValueError(f"bad timestamp {stamp!r}")
    base, fraction, zone = match.groups()
    seconds = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    if zone is None:
        raise ValueError(f"timestamp {stamp!r} has no time zone")
    if zone != "Z":
        seconds -= _offset_seconds(zone.encode())
    millis = int((fraction + "00")[:3]) if fraction else 0
    return str(seconds * 1000 + millis)
