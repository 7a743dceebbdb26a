"""What Hadoop's REST APIs have in common, for the WebHDFS and ResourceManager clients.

Both answer errors with a `RemoteException` JSON object (exception, javaClassName, message), and
both are served by an HA set of servers of which one is active: a client keeps the base URLs and
asks the one that answered last first.
"""

from __future__ import annotations

import json

import aiohttp


class HadoopRemoteError(Exception):
    """An error answer, with the fields of its RemoteException when it had one."""

    def __init__(self, status: int, exception: str, java_class: str, message: str) -> None:
        super().__init__(f"{exception}: {message}" if exception else message)
        self.status = status
        self.exception = exception
        self.java_class = java_class
        self.message = message


async def remote_exception(response: aiohttp.ClientResponse) -> tuple[str, str, str]:
    """(exception, javaClassName, message) of an error answer; the body's text when it is not JSON."""
    text = await response.text(errors="replace")
    try:
        remote = json.loads(text)["RemoteException"]
        return remote.get("exception", ""), remote.get("javaClassName", ""), remote.get("message", "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "", "", f"HTTP {response.status}: {text.strip()[:500]}"


class HaRestClient:
    """Base URLs of one HA service, the credentials, and an aiohttp session (its own unless given).

    `_active` is the index of the server that answered last; subclasses try it first.
    """

    def __init__(self, urls: list[str] | str, what: str, user: str | None, delegation_token: str | None,
                 session: aiohttp.ClientSession | None, timeout: float) -> None:
        if isinstance(urls, str):
            urls = [url.strip() for url in urls.split(",") if url.strip()]
        if not urls:
            raise ValueError(f"{type(self).__name__} needs at least one {what} URL")
        self.urls = [url.rstrip("/") for url in urls]
        self.user = user
        self.delegation_token = delegation_token
        self.timeout = timeout
        self._session = session
        self._owns_session = session is None
        self._active = 0

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.session_timeout())
            self._owns_session = True
        return self._session

    def session_timeout(self) -> aiohttp.ClientTimeout:
        """The timeout of a session the client makes for itself."""
        return aiohttp.ClientTimeout(total=self.timeout)
