"""Flume's `http` source: POSTed events, turned into events by a handler, one transaction each.

Handlers (`handler` key):
* `org.apache.flume.source.http.JSONHandler` (default; alias `json`): a JSON array of
  `{"headers": {...}, "body": "..."}`; the body string is encoded back in the request charset
  (UTF-8, UTF-16 or UTF-32 only, as Flume);
* `org.apache.flume.source.http.BLOBHandler` (alias `blob`) and the morphline
  `org.apache.flume.sink.solr.morphline.BlobHandler`: the raw request body is one event, the
  query parameters its headers; `handler.mandatoryParameters`, `handler.maxBlobLength`;
* any Python class by dotted path (`package.module.Class` or `package.module:Class`): built with
  the `handler.*` settings, it implements `async def get_events(request) -> list[Event]` and
  raises `BadRequest` for a client error. The request is a `sources.http_server.HttpRequest`
  (`method`, `path`, `query`, `headers`, `charset`, `remote`, `await read()`, `await text()`).

Answers as Flume 1.11: 200 stored; 400 `BadRequest` (malformed JSON); 503 channel full; 500 any
other handler error; 403 for TRACE/OPTIONS. Unlike Flume, GET is refused (405) unless
`enableGet = true` (Flume passes GET to the handler "for experimentation"), request bodies are
bounded by `max-request-bytes` and requests by `max-batch-events` (413 above either), request
heads by `HttpConfiguration.requestHeaderSize` (Jetty's, 8192 bytes: 400 above it). A JSON
body decodes into some 40 times its size in objects, so bodies above 1 MiB are parsed counting
the objects and given up as soon as they exceed what `max-batch-events` events can hold.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from kubeflume_agent.config.keys import (
    InvalidValue,
    boolean,
    comma_list,
    declared_key,
    key,
    positive_integer,
)
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols import tls
from kubeflume_agent.protocols.accelerators import compiled
from kubeflume_agent.protocols.java_charsets import decode_java, java_encoder
from kubeflume_agent.sources.base import BindPortKeys, ListeningSource
from kubeflume_agent.sources.http_server import (
    DEFAULT_MAX_HEAD,
    HttpRequest,
    HttpResponse,
    HttpServer,
    http_server_for,
)
from kubeflume_agent.sources.tcp_server import (
    DEFAULT_MAX_BATCH_EVENTS,
    DEFAULT_MAX_REQUEST_BYTES,
    MAX_BATCH_EVENTS_KEY,
    ConnectionKeys,
    Outcome,
    deliver_call,
)

log = logging.getLogger(__name__)

FAST_PARSE_BYTES = 1024 * 1024  # orjson below this size: at most some 40 MB of objects
# The usual request (UTF-8, `[{"headers": {...}, "body": "..."}...]`) read straight into events
# (protocols/_json_fast.pyx), or None: orjson and _json_events, the reference, read every request.
JSON_EVENTS_ACCELERATOR = compiled("_json_fast", "json_events")


class BadRequest(Exception):
    """A handler's verdict that the request is malformed: answered 400 (HTTPBadRequestException)."""


class UnusableRequest(Exception):
    """The handler can make no events of this request: answered 500, where Flume's handlers throw."""


class TooManyEvents(Exception):
    """The request holds more events than `max-batch-events`: answered 413."""


class JsonHandler:
    """Flume's JSONHandler."""

    CHARSETS = ("utf-8", "utf-16", "utf-32")

    def __init__(self, settings: dict[str, str], max_events: int = DEFAULT_MAX_BATCH_EVENTS) -> None:
        self.settings = settings
        self.max_events = max_events

    async def get_events(self, request: HttpRequest) -> list[Event]:
        charset = (request.charset or "utf-8").lower().replace("_", "-")
        if charset not in self.CHARSETS:
            raise UnusableRequest(f"unsupported charset {charset}: use UTF-8, UTF-16 or UTF-32")
        raw = request.body
        if not raw.strip():
            raise UnusableRequest("empty request body")
        if charset == "utf-8" and len(raw) <= FAST_PARSE_BYTES and JSON_EVENTS_ACCELERATOR is not None:
            events = JSON_EVENTS_ACCELERATOR(raw)
            if events is not None:
                return self._at_most_max(events)
        document = self._parse(raw, charset)
        if document is None:
            raise UnusableRequest("request body is null")
        if not isinstance(document, list):
            raise BadRequest("expected a JSON array of events")
        self._at_most_max(document)
        codec, bom = java_encoder(charset)  # Java's: UTF-16 with a big-endian BOM
        return _json_events(document, codec, bom)

    def _at_most_max(self, items: list[Any]) -> list[Any]:
        if len(items) > self.max_events:
            raise TooManyEvents(f"{len(items)} events, more than max-batch-events = {self.max_events}")
        return items

    def _parse(self, raw: bytes, charset: str) -> Any:
        if len(raw) <= FAST_PARSE_BYTES:
            try:  # orjson reads UTF-8 bytes itself, checking the encoding as it goes
                return orjson.loads(raw if charset == "utf-8" else _decode_java(raw, charset))
            except orjson.JSONDecodeError as error:
                raise BadRequest(f"malformed JSON: {error}") from error
        text = _decode_java(raw, charset)
        # An event is one object, its headers another: stop counting objects beyond that.
        objects_left = 2 * self.max_events + 1

        def count_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            nonlocal objects_left
            objects_left -= 1
            if objects_left < 0:
                raise TooManyEvents(f"more objects than {self.max_events} events (max-batch-events) can hold")
            return dict(pairs)

        try:
            return json.loads(text, object_pairs_hook=count_object)
        except json.JSONDecodeError as error:
            raise BadRequest(f"malformed JSON: {error}") from error


def _decode_java(raw: bytes, charset: str) -> str:
    try:
        return decode_java(raw, charset)
    except UnicodeDecodeError as error:
        raise BadRequest(f"request body is not {charset}: {error}") from error


def _scalar_text(value: Any, what: str) -> str:
    """Gson turns JSON scalars into strings when a string is expected; objects are an error."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise BadRequest(f"{what} must be a string, got {type(value).__name__}")


def _json_events(document: list[Any], codec: str, bom: bytes) -> list[Event]:
    """The events of a request. The usual item, `{"headers": {text: text...}, "body": text}`,
    keeps its parsed headers dict as it is; any other goes through `_json_event`'s checks."""
    events: list[Event] = []
    append = events.append
    for item in document:
        if type(item) is dict:
            headers = item.get("headers")
            body = item.get("body")
            if type(body) is str and type(headers) is dict and _all_text(headers.values()):
                append(Event(bom + body.encode(codec) if bom else body.encode(codec), headers))
                continue
        append(_json_event(item, codec, bom))
    return events


def _all_text(values: Iterable[Any]) -> bool:
    return {*map(type, values)} <= _TEXT_ONLY


_TEXT_ONLY = {str}


def _json_event(item: Any, codec: str, bom: bytes) -> Event:
    if not isinstance(item, dict):
        raise BadRequest("each event must be a JSON object with headers and body")
    headers = item.get("headers") or {}
    if not isinstance(headers, dict):
        raise BadRequest("headers must be a JSON object")
    body = item.get("body")
    body_bytes = b"" if body is None else bom + _scalar_text(body, "body").encode(codec)
    return Event(body_bytes, {str(k): _scalar_text(v, f"header {k}") for k, v in headers.items() if v is not None})


class BlobHandler:
    """Flume's BLOBHandler (and the morphline BlobHandler): the whole body is one event."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.mandatory = comma_list(settings.get("mandatoryParameters", ""))
        self.max_length = int(settings.get("maxBlobLength", 100_000_000))

    async def get_events(self, request: HttpRequest) -> list[Event]:
        headers = request.query
        missing = [name for name in self.mandatory if name not in headers]
        if missing:
            raise UnusableRequest(f"missing mandatory parameters: {', '.join(missing)}")
        body = await request.read()  # bounded by max-request-bytes
        return [Event(body[:self.max_length], headers)]  # longer bodies are cut, as in Flume


HANDLERS = {
    "org.apache.flume.source.http.jsonhandler": JsonHandler,
    "json": JsonHandler,
    "org.apache.flume.source.http.blobhandler": BlobHandler,
    "org.apache.flume.sink.solr.morphline.blobhandler": BlobHandler,
    "blob": BlobHandler,
}


def build_handler(config: HttpSourceConfig) -> Any:
    """The configured handler, built with its `handler.*` settings (and the JSON handler with the
    source's `max-batch-events`, which it needs while parsing)."""
    handler_class = load_handler_class(config.handler)
    if handler_class is JsonHandler:
        return JsonHandler(dict(config.handler_params), config.max_batch_events)
    return handler_class(dict(config.handler_params))


def load_handler_class(name: str) -> type:
    known = HANDLERS.get(name.strip().lower())
    if known is not None:
        return known
    module_name, _, class_name = name.partition(":") if ":" in name else name.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


_JETTY_IGNORED = "Jetty tuning; accepted and ignored"


@dataclass(frozen=True)
class HttpSourceConfig(BindPortKeys, ConnectionKeys, tls.TlsServerConfig):
    bind: str = key("bind", str, "0.0.0.0", doc="address to bind")
    handler: str = key("handler", str, "org.apache.flume.source.http.JSONHandler",
                       doc="handler class or Python path")
    handler_params: dict[str, str] = key("handler.", str, prefix=True, doc="settings passed to the handler")
    enable_get: bool = key("enableGet", boolean, False,
                           doc="also pass GET requests to the handler (Flume always does)")
    max_request_bytes: int = key("max-request-bytes", positive_integer, DEFAULT_MAX_REQUEST_BYTES,
                                 doc="largest body accepted")
    max_batch_events: int = declared_key(MAX_BATCH_EVENTS_KEY)
    enable_ssl: bool | None = key("enableSSL", boolean, None, doc="deprecated spelling of ssl")
    keystore_password_deprecated: str | None = key("keystorePassword", str, None,
                                                   doc="deprecated spelling of keystore-password")
    exclude_protocols_deprecated: str | None = key("excludeProtocols", str, None,
                                                   doc="deprecated spelling of exclude-protocols")
    queued_thread_pool: dict[str, str] = key("QueuedThreadPool.", str, prefix=True, doc=_JETTY_IGNORED)
    http_configuration: dict[str, str] = key(
        "HttpConfiguration.", str, prefix=True,
        doc="Jetty tuning; `sendServerVersion = false` drops the Server header, `requestHeaderSize` bounds a "
            "request's line and headers (8192 bytes), the rest is ignored")
    ssl_context_factory: dict[str, str] = key("SslContextFactory.", str, prefix=True, doc=_JETTY_IGNORED)
    server_connector: dict[str, str] = key("ServerConnector.", str, prefix=True, doc=_JETTY_IGNORED)

    def with_deprecated_keys(self) -> HttpSourceConfig:
        """Flume's old spellings (enableSSL, keystorePassword, excludeProtocols) fill the new keys."""
        updated = self
        if self.enable_ssl is not None and not self.use_ssl:
            updated = replace(updated, use_ssl=self.enable_ssl)
        if self.keystore_password_deprecated and not self.keystore_password:
            updated = replace(updated, keystore_password=self.keystore_password_deprecated)
        if self.exclude_protocols_deprecated:
            updated = replace(updated, exclude_protocols=self.exclude_protocols_deprecated.split())
        return updated

    def sends_server_version(self) -> bool:
        """Jetty's HttpConfiguration.sendServerVersion (true unless set to false)."""
        value = self.http_configuration.get("sendServerVersion")
        return True if value is None else boolean(value)

    def request_header_size(self) -> int:
        """Jetty's HttpConfiguration.requestHeaderSize: the most bytes of a request's line and headers."""
        value = self.http_configuration.get("requestHeaderSize")
        return DEFAULT_MAX_HEAD if value is None else positive_integer(value)

    def problems(self) -> list[tuple[str, str]]:
        problems = tls.validate_server(self.with_deprecated_keys())
        try:
            load_handler_class(self.handler)
        except (ImportError, AttributeError, ValueError) as error:
            problems.append(("handler", f"cannot load handler {self.handler!r}: {error}"))
        for name, read in (("sendServerVersion", self.sends_server_version),
                           ("requestHeaderSize", self.request_header_size)):
            try:
                read()
            except InvalidValue as error:
                problems.append((f"HttpConfiguration.{name}", str(error)))
        return problems


class HttpSource(ListeningSource[HttpSourceConfig]):
    def __init__(self, name: str, config: HttpSourceConfig, processor) -> None:
        super().__init__(name, config.with_deprecated_keys(), processor)
        config = self.config
        self.handler = build_handler(config)
        self.server: HttpServer = http_server_for(
            self, self._handle, config, max_body=config.max_request_bytes, max_head=config.request_header_size(),
            ssl_context=tls.server_context(config), send_server_version=config.sends_server_version())

    async def _handle(self, request: HttpRequest) -> HttpResponse:
        if request.method in ("TRACE", "OPTIONS"):
            return HttpResponse(403)
        if request.method != "POST" and not (request.method == "GET" and self.config.enable_get):
            return HttpResponse(405, headers=[("Allow", "POST")])
        try:
            events = await self.handler.get_events(request)
            if len(events) > self.config.max_batch_events:
                raise TooManyEvents(f"{len(events)} events, more than max-batch-events = "
                                    f"{self.config.max_batch_events}")
        except BadRequest as error:
            return self._refused(request, 400, f"Bad request from client. {error}", error)
        except TooManyEvents as error:
            return self._refused(request, 413, str(error), error)
        except Exception as error:
            self.counters.generic_processing_fail += 1
            self.warnings.warn(log, "handler-failed", "%s: handler failed on a request from %s (500): %s",
                               self.name, request.remote, error)
            return HttpResponse.text(500, f"Deserializer threw unexpected exception. {error}")
        outcome = await deliver_call(self, events)
        if outcome == Outcome.REFUSED:
            return _CHANNEL_FULL
        if outcome == Outcome.FAILED:
            return _FAILED
        return _STORED

    def _refused(self, request: HttpRequest, status: int, answer: str, reason: Exception) -> HttpResponse:
        self.server.refused(status, request.remote, reason)
        return HttpResponse.text(status, answer)


_STORED = HttpResponse(200)
_CHANNEL_FULL = HttpResponse.text(503, "Error appending event to channel. Channel might be full. Consider increasing "
                                       "the channel capacity or make sure the sinks perform faster.")
_FAILED = HttpResponse.text(500, "Unexpected error while processing events")
