"""The aiohttp server of the HTTP-based sources (`http`, `avroLegacy`), with the bounds every TCP
source has (sources.tcp_server): `readTimeout` and `maxConnections`.

* A request's line and headers must arrive within `readTimeout` of the connection opening (or of
  the previous answer on a kept-alive connection): aiohttp's keep-alive timer, which also closes a
  kept-alive connection idle that long. The body must then arrive within `readTimeout` too
  (`read_within`), else the request is answered 408.
* Past `maxConnections` open connections a new one is closed at once (counted in
  ConnectionLimitCount): aiohttp does not tell which connection is idle, so none is evicted.
* A request aiohttp refuses itself (malformed HTTP, a header line too long: 400) is one
  rate-limited log line with the client and the reason (`_RefusalLog`), not a traceback, and an
  EventReadFail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from kubeflume_agent.sources.base import ConnectionConfig, Source

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Refused(asyncio.Protocol):
    """Stands in for a connection over maxConnections: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _CappedRunner(web.AppRunner):
    """An AppRunner whose sites make at most `max_connections` request handlers."""

    def __init__(self, app: web.Application, *, max_connections: int, refused: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.max_connections = max_connections
        self.refused = refused

    @property
    def server(self) -> Any:
        inner = super().server
        return None if inner is None else lambda: self._protocol(inner)

    def _protocol(self, inner: web.Server) -> asyncio.Protocol:
        if len(inner.connections) >= self.max_connections:
            self.refused()
            return _Refused()
        return inner()


class _RefusalLog:
    """Stands in for aiohttp's server logger, which logs a traceback for every malformed request."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def exception(self, message: str, *args: Any, exc_info: BaseException | None = None, **_: Any) -> None:
        if not isinstance(exc_info, HttpProcessingError):
            log.error(message, *args, exc_info=exc_info)  # not the client's doing: keep the traceback
            return
        self.source.counters.event_read_fail += 1
        reason = " ".join(str(exc_info.message).split()) or type(exc_info).__name__
        client = args[0] if args else "?"
        self.source.warnings.warn(log, "bad-request", "%s: refused a request from %s (%d): %s",
                                  self.source.name, client, exc_info.code, reason)

    debug = exception  # aiohttp logs non-HTTP traffic at debug level; it is a refusal all the same

    def __getattr__(self, name: str) -> Any:
        return getattr(log, name)


class HttpServer:
    """One source's aiohttp application on its ports (the `Server` of a ListeningSource)."""

    def __init__(self, source: Source, app: web.Application, config: ConnectionConfig, *, ssl_context: Any = None,
                 send_server_version: bool = True) -> None:
        self.source = source
        self.app = app
        self.config = config
        self.ssl_context = ssl_context
        self.read_timeout = config.read_timeout
        self.runner: web.AppRunner | None = None
        if not send_server_version:
            app.on_response_prepare.append(_drop_server_header)

    async def start(self, host: str | None, ports: Sequence[int]) -> list[int]:
        self.runner = _CappedRunner(
            self.app, max_connections=self.config.max_connections, refused=self._refused,
            access_log=None, handle_signals=False, keepalive_timeout=self.read_timeout,
            logger=_RefusalLog(self.source))
        await self.runner.setup()
        bound = []
        for port in ports:
            site = web.TCPSite(self.runner, host or None, port, ssl_context=self.ssl_context,
                               reuse_port=self.config.reuse_port or None)
            await site.start()
            bound.append(self.runner.addresses[-1][1])
        return bound

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()  # stops accepting, lets in-flight requests finish
            self.runner = None

    async def read_within(self, request: web.Request, reading: Awaitable[T]) -> T:
        """`await reading` (what reads the request's body), given up after readTimeout: raises
        web.HTTPRequestTimeout (408), counted in ReadTimeoutCount."""
        try:
            async with asyncio.timeout(self.read_timeout):
                return await reading
        except TimeoutError:
            self.source.counters.read_timeouts += 1
            self.source.warnings.warn(log, "read-timeout", "%s: request from %s not complete within readTimeout "
                                      "= %g s", self.source.name, request.remote, self.read_timeout)
            raise web.HTTPRequestTimeout(text=f"request not complete within {self.read_timeout:g} s") from None

    def _refused(self) -> None:
        self.source.counters.connection_limit += 1
        self.source.warnings.warn(log, "connection-limit", "%s: refused a connection: %d open (maxConnections)",
                                  self.source.name, self.config.max_connections)


async def _drop_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """Jetty's `HttpConfiguration.sendServerVersion = false`: no Server header at all."""
    response.headers.popall("Server", None)
