"""Flume's escape sequences in `hdfs.path` and `hdfs.filePrefix` (BucketPath.escapeString).

`%{name}` is a header value (empty when missing); `%[localhost]`, `%[IP]`, `%[FQDN]` name this host;
`%t` is the event time in ms, `%s` in seconds, and the other `%x` letters are date fields of the
event time formatted as Java's SimpleDateFormat would, in English. `%%` is a percent sign; an
unknown `%x` becomes the empty string, as in Flume. The event time is the `timestamp` header,
or the sink's clock with `hdfs.useLocalTimeStamp`; `hdfs.round*` rounds it down first.

A template is parsed once into parts; expanding an escape-free template costs nothing.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

TAG = re.compile(r"%(\w|%)|%\{([\w.-]+)\}|%\[(\w+)\]")

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")


def _zone_offset(moment: datetime) -> str:
    """Java's `ZZZ`: +hhmm."""
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


# %x letter -> the date field it prints (Flume's table, SimpleDateFormat pattern in comments)
DATE_FIELDS: dict[str, Callable[[datetime], str]] = {
    "a": lambda d: DAYS[d.weekday()][:3],                # EEE
    "A": lambda d: DAYS[d.weekday()],                    # EEEE
    "b": lambda d: MONTHS[d.month - 1][:3],              # MMM
    "B": lambda d: MONTHS[d.month - 1],                  # MMMM
    "c": lambda d: f"{DAYS[d.weekday()][:3]} {MONTHS[d.month - 1][:3]} {d.day} {d:%H:%M:%S} {d.year}",
    "d": lambda d: f"{d.day:02d}",                        # dd
    "e": lambda d: str(d.day),                            # d
    "D": lambda d: f"{d:%m/%d/%y}",                       # MM/dd/yy
    "H": lambda d: f"{d.hour:02d}",                       # HH
    "I": lambda d: f"{(d.hour % 12) or 12:02d}",          # hh
    "j": lambda d: f"{d.timetuple().tm_yday:03d}",        # DDD
    "k": lambda d: str(d.hour),                           # H
    "l": lambda d: str((d.hour % 12) or 12),              # h
    "m": lambda d: f"{d.month:02d}",                      # MM
    "n": lambda d: str(d.month),                          # M
    "M": lambda d: f"{d.minute:02d}",                     # mm
    "p": lambda d: "AM" if d.hour < 12 else "PM",         # a
    "S": lambda d: f"{d.second:02d}",                     # ss
    "y": lambda d: f"{d.year % 100:02d}",                 # yy
    "Y": lambda d: str(d.year),                           # yyyy
    "z": _zone_offset,                                    # ZZZ
}
TIME_LETTERS = {*DATE_FIELDS, "s", "t"}

ROUND_UNITS = ("second", "minute", "hour")


class MissingTimestamp(ValueError):
    """A time escape met an event without a usable `timestamp` header."""


def parse_time_zone(name: str) -> tzinfo | None:
    """`hdfs.timeZone`: an IANA name such as America/Los_Angeles; "local" (or empty) is the host's zone."""
    if not name or name.strip().lower() == "local":
        return None
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as UTC or Europe/Paris") from None


def host_escapes() -> dict[str, str]:
    hostname = socket.gethostname()
    try:
        address = socket.gethostbyname(hostname)
    except OSError:
        address = "127.0.0.1"
    return {"localhost": hostname, "IP": address, "FQDN": socket.getfqdn()}


class PathTemplate:
    """One escaped string (`hdfs.path`, `hdfs.filePrefix`...), parsed once."""

    def __init__(
        self,
        template: str,
        *,
        time_zone: tzinfo | None = None,
        round_unit: str | None = None,
        round_value: int = 1,
        use_local_timestamp: bool = False,
    ) -> None:
        self.template = template
        self.time_zone = time_zone
        self.round_unit = round_unit
        self.round_value = max(round_value, 1)
        self.use_local_timestamp = use_local_timestamp
        self.parts: list[str | tuple[str, str]] = []  # literals, or (kind, name) with kind "header"/"time"
        self.needs_time = False
        self._parse(template)
        has_escapes = any(not isinstance(part, str) for part in self.parts)
        self.static: str | None = None if has_escapes else "".join(self.parts)  # type: ignore[arg-type]

    def _parse(self, template: str) -> None:
        hosts: dict[str, str] | None = None
        literal = ""
        position = 0
        for match in TAG.finditer(template):
            literal += template[position:match.start()]
            position = match.end()
            letter, header, host = match.groups()
            if header is not None:
                self._add(literal, ("header", header))
                literal = ""
            elif host is not None:
                hosts = hosts or host_escapes()
                literal += hosts.get(host, "")
            elif letter == "%":
                literal += "%"
            elif letter in TIME_LETTERS:
                self.needs_time = True
                self._add(literal, ("time", letter))
                literal = ""
            # any other %x expands to nothing, as in Flume
        literal += template[position:]
        if literal:
            self.parts.append(literal)

    def _add(self, literal: str, part: tuple[str, str]) -> None:
        if literal:
            self.parts.append(literal)
        self.parts.append(part)

    def expand(self, headers: Mapping[str, str], now_ms: int) -> str:
        """The string for one event; `now_ms` is used with `useLocalTimeStamp`."""
        if self.static is not None:
            return self.static
        ts = self.event_time(headers, now_ms) if self.needs_time else 0
        moment: datetime | None = None
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            kind, name = part
            if kind == "header":
                out.append(headers.get(name, ""))
            elif name == "t":
                out.append(str(ts))
            elif name == "s":
                out.append(str(ts // 1000))
            else:
                moment = moment or self._moment(ts)
                out.append(DATE_FIELDS[name](moment))
        return "".join(out)

    def event_time(self, headers: Mapping[str, str], now_ms: int) -> int:
        if self.use_local_timestamp:
            ts = now_ms
        else:
            raw = headers.get("timestamp")
            if raw is None:
                raise MissingTimestamp(
                    f"{self.template!r} needs the event time, but an event has no 'timestamp' header; "
                    "add a timestamp interceptor to the source or set hdfs.useLocalTimeStamp = true")
            try:
                ts = int(raw)
            except ValueError:
                raise MissingTimestamp(f"cannot read the event's timestamp header {raw!r} as epoch ms") from None
        return self.round_down(ts) if self.round_unit else ts

    def _moment(self, ts: int) -> datetime:
        if self.time_zone is None:
            return datetime.fromtimestamp(ts / 1000).astimezone()
        return datetime.fromtimestamp(ts / 1000, self.time_zone)

    def round_down(self, ts: int) -> int:
        """Round down to a multiple of `round_value` units of the wall clock in the path's zone."""
        moment = self._moment(ts)
        step = self.round_value
        if self.round_unit == "second":
            moment = moment.replace(second=moment.second - moment.second % step, microsecond=0)
        elif self.round_unit == "minute":
            moment = moment.replace(minute=moment.minute - moment.minute % step, second=0, microsecond=0)
        else:
            moment = moment.replace(hour=moment.hour - moment.hour % step, minute=0, second=0, microsecond=0)
        return int(moment.timestamp() * 1000)
