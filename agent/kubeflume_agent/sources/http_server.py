"""HTTP/1.1 for every HTTP server of the agent (the `http` and `avroLegacy` sources, the metrics
server): an asyncio Protocol per connection, parsed by llhttp (httptools, as uvicorn does).

What a connection gets:
* keep-alive and pipelining: requests are answered in the order they came, one at a time;
  reading pauses while more than a few wait, or while the client does not read its answers;
* Content-Length and chunked bodies, read whole before the handler sees the request; a body over
  `max_body` bytes is answered 413 (at once, from Content-Length, when it says so), a head (request
  line and headers) over `max_head` bytes 400; `Expect: 100-continue` is answered 100 when the
  body is welcome;
* `readTimeout`: a request whose first byte arrived must be whole (head and body) within it, else
  it is answered 408 and the connection closed, counted in ReadTimeoutCount; a kept-alive
  connection with nothing begun is closed silently after the same time (Jetty's idle timeout);
* `maxConnections` as the TCP sources (sources.connection_limits): one more connection closes the
  longest-open one not handing events over (ConnectionLimitCount);
* a request that cannot be parsed is answered 400 in HTTP/1.0 (its version is unknown) with one
  rate-limited log line naming the client and the reason, counted in EventReadFail; after any
  refusal the connection reads and drops what the client still sends for a moment before closing,
  so the client sees the answer rather than a reset;
* while no request is begun or being handled, a connection holds no Task and a few hundred bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

import httptools
import orjson

from kubeflume_agent.core.counters import SourceCounters
from kubeflume_agent.core.eager import carry_on
from kubeflume_agent.core.log_limit import RateLimitedWarnings
from kubeflume_agent.sources.base import ConnectionConfig, Source
from kubeflume_agent.sources.connection_limits import ProtocolServer

log = logging.getLogger(__name__)

DEFAULT_MAX_HEAD = 8192  # Jetty's HttpConfiguration.requestHeaderSize
MAX_WAITING_REQUESTS = 8  # pipelined requests read ahead of the one being answered
LINGER_SECONDS = 2.0  # after a refusal: how long the client's remaining bytes are read and dropped
STOP_GRACE_SECONDS = 10.0


class HttpRequest:
    """One whole request, as a handler sees it.

    Its header fields stay the bytes llhttp gave (`fields`) until a handler asks for `headers`:
    the http source's JSON handler, the hot path, only needs the Content-Type's charset, and
    decoding every field of every request cost more than the rest of its head.
    """

    __slots__ = ("_headers", "body", "fields", "keep_alive", "method", "remote", "target", "version")

    def __init__(self, method: str, target: str, fields: Sequence[tuple[bytes, bytes]], body: bytes, remote: str,
                 keep_alive: bool = True, version: str = "1.1") -> None:
        self.method = method
        self.target = target  # the request target as sent: path and query
        self.fields = fields  # (name lower-cased, value) as sent, in order
        self.body = body
        self.remote = remote
        self.keep_alive = keep_alive
        self.version = version
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Names lower-cased; repeated headers joined with ", "."""
        if self._headers is None:
            self._headers = _decoded(self.fields)
        return self._headers

    @property
    def path(self) -> str:
        return unquote(self.target.partition("?")[0])

    @property
    def query(self) -> dict[str, str]:
        """The query parameters, the first value of each (as Flume's handlers take them)."""
        query: dict[str, str] = {}
        for name, value in parse_qsl(self.target.partition("?")[2], keep_blank_values=True):
            query.setdefault(name, value)
        return query

    @property
    def content_type(self) -> str:
        return _media_type(self.field(b"content-type"))

    @property
    def charset(self) -> str | None:
        """The Content-Type's charset parameter, as sent (None if there is none)."""
        return _charset(self.field(b"content-type"))

    def field(self, name: bytes) -> bytes:
        """The value of the header `name` (lower-case) as sent, repeats joined with ", " (b"" if absent)."""
        found = None
        for field_name, value in self.fields:
            if field_name == name:
                found = value if found is None else found + b", " + value
        return b"" if found is None else found

    async def read(self) -> bytes:
        return self.body

    async def text(self) -> str:
        return self.body.decode(self.charset or "utf-8")

    async def json(self) -> Any:
        return orjson.loads(self.body)


def _decoded(fields: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in fields:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


# Parsed once per distinct Content-Type (a client sends the same one request after request);
# bounded, since the values come from clients.
@functools.lru_cache(maxsize=256)
def _media_type(content_type: bytes) -> str:
    return content_type.decode("latin-1").partition(";")[0].strip().lower()


@functools.lru_cache(maxsize=256)
def _charset(content_type: bytes) -> str | None:
    for parameter in content_type.decode("latin-1").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None


class HttpResponse:
    """What a handler answers."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(self, status: int = 200, body: bytes = b"", content_type: str | None = None,
                 headers: Iterable[tuple[str, str]] = ()) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = tuple(headers)

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain; charset=utf-8",
             headers: Iterable[tuple[str, str]] = ()) -> HttpResponse:
        return cls(status, text.encode(), content_type, headers)


Handler = Callable[[HttpRequest], Coroutine[Any, Any, HttpResponse]]  # an async function


class RequestRefused(Exception):
    """What a client sent cannot be served: answer `status` (400, 413, 417) and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestReader:
    """Bytes in, whole requests out (to `on_request`), parsed by llhttp; raises RequestRefused.

    `on_begin()` is called at a request's first byte, `on_continue()` when its head asked for
    `100-continue` and its body is welcome. A head is bounded by `max_head` bytes (including one
    that never ends: what llhttp holds of it is bounded by that plus one read), a body by `max_body`.
    """

    __slots__ = ("_begun_in_chunk", "_body", "_body_size", "_head_done", "_head_fed", "_head_size", "_headers",
                 "_url", "in_message", "max_body", "max_head", "on_begin", "on_continue", "on_request", "parser",
                 "remote")

    def __init__(self, *, remote: str, max_head: int, max_body: int, on_request: Callable[[HttpRequest], None],
                 on_begin: Callable[[], None], on_continue: Callable[[], None]) -> None:
        self.remote = remote
        self.max_head = max_head
        self.max_body = max_body
        self.on_request = on_request
        self.on_begin = on_begin
        self.on_continue = on_continue
        self.parser = httptools.HttpRequestParser(self)
        self.in_message = False  # a request has begun and is not whole yet
        self._head_done = False
        self._begun_in_chunk = False
        self._head_fed = 0  # bytes fed while the current request's head is unfinished
        self._head_size = 0
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_size = 0

    def feed(self, data: bytes) -> None:
        in_head = self.in_message and not self._head_done
        self._begun_in_chunk = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            if isinstance(error.__context__, RequestRefused):
                raise error.__context__ from None
            raise
        except httptools.HttpParserError as error:
            raise RequestRefused(400, str(error) or type(error).__name__) from None
        if self.in_message and not self._head_done:
            if in_head and not self._begun_in_chunk:
                self._head_fed += len(data)
            if self._head_fed > self.max_head:
                raise self._head_too_large()

    # --- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self._head_done = False
        self._begun_in_chunk = True
        self._head_fed = self._head_size = self._body_size = 0
        self.on_begin()

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_size += len(url)
        if self._head_size > self.max_head:
            raise self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.max_head:
            raise self._head_too_large()

    def _head_too_large(self) -> RequestRefused:
        return RequestRefused(400, f"request head larger than {self.max_head} bytes")

    def on_headers_complete(self) -> None:
        self._head_done = True
        if self.parser.should_upgrade():
            raise RequestRefused(400, "protocol upgrades (Upgrade, CONNECT) are not supported")
        expect = None
        for name, value in self._headers:
            if name == b"content-length" and int(value) > self.max_body:
                raise RequestRefused(413, f"a body of {int(value)} bytes, more than {self.max_body}")
            if name == b"expect":
                expect = value.lower()
        if expect is not None:
            if expect != b"100-continue":
                raise RequestRefused(417, f"cannot meet Expect: {expect.decode('latin-1')}")
            if self.parser.get_http_version() == "1.1":
                self.on_continue()

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.max_body:
            raise RequestRefused(413, f"a body of more than {self.max_body} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        parser = self.parser
        url, body = self._url, self._body
        request = HttpRequest(parser.get_method().decode("ascii"),
                              (url[0] if len(url) == 1 else b"".join(url)).decode("latin-1"), self._headers,
                              body[0] if len(body) == 1 else b"".join(body), self.remote,
                              parser.should_keep_alive(), parser.get_http_version())
        self._url, self._headers, self._body = [], [], []
        self.on_request(request)


class _Encoder:
    """Responses as bytes: the status line, Server, Date (remade once a second), the rest."""

    def __init__(self, server_header: bytes) -> None:
        self.server_header = server_header
        self._second = 0
        self._date = b""
        self._plain: dict[tuple[int, bool | None], bytes] = {}  # bodiless answers of this second

    def encode(self, response: HttpResponse, *, keep_alive: bool | None, head_only: bool = False,
               version: bytes = b"HTTP/1.1") -> bytes:
        """`keep_alive`: None for kept alive as HTTP/1.1 does by default, True to say so (to an
        HTTP/1.0 client), False to close."""
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._date = b"Date: " + formatdate(second, usegmt=True).encode() + b"\r\n"
            self._plain.clear()
        plain = not response.body and response.content_type is None and not response.headers
        if plain and version == b"HTTP/1.1":
            cached = self._plain.get((response.status, keep_alive))
            if cached is None:
                cached = self._plain[response.status, keep_alive] = self._head(response, keep_alive, version)
            return cached
        head = self._head(response, keep_alive, version)
        return head if head_only else head + response.body

    def _head(self, response: HttpResponse, keep_alive: bool | None, version: bytes) -> bytes:
        status = HTTPStatus(response.status)
        lines = [b"%s %d %s\r\n" % (version, status.value, status.phrase.encode()), self.server_header, self._date,
                 b"Content-Length: %d\r\n" % len(response.body)]
        if response.content_type is not None:
            lines.append(b"Content-Type: %s\r\n" % response.content_type.encode("latin-1"))
        lines += [b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
        if keep_alive is not None:
            lines.append(b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)


class HttpServer(ProtocolServer):
    """One component's HTTP server on its ports (the `Server` of a ListeningSource)."""

    def __init__(self, name: str, handle: Handler, *, counters: SourceCounters, warnings: RateLimitedWarnings,
                 read_timeout: float, max_connections: int, max_body: int, max_head: int = DEFAULT_MAX_HEAD,
                 reuse_port: bool = False, ssl_context: ssl.SSLContext | None = None,
                 send_server_version: bool = True) -> None:
        super().__init__(name, counters, warnings, max_connections=max_connections, ssl_context=ssl_context,
                         reuse_port=reuse_port)
        self.handle = handle
        self.read_timeout = read_timeout
        self.max_body = max_body
        self.max_head = max_head
        self.encoder = _Encoder(b"Server: kubeflume\r\n" if send_server_version else b"")

    def _new_connection(self) -> _Connection:
        return _Connection(self)

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop accepting; close idle connections at once and busy ones once their request is answered."""
        self.stopping = True
        for server in self._servers:
            server.close()
        working = []
        for connection in self.connections:
            if connection.worker is None:
                connection.close()
            else:
                working.append(connection.worker)
        if working:
            _, late = await asyncio.wait(working, timeout=grace)
            for worker in late:  # nothing of a request cut short is acknowledged: the client retries
                worker.cancel()
        for connection in self.connections:
            connection.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def refused(self, status: int, client: str, reason: object) -> None:
        """Count and log a refused request (400, 413...): by this server, or by a source's handler
        for what its events could not be made of."""
        self.counters.event_read_fail += 1
        self.warnings.warn(log, "too-large" if status == 413 else "bad-request",
                           "%s: refused a request from %s (%d): %s", self.name, client, status, reason)

    def timed_out(self, client: str) -> None:
        self.counters.read_timeouts += 1
        self.warnings.warn(log, "read-timeout", "%s: request from %s not complete within readTimeout = %g s",
                           self.name, client, self.read_timeout)


class _Connection(asyncio.Protocol):
    """One client: its reader queues whole requests, a worker Task (only while there are some)
    answers them in order."""

    __slots__ = ("_client_done", "_continue_waiting", "_discarding", "_tls", "_writable", "deadlines", "loop",
                 "peer_ip", "queue", "reader", "server", "transport", "worker")

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.reader: RequestReader | None = None
        self.peer_ip = ""
        self.queue: deque[HttpRequest | HttpResponse] = deque()
        self.worker: asyncio.Task | None = None
        self.loop = server.loop
        self.deadlines = server.deadlines
        self._continue_waiting = False
        self._discarding = False  # refused: what the client still sends is dropped
        self._client_done = False  # the client half-closed: answer what is queued, then close
        self._writable: asyncio.Future | None = None  # set while the transport's buffer is full
        self._tls = False

    @property
    def busy(self) -> bool:
        """Handing a request to its handler (and so, for a source, events to the channel)."""
        return self.worker is not None

    @property
    def _in_message(self) -> bool:
        return self.reader is not None and self.reader.in_message

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's subclasses
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        self._tls = transport.get_extra_info("sslcontext") is not None
        server = self.server
        if server.stopping or not server.connections.admit(self):
            transport.abort()
            return
        self.reader = RequestReader(remote=self.peer_ip, max_head=server.max_head, max_body=server.max_body,
                                    on_request=self._enqueue, on_begin=self._request_begun,
                                    on_continue=self._continue)
        self.deadlines.start(self, server.read_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.remove(self)
        self.deadlines.stop(self)
        if self.worker is not None:
            while len(self.queue) > 1:  # the one being handled completes; the rest have no one to answer
                self.queue.pop()
        else:
            self.queue.clear()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._discarding or self.reader is None:
            return
        try:
            self.reader.feed(data)
        except RequestRefused as refusal:
            self._refuse(refusal.status, refusal.reason)

    def eof_received(self) -> bool:
        self._client_done = True
        # keep the transport open to answer what is being handled (TLS cannot half-close)
        return self.worker is not None and not self._tls

    def pause_writing(self) -> None:
        self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # --- the reader's calls -------------------------------------------------------------------

    def _request_begun(self) -> None:
        self.deadlines.start(self, self.server.read_timeout)

    def _continue(self) -> None:
        """Expect: 100-continue, and the body is welcome: say so now, or after the answers before it."""
        self._continue_waiting = True
        if self.worker is None:
            self._send_continue()

    # --- answering ------------------------------------------------------------------------------

    def _enqueue(self, item: HttpRequest | HttpResponse) -> None:
        # The request's readTimeout stays armed while it is answered: should it pass meanwhile,
        # deadline_passed finds the request whole and a worker busy, and does nothing.
        self._continue_waiting = False
        self.queue.append(item)
        if self.worker is None:
            if isinstance(item, HttpRequest) and self._writable is None:
                self._answer_now(item)
            else:
                self.worker = self.loop.create_task(self._work())
        elif len(self.queue) > MAX_WAITING_REQUESTS and self.transport is not None:
            self.transport.pause_reading()

    def _answer_now(self, request: HttpRequest) -> None:
        """Answer the only request in the queue without a Task when its handler never has to wait
        (the channel has room): a Task and its scheduling cost as much as the rest of a small
        request. A handler that does wait goes on in a worker Task, as any request after it."""
        answering = self.server.handle(request)
        try:
            awaited = answering.send(None)
        except StopIteration as done:
            response = done.value
        except Exception:
            response = self._failed(request)
        else:
            self.worker = self.loop.create_task(self._work(self._answer(request, carry_on(answering, awaited))))
            return
        if self._respond(request, response):
            self._idle()

    async def _work(self, started: Awaitable[HttpResponse] | None = None) -> None:
        """Answer what is queued, in order; `started`: the first request's answer, already begun."""
        try:
            while self.queue:
                item = self.queue[0]
                if isinstance(item, HttpResponse):  # a refusal: the last answer of this connection
                    self._write(self.server.encoder.encode(item, keep_alive=False, version=b"HTTP/1.0"
                                                           if item.status == 400 else b"HTTP/1.1"))
                    self._linger()
                    return
                response = await (started if started is not None else self._answer(item))
                started = None
                if self._writable is not None:
                    await self._writable
                if not self._respond(item, response):
                    return
        finally:
            self.worker = None
            self._idle()

    def _respond(self, request: HttpRequest, response: HttpResponse) -> bool:
        """Send the answer to the request at the head of the queue; False if the connection closes."""
        if self.queue:
            self.queue.popleft()
        keep_alive = request.keep_alive and not self.server.stopping and not self._client_done
        self._write(self.server.encoder.encode(response, keep_alive=_connection_header(keep_alive, request),
                                               head_only=request.method == "HEAD"))
        if not keep_alive:
            self.close()
            return False
        if len(self.queue) <= MAX_WAITING_REQUESTS and self.transport is not None:
            self.transport.resume_reading()
        if self._continue_waiting and not self.queue:
            self._send_continue()
        return True

    def _idle(self) -> None:
        """Nothing left to answer: close if the client is done, else wait for its next request."""
        if self._client_done:
            self.close()
        elif not self._in_message and not self._discarding:
            self.deadlines.start(self, self.server.read_timeout)  # kept alive: idle from now

    async def _answer(self, request: HttpRequest, started: Awaitable[HttpResponse] | None = None) -> HttpResponse:
        """The handler's answer to `request` (`started`: its handling, already begun), 500 if it fails."""
        try:
            return await (started if started is not None else self.server.handle(request))
        except Exception:
            return self._failed(request)

    def _failed(self, request: HttpRequest) -> HttpResponse:
        log.exception("%s: failed to answer %s %s from %s", self.server.name, request.method, request.path,
                      request.remote)
        return HttpResponse.text(500, "internal error")

    def _send_continue(self) -> None:
        self._continue_waiting = False
        self._write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` after what is queued, then close; nothing more is read."""
        if status != 408:
            self.server.refused(status, self.peer_ip, reason)
        self._discarding = True
        self.reader = None
        self._enqueue(HttpResponse.text(status, reason))

    def _linger(self) -> None:
        """Half-close and drop what the client still sends for a moment: closing with unread bytes
        would reset the connection, and the client might lose the answer."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        with contextlib.suppress(OSError, RuntimeError):
            transport.write_eof()
        transport.resume_reading()
        self.deadlines.start(self, min(LINGER_SECONDS, self.server.read_timeout))

    def deadline_passed(self) -> None:
        if self._in_message:
            self.server.timed_out(self.peer_ip)
            self._refuse(408, f"request not complete within readTimeout = {self.server.read_timeout:g} s")
        elif self.worker is None:
            self.close()  # idle since its last answer (or a refused one lingered long enough)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def evict(self) -> None:
        """Closed to make room under maxConnections."""
        if self.transport is not None:
            self.transport.abort()


def _connection_header(keep_alive: bool, request: HttpRequest) -> bool | None:
    """What the answer's Connection header says: close (False), keep-alive (True: an HTTP/1.0
    client closes unless told otherwise), nothing (None: HTTP/1.1 keeps alive by default)."""
    if not keep_alive:
        return False
    return True if request.version == "1.0" else None


def http_server_for(source: Source, handle: Handler, config: ConnectionConfig, *, max_body: int,
                    **options: Any) -> HttpServer:
    """The HTTP server of `source`, with the keys every TCP source shares (`reusePort`, `readTimeout`,
    `maxConnections`); `options`: TLS context, `max_head`, `send_server_version`."""
    return HttpServer(source.name, handle, counters=source.counters, warnings=source.warnings,
                      read_timeout=config.read_timeout, max_connections=config.max_connections,
                      reuse_port=config.reuse_port, max_body=max_body, **options)
