"""Interceptors: per-batch header and body rewriting and filtering, run in the listed order.

Each one follows its Flume namesake's keys and defaults (Flume 1.11). Per-batch work is done once
per batch (the clock is read once, regexes are compiled at start), per-event work is the edit itself.
Settings that cannot work (a regex that does not compile, a replacement naming a missing group)
are config errors from `validate_settings`, so the agent refuses them before it starts.
"""

from __future__ import annotations

import logging
import re
import socket
import time
import uuid
from collections.abc import Callable

from kubeflume_agent.config.keys import InvalidSetting, Key, Settings, boolean, charset, word_list
from kubeflume_agent.core.event import Event
from kubeflume_agent.interceptors.base import Interceptor, validated_by_building
from kubeflume_agent.protocols.java_patterns import MillisSerializer, compile_java_regex, java_replacement

log = logging.getLogger(__name__)


def _pass_through(value: str) -> str:
    return value


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
    validate_settings = classmethod(validated_by_building)

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
    validate_settings = classmethod(validated_by_building)

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
    validate_settings = classmethod(validated_by_building)

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
    validate_settings = classmethod(validated_by_building)

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
