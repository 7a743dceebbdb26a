"""Interceptors: per-batch header and body rewriting and filtering, run in the listed order.

Each one follows its Flume namesake's keys and defaults (Flume 1.11). Per-batch work is done once
per batch (the clock is read once, regexes are compiled at start), per-event work is the edit itself.
Settings that cannot work (a regex that does not compile, a replacement naming a missing group)
are config errors from `validate_settings`, so the agent refuses them before it starts.
"""

from __future__ import annotations

import datetime
import logging
import re
import socket
import time
import uuid
import warnings
from collections.abc import Callable
from typing import ClassVar

from kubeflume_agent.config.keys import Key, Settings, boolean, charset, word_list
from kubeflume_agent.core.event import Event

log = logging.getLogger(__name__)


class Interceptor:
    keys: ClassVar[tuple[Key, ...]] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def intercept(self, events: list[Event]) -> list[Event]:
        """Return the batch to pass on: events may be edited in place, dropped, never added."""
        raise NotImplementedError

    @classmethod
    def validate_settings(cls, settings: Settings) -> list[tuple[str, str]]:
        return []


class InvalidSetting(ValueError):
    """Settings an interceptor cannot be built from; `problems` are (key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems))


def _validated_by_building(cls, settings: Settings) -> list[tuple[str, str]]:
    """validate_settings for interceptors whose constructor compiles what it needs: a regex that
    does not compile is then a config error, found before the agent starts."""
    try:
        cls(settings)
    except InvalidSetting as error:
        return error.problems
    return []


# --- Java regular expressions ------------------------------------------------------------------
#
# Flume's patterns are java.util.regex patterns, which Python's `re` mostly reads alike. Handled:
# `\d \w \s \b` and case folding are ASCII-only in Java (re.ASCII); `(?<name>...)` and `\k<name>`;
# `\Q...\E` quoting; `\z` and Java's `\Z` (end, or before a final line break); `\h`; the POSIX and
# ASCII classes `\p{Alpha}`, `\P{Digit}`... Java-only constructs Python would misread (nested
# classes, `&&` intersections) are refused. Not handled: Java's `.` also stops at `\r`, `\u0085`,
# `\u2028`, `\u2029` (Python's only at `\n`), and inline flags in mid-pattern are refused by Python.

_ASCII_CLASSES = {
    "Lower": "a-z", "Upper": "A-Z", "ASCII": "\\x00-\\x7f", "Alpha": "a-zA-Z", "Digit": "0-9",
    "Alnum": "a-zA-Z0-9", "Punct": "!-/:-@\\[-`{-~", "Graph": "!-~", "Print": " -~", "Blank": " \\t",
    "Cntrl": "\\x00-\\x1f\\x7f", "XDigit": "0-9a-fA-F", "Space": " \\t\\n\\x0b\\f\\r",
}
DIGITS = "0123456789"
_HORIZONTAL_SPACE = " \\t\\xa0\\u1680\\u180e\\u2000-\\u200a\\u202f\\u205f\\u3000"


def _java_class(pattern: str, at: int, in_class: bool) -> tuple[str, int]:
    """Translate `\\p{Name}` / `\\P{Name}` starting at `at`: (Python text, index after it)."""
    close = pattern.find("}", at + 3)
    name = pattern[at + 3:close] if close > 0 else ""
    body = _ASCII_CLASSES.get(name.removeprefix("Is"))
    negated = pattern[at + 1] == "P"
    if body is None:
        raise re.error(f"unsupported character class \\{pattern[at + 1]}{{{name}}} (supported: "
                       f"{', '.join(_ASCII_CLASSES)})")
    if in_class and negated:
        raise re.error(f"\\P{{{name}}} inside [...] is not supported; use [^...] instead")
    if in_class:
        return body, close + 1
    return f"[{'^' if negated else ''}{body}]", close + 1


def _java_escape(pattern: str, at: int, in_class: bool) -> tuple[str, int]:
    """Translate the escape starting with the backslash at `at`: (Python text, index after it)."""
    letter = pattern[at + 1] if at + 1 < len(pattern) else ""
    if letter == "Q":
        end = pattern.find("\\E", at + 2)
        literal = pattern[at + 2:] if end < 0 else pattern[at + 2:end]
        return re.escape(literal), len(pattern) if end < 0 else end + 2
    if letter in ("p", "P") and pattern[at + 2:at + 3] == "{":
        return _java_class(pattern, at, in_class)
    if letter == "k" and pattern[at + 2:at + 3] == "<":
        close = pattern.find(">", at + 3)
        if close > 0:
            return f"(?P={pattern[at + 3:close]})", close + 1
    if letter == "h":
        return (_HORIZONTAL_SPACE if in_class else f"[{_HORIZONTAL_SPACE}]"), at + 2
    if letter == "z":
        return "\\Z", at + 2
    if letter == "Z":
        return "(?=\\n?\\Z)", at + 2
    return pattern[at:at + 2], at + 2


def translate_java_regex(pattern: str) -> str:
    """A Python `re` pattern equivalent to the java.util.regex `pattern` (see the notes above)."""
    out: list[str] = []
    at, class_start = 0, -1
    while at < len(pattern):
        char = pattern[at]
        if char == "\\":
            text, at = _java_escape(pattern, at, class_start >= 0)
            out.append(text)
            continue
        if class_start >= 0:
            first = class_start + (2 if pattern[class_start + 1:class_start + 2] == "^" else 1)
            if char == "]" and at > first:
                class_start = -1
            elif char == "[":  # Java: a nested class (a union); Python: a literal "["
                raise re.error(f"nested character class at position {at} is not supported; "
                               "list its members in the enclosing class instead")
        elif char == "[":
            class_start = at
        elif pattern.startswith("(?<", at) and pattern[at + 3:at + 4] not in ("=", "!"):
            out.append("(?P<")
            at += 3
            continue
        out.append(char)
        at += 1
    return "".join(out)


def compile_java_regex(pattern: str, key: str) -> re.Pattern[str]:
    """Compile a Java regex, or raise InvalidSetting naming `key`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)  # Java's nested classes and `&&`
            return re.compile(translate_java_regex(pattern), re.ASCII)
    except (re.error, FutureWarning) as error:
        raise InvalidSetting([(key, f"invalid regular expression {pattern!r}: {error}")]) from None


def java_replacement(template: str, regex: re.Pattern[str], key: str) -> str:
    """A `re.sub` template for a Java Matcher.replaceAll replacement: `$1`, `${name}`, `\\$`.

    As in Java, `$12` means group 12 only if the pattern has that many groups (else group 1 and
    a literal 2); a reference to a missing group is an error here rather than at the first event.
    """
    out: list[str] = []
    at = 0
    while at < len(template):
        char = template[at]
        if char == "\\":
            if at + 1 == len(template):
                raise InvalidSetting([(key, "character to be escaped is missing at the end")])
            out.append("\\\\" if template[at + 1] == "\\" else template[at + 1])
            at += 2
        elif char == "$":
            reference, at = _group_reference(template, at + 1, regex, key)
            out.append(f"\\g<{reference}>")
        else:
            out.append(char)
            at += 1
    return "".join(out)


def _group_reference(template: str, at: int, regex: re.Pattern[str], key: str) -> tuple[str, int]:
    if template[at:at + 1] == "{":
        close = template.find("}", at)
        name = template[at + 1:close] if close > 0 else ""
        if name not in regex.groupindex:
            raise InvalidSetting([(key, f"no group named {{{name}}} in the search pattern")])
        return name, close + 1
    if at == len(template) or template[at] not in DIGITS:  # ("" is in every string)
        raise InvalidSetting([(key, "illegal group reference: '$' must be followed by a group number or "
                                    "{name}; write \\$ for a literal dollar sign")])
    group = int(template[at])
    at += 1
    while at < len(template) and template[at] in DIGITS and group * 10 + int(template[at]) <= regex.groups:
        group = group * 10 + int(template[at])
        at += 1
    if group > regex.groups:
        raise InvalidSetting([(key, f"no group {group} in the search pattern (it has {regex.groups})")])
    return str(group), at


# --- Joda-Time patterns ----------------------------------------------------------------------

# Joda letter -> strptime directive, by run length (the last entry covers longer runs).
_JODA_LETTERS: dict[str, tuple[str, ...]] = {
    "y": ("%Y", "%y", "%Y"), "Y": ("%Y", "%y", "%Y"), "M": ("%m", "%m", "%b", "%B"), "d": ("%d",),
    "H": ("%H",), "h": ("%I",), "m": ("%M",), "s": ("%S",), "S": ("%f",), "a": ("%p",),
    "Z": ("%z", "%z"), "E": ("%a", "%a", "%a", "%A"), "D": ("%j",),
}
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
MILLISECOND = datetime.timedelta(milliseconds=1)


def joda_to_strptime(pattern: str) -> tuple[str, bool]:
    """(strptime format, whether the pattern has a year) for a Joda DateTimeFormat pattern.

    Raises ValueError for letters strptime has no directive for.
    """
    out: list[str] = []
    has_year = False
    at = 0
    while at < len(pattern):
        char = pattern[at]
        run = len(pattern[at:]) - len(pattern[at:].lstrip(char))
        if char == "'":
            literal, at = _joda_quoted(pattern, at)
            out.append(literal.replace("%", "%%"))
            continue
        if char.isascii() and char.isalpha():
            directives = _JODA_LETTERS.get(char)
            if directives is None or (char == "Z" and run > 2):
                raise ValueError(f"pattern letter {char * run!r} is not supported (supported: "
                                 f"{' '.join(_JODA_LETTERS)}, 'quoted text')")
            out.append(directives[min(run, len(directives)) - 1])
            has_year = has_year or char in "yY"
            at += run
            continue
        out.append("%%" if char == "%" else char)
        at += 1
    return "".join(out), has_year


def _joda_quoted(pattern: str, at: int) -> tuple[str, int]:
    """Text in single quotes ('' is a quote): (literal, index after the closing quote)."""
    if pattern.startswith("''", at):
        return "'", at + 2
    literal: list[str] = []
    at += 1
    while at < len(pattern):
        if pattern.startswith("''", at):
            literal.append("'")
            at += 2
        elif pattern[at] == "'":
            return "".join(literal), at + 1
        else:
            literal.append(pattern[at])
            at += 1
    raise ValueError("unterminated quote in pattern")


class MillisSerializer:
    """Flume's RegexExtractorInterceptorMillisSerializer: a date in a Joda pattern -> epoch millis.

    Dates without a zone are in the local zone (Flume: the JVM's default zone); a pattern without
    a year parses as 1970, as Joda does (strptime alone would say 1900).
    """

    def __init__(self, pattern: str) -> None:
        self.format, self._has_year = joda_to_strptime(pattern)
        if not self._has_year:
            self.format = "%Y " + self.format

    def __call__(self, value: str) -> str:
        parsed = datetime.datetime.strptime(value if self._has_year else "1970 " + value, self.format)
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()
        return str((parsed - EPOCH) // MILLISECOND)


def _pass_through(value: str) -> str:
    return value


# --- the interceptors --------------------------------------------------------------------------


class TimestampInterceptor(Interceptor):
    """Sets the time of interception in epoch millis (one reading per batch)."""

    keys = (
        Key("headerName", str, "timestamp", doc="header that receives the time"),
        Key("preserveExisting", boolean, False, doc="keep a value the event already has"),
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.header: str = settings["headerName"]
        self.preserve: bool = settings["preserveExisting"]

    def intercept(self, events: list[Event]) -> list[Event]:
        _set_header(events, self.header, str(time.time_ns() // 1_000_000), self.preserve)
        return events


class HostInterceptor(Interceptor):
    """Sets this host's IP address (or canonical name), looked up once, as Flume does."""

    keys = (
        Key("hostHeader", str, "host", doc="header that receives the host"),
        Key("useIP", boolean, True, doc="the IP address; false: the canonical host name"),
        Key("preserveExisting", boolean, False, doc="keep a value the event already has"),
    )

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.header: str = settings["hostHeader"]
        self.preserve: bool = settings["preserveExisting"]
        self.host = self._local_host(settings["useIP"])

    @staticmethod
    def _local_host(use_ip: bool) -> str | None:
        try:
            return socket.gethostbyname(socket.gethostname()) if use_ip else socket.getfqdn()
        except OSError as error:
            log.warning("could not find the local host address; host headers are not set: %s", error)
            return None

    def intercept(self, events: list[Event]) -> list[Event]:
        if self.host is not None:
            _set_header(events, self.header, self.host, self.preserve)
        return events


class StaticInterceptor(Interceptor):
    """Sets one fixed header."""

    keys = (
        Key("key", str, "key", doc="header name"),
        Key("value", str, "value", doc="header value"),
        Key("preserveExisting", boolean, True, doc="keep a value the event already has"),
    )

    def intercept(self, events: list[Event]) -> list[Event]:
        settings = self.settings
        _set_header(events, settings["key"], settings["value"], settings["preserveExisting"])
        return events


class UUIDInterceptor(Interceptor):
    """Sets a random UUID per event (Flume's morphline UUIDInterceptor), for de-duplication downstream."""

    keys = (
        Key("headerName", str, "id", doc="header that receives the id"),
        Key("preserveExisting", boolean, True, doc="keep an id the event already has"),
        Key("prefix", str, "", doc="text put before each UUID"),
    )

    def intercept(self, events: list[Event]) -> list[Event]:
        settings = self.settings
        header, prefix, preserve = settings["headerName"], settings["prefix"], settings["preserveExisting"]
        for event in events:
            if not (preserve and header in event.headers):
                event.headers[header] = prefix + str(uuid.uuid4())
        return events


def _set_header(events: list[Event], header: str, value: str, preserve: bool) -> None:
    for event in events:
        if not (preserve and header in event.headers):
            event.headers[header] = value


class RemoveHeaderInterceptor(Interceptor):
    """Removes headers by name, from a list, or whose whole name matches a regex."""

    keys = (
        Key("withName", str, None, doc="one header to remove"),
        Key("fromList", str, None, doc="headers to remove, split by fromListSeparator"),
        Key("fromListSeparator", str, "\\s*,\\s*", doc="regex separating the names in fromList"),
        Key("matching", str, None, doc="remove every header whose whole name matches this regex"),
    )
    validate_settings = classmethod(_validated_by_building)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.name: str | None = settings["withName"]
        names = settings["fromList"]
        separator = compile_java_regex(settings["fromListSeparator"], "fromListSeparator")
        self.names = frozenset(n for n in separator.split(names) if n) if names is not None else frozenset()
        matching = settings["matching"]
        self.matching = compile_java_regex(matching, "matching") if matching is not None else None

    def intercept(self, events: list[Event]) -> list[Event]:
        name, names, matching = self.name, self.names, self.matching
        for event in events:
            headers = event.headers
            if name is not None:
                headers.pop(name, None)
            if names or matching is not None:
                for header in [h for h in headers if h in names or (matching and matching.fullmatch(h))]:
                    del headers[header]
        return events


class SearchReplaceInterceptor(Interceptor):
    """Rewrites the body with a regex (Java Matcher.replaceAll: every match, `$1` groups)."""

    keys = (
        Key("searchPattern", str, required=True, doc="regex to search the body for"),
        Key("replaceString", str, "", doc="replacement; $1 or ${name} insert groups"),
        Key("charset", charset, "utf-8", doc="charset of the body"),
    )
    validate_settings = classmethod(_validated_by_building)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if not settings["searchPattern"]:
            raise InvalidSetting([("searchPattern", "must not be empty")])
        self.regex = compile_java_regex(settings["searchPattern"], "searchPattern")
        self.replacement = java_replacement(settings["replaceString"], self.regex, "replaceString")
        self.charset = settings["charset"]

    def intercept(self, events: list[Event]) -> list[Event]:
        regex, replacement, charset = self.regex, self.replacement, self.charset
        for event in events:
            # Like Java's String(bytes, charset) and getBytes(charset): bad bytes become U+FFFD.
            event.body = regex.sub(replacement, event.body.decode(charset, "replace")).encode(charset, "replace")
        return events


class RegexFilteringInterceptor(Interceptor):
    """Keeps (or with excludeEvents drops) the events whose body contains a match of `regex`."""

    keys = (
        Key("regex", str, ".*", doc="regex searched for anywhere in the body"),
        Key("excludeEvents", boolean, False, doc="drop matching events instead of keeping them"),
    )
    validate_settings = classmethod(_validated_by_building)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.regex = compile_java_regex(settings["regex"], "regex")
        self.exclude: bool = settings["excludeEvents"]

    def intercept(self, events: list[Event]) -> list[Event]:
        search, keep_matches = self.regex.search, not self.exclude
        return [e for e in events if (search(e.body.decode("utf-8", "replace")) is not None) is keep_matches]


MILLIS_SERIALIZER = "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer"
PASS_THROUGH_SERIALIZER = "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer"


class RegexExtractorInterceptor(Interceptor):
    """Copies the groups of the first match of `regex` in the body into headers, one serializer per group.

    Group n goes to the n-th listed serializer's header; groups without a serializer are skipped,
    and so are groups that took no part in the match (Flume would put a null header). A value the
    millis serializer cannot parse leaves its header unset and is logged: the event still passes.
    """

    keys = (
        Key("regex", str, required=True, doc="regex searched for in the body"),
        Key("serializers", word_list, required=True, doc="serializer names, one per group, in group order"),
        Key("serializers.", str, prefix=True,
            doc="serializers.<s>.name = header; .type = DEFAULT or the millis serializer; .pattern = Joda pattern"),
    )
    validate_settings = classmethod(_validated_by_building)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        problems: list[tuple[str, str]] = []
        self.regex: re.Pattern[str] | None = None
        if not settings["regex"]:
            problems.append(("regex", "must not be empty"))
        else:
            try:
                self.regex = compile_java_regex(settings["regex"], "regex")
            except InvalidSetting as error:
                problems += error.problems
        if not settings["serializers"]:
            problems.append(("serializers", "name at least one serializer"))
        self.serializers: list[tuple[str, Callable[[str], str]]] = []
        for name in settings["serializers"]:
            try:
                self.serializers.append(self._serializer(name, settings["serializers."]))
            except InvalidSetting as error:
                problems += error.problems
        if problems:
            raise InvalidSetting(problems)

    @staticmethod
    def _serializer(name: str, params: dict[str, str]) -> tuple[str, Callable[[str], str]]:
        key = f"serializers.{name}."
        header = params.get(f"{name}.name", "")
        if not header:
            raise InvalidSetting([(key + "name", "is required: the header this group goes to")])
        kind = params.get(f"{name}.type", "DEFAULT")
        if kind.upper() == "DEFAULT" or kind == PASS_THROUGH_SERIALIZER:
            return header, _pass_through
        if kind != MILLIS_SERIALIZER:
            raise InvalidSetting([(key + "type", f"unsupported serializer {kind!r}; expected DEFAULT or "
                                                 f"{MILLIS_SERIALIZER}")])
        pattern = params.get(f"{name}.pattern", "")
        if not pattern:
            raise InvalidSetting([(key + "pattern", "is required for the millis serializer")])
        try:
            return header, MillisSerializer(pattern)
        except ValueError as error:
            raise InvalidSetting([(key + "pattern", str(error))]) from None

    def intercept(self, events: list[Event]) -> list[Event]:
        search, serializers = self.regex.search, self.serializers
        for event in events:
            match = search(event.body.decode("utf-8", "replace"))
            if match is None:
                continue
            for (header, serialize), value in zip(serializers, match.groups(), strict=False):
                if value is not None:
                    self._put(event, header, serialize, value)
        return events

    @staticmethod
    def _put(event: Event, header: str, serialize: Callable[[str], str], value: str) -> None:
        try:
            event.headers[header] = serialize(value)
        except ValueError as error:
            log.warning("regex_extractor: header %s not set: cannot serialize %r: %s", header, value, error)
