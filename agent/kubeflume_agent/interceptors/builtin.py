"""Interceptors: per-batch header and body rewriting and filtering, run in the listed order.

Each one follows its Flume namesake's keys and defaults (Flume 1.11). Per-batch work is done once
per batch (the clock is read once, regexes are compiled at start), per-event work is the edit itself.
Configs that cannot work (a regex that does not compile, a replacement naming a missing group)
are config errors from `config_problems`, so the agent refuses them before it starts.
"""

from __future__ import annotations

import logging
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from kubeflume_agent.config.keys import Config, InvalidSetting, boolean, charset, key, word_list
from kubeflume_agent.core.event import Event
from kubeflume_agent.interceptors.base import Interceptor, validated_by_building
from kubeflume_agent.protocols.java_patterns import MillisSerializer, compile_java_regex, java_replacement

log = logging.getLogger(__name__)


def _pass_through(value: str) -> str:
    return value


@dataclass(frozen=True)
class TimestampConfig(Config):
    header: str = key("headerName", str, "timestamp", doc="header that receives the time")
    preserve: bool = key("preserveExisting", boolean, False, doc="keep a value the event already has")


class TimestampInterceptor(Interceptor[TimestampConfig]):
    """Sets the time of interception in epoch millis (one reading per batch)."""

    def __init__(self, config: TimestampConfig) -> None:
        super().__init__(config)
        self.header = config.header
        self.preserve = config.preserve

    def intercept(self, events: list[Event]) -> list[Event]:
        _set_header(events, self.header, str(time.time_ns() // 1_000_000), self.preserve)
        return events


@dataclass(frozen=True)
class HostConfig(Config):
    header: str = key("hostHeader", str, "host", doc="header that receives the host")
    use_ip: bool = key("useIP", boolean, True, doc="the IP address; false: the canonical host name")
    preserve: bool = key("preserveExisting", boolean, False, doc="keep a value the event already has")


class HostInterceptor(Interceptor[HostConfig]):
    """Sets this host's IP address (or canonical name), looked up once, as Flume does."""

    def __init__(self, config: HostConfig) -> None:
        super().__init__(config)
        self.header = config.header
        self.preserve = config.preserve
        self.host = self._local_host(config.use_ip)

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


@dataclass(frozen=True)
class StaticConfig(Config):
    header: str = key("key", str, "key", doc="header name")
    value: str = key("value", str, "value", doc="header value")
    preserve: bool = key("preserveExisting", boolean, True, doc="keep a value the event already has")


class StaticInterceptor(Interceptor[StaticConfig]):
    """Sets one fixed header."""

    def __init__(self, config: StaticConfig) -> None:
        super().__init__(config)

    def intercept(self, events: list[Event]) -> list[Event]:
        config = self.config
        _set_header(events, config.header, config.value, config.preserve)
        return events


@dataclass(frozen=True)
class UUIDConfig(Config):
    header: str = key("headerName", str, "id", doc="header that receives the id")
    preserve: bool = key("preserveExisting", boolean, True, doc="keep an id the event already has")
    prefix: str = key("prefix", str, "", doc="text put before each UUID")


class UUIDInterceptor(Interceptor[UUIDConfig]):
    """Sets a random UUID per event (Flume's morphline UUIDInterceptor), for de-duplication downstream."""

    def __init__(self, config: UUIDConfig) -> None:
        super().__init__(config)

    def intercept(self, events: list[Event]) -> list[Event]:
        config = self.config
        header, prefix, preserve = config.header, config.prefix, config.preserve
        for event in events:
            if not (preserve and header in event.headers):
                event.headers[header] = prefix + str(uuid.uuid4())
        return events


def _set_header(events: list[Event], header: str, value: str, preserve: bool) -> None:
    for event in events:
        if not (preserve and header in event.headers):
            event.headers[header] = value


@dataclass(frozen=True)
class RemoveHeaderConfig(Config):
    name: str | None = key("withName", str, None, doc="one header to remove")
    names: str | None = key("fromList", str, None, doc="headers to remove, split by fromListSeparator")
    separator: str = key("fromListSeparator", str, "\\s*,\\s*", doc="regex separating the names in fromList")
    matching: str | None = key("matching", str, None, doc="remove every header whose whole name matches this regex")


class RemoveHeaderInterceptor(Interceptor[RemoveHeaderConfig]):
    """Removes headers by name, from a list, or whose whole name matches a regex."""

    config_problems = classmethod(validated_by_building)

    def __init__(self, config: RemoveHeaderConfig) -> None:
        super().__init__(config)
        self.name = config.name
        names = config.names
        separator = compile_java_regex(config.separator, "fromListSeparator")
        self.names = frozenset(n for n in separator.split(names) if n) if names is not None else frozenset()
        matching = config.matching
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


@dataclass(frozen=True)
class SearchReplaceConfig(Config):
    search: str | None = key("searchPattern", str, required=True, doc="regex to search the body for")
    replace: str = key("replaceString", str, "", doc="replacement; $1 or ${name} insert groups")
    charset: str = key("charset", charset, "utf-8", doc="charset of the body")


class SearchReplaceInterceptor(Interceptor[SearchReplaceConfig]):
    """Rewrites the body with a regex (Java Matcher.replaceAll: every match, `$1` groups)."""

    config_problems = classmethod(validated_by_building)

    def __init__(self, config: SearchReplaceConfig) -> None:
        super().__init__(config)
        if not config.search:
            raise InvalidSetting([("searchPattern", "must not be empty")])
        self.regex = compile_java_regex(config.search, "searchPattern")
        self.replacement = java_replacement(config.replace, self.regex, "replaceString")
        self.charset = config.charset

    def intercept(self, events: list[Event]) -> list[Event]:
        regex, replacement, charset = self.regex, self.replacement, self.charset
        for event in events:
            # Like Java's String(bytes, charset) and getBytes(charset): bad bytes become U+FFFD.
            event.body = regex.sub(replacement, event.body.decode(charset, "replace")).encode(charset, "replace")
        return events


@dataclass(frozen=True)
class RegexFilteringConfig(Config):
    regex: str = key("regex", str, ".*", doc="regex searched for anywhere in the body")
    exclude: bool = key("excludeEvents", boolean, False, doc="drop matching events instead of keeping them")


class RegexFilteringInterceptor(Interceptor[RegexFilteringConfig]):
    """Keeps (or with excludeEvents drops) the events whose body contains a match of `regex`."""

    config_problems = classmethod(validated_by_building)

    def __init__(self, config: RegexFilteringConfig) -> None:
        super().__init__(config)
        self.regex = compile_java_regex(config.regex, "regex")
        self.exclude = config.exclude

    def intercept(self, events: list[Event]) -> list[Event]:
        search, keep_matches = self.regex.search, not self.exclude
        return [e for e in events if (search(e.body.decode("utf-8", "replace")) is not None) is keep_matches]


MILLIS_SERIALIZER = "org.apache.flume.interceptor.RegexExtractorInterceptorMillisSerializer"
PASS_THROUGH_SERIALIZER = "org.apache.flume.interceptor.RegexExtractorInterceptorPassThroughSerializer"


@dataclass(frozen=True)
class RegexExtractorConfig(Config):
    regex: str | None = key("regex", str, required=True, doc="regex searched for in the body")
    serializers: list[str] | None = key("serializers", word_list, required=True,
                                        doc="serializer names, one per group, in group order")
    serializer_params: dict[str, str] = key(
        "serializers.", str, prefix=True,
        doc="serializers.<s>.name = header; .type = DEFAULT or the millis serializer; .pattern = Joda pattern")


class RegexExtractorInterceptor(Interceptor[RegexExtractorConfig]):
    """Copies the groups of the first match of `regex` in the body into headers, one serializer per group.

    Group n goes to the n-th listed serializer's header; groups without a serializer are skipped,
    and so are groups that took no part in the match (Flume would put a null header). A value the
    millis serializer cannot parse leaves its header unset and is logged: the event still passes.
    """

    config_problems = classmethod(validated_by_building)

    def __init__(self, config: RegexExtractorConfig) -> None:
        super().__init__(config)
        problems: list[tuple[str, str]] = []
        regex = None
        if not config.regex:
            problems.append(("regex", "must not be empty"))
        else:
            try:
                regex = compile_java_regex(config.regex, "regex")
            except InvalidSetting as error:
                problems += error.problems
        if not config.serializers:
            problems.append(("serializers", "name at least one serializer"))
        self.serializers: list[tuple[str, Callable[[str], str]]] = []
        for name in config.serializers or []:
            try:
                self.serializers.append(self._serializer(name, config.serializer_params))
            except InvalidSetting as error:
                problems += error.problems
        if problems or regex is None:
            raise InvalidSetting(problems)
        self.regex: re.Pattern[str] = regex

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
