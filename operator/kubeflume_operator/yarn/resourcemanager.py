"""An async client for the YARN ResourceManager's REST API (Hadoop's ResourceManagerRest.md).

Only what a DistributedShell-style client needs: new-application, submit, the application report
and the kill. Several ResourceManager URLs may be given (an HA set): a standby answers 307 with
the active one in `Location` (with the query string from Hadoop 3 on, without it before), which
is followed with the same method, body and authentication; a ResourceManager that cannot be
reached is skipped for the next. The one that answered is asked first next time.

Authentication: `user` is sent as `user.name` (simple auth); a delegation token, when given, as
the `X-Hadoop-Delegation-Token` header instead.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from kubeflume_agent.protocols.hadoop_rest import HadoopRemoteError, HaRestClient, remote_exception

API_PREFIX = "/ws/v1/cluster"
JSON_HEADERS = {"Accept": "application/json"}
REDIRECTS = (301, 302, 303, 307, 308)
KILL_POLL_SECONDS = 0.5
KILL_ATTEMPTS = 120


class ResourceManagerError(HadoopRemoteError):
    """An error answer from the ResourceManager, with the fields of its RemoteException."""


class ApplicationNotFound(ResourceManagerError):
    """404: the ResourceManager does not know the application (never submitted, or forgotten)."""


class NotAuthorized(ResourceManagerError):
    """401/403: the user is not authenticated or not allowed."""


class NoResourceManagerAvailable(ResourceManagerError):
    """No ResourceManager answered; the message says what each one did."""


@dataclass(frozen=True)
class NewApplication:
    application_id: str
    max_memory_mb: int
    max_vcores: int


async def _error(response: aiohttp.ClientResponse) -> ResourceManagerError:
    exception, java_class, message = await remote_exception(response)
    if response.status == 404:
        return ApplicationNotFound(response.status, exception, java_class, message)
    if response.status in (401, 403):
        return NotAuthorized(response.status, exception, java_class, message)
    return ResourceManagerError(response.status, exception, java_class, message)


class ResourceManagerClient(HaRestClient):
    def __init__(
        self,
        urls: list[str] | str,
        user: str | None = None,
        delegation_token: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(urls, "ResourceManager", user, delegation_token, session, timeout)

    # --- operations -------------------------------------------------------------------------

    async def new_application(self) -> NewApplication:
        status, body = await self._request("POST", "/apps/new-application")
        self._expect(status, body, 200)
        capability = body.get("maximum-resource-capability") or {}
        return NewApplication(body["application-id"], int(capability.get("memory", 0)),
                              int(capability.get("vCores", 0)))

    async def submit(self, context: dict[str, Any]) -> None:
        """POST /apps; resubmitting the same application id is harmless (the RM ignores it)."""
        status, body = await self._request("POST", "/apps", context)
        self._expect(status, body, 202)

    async def application(self, application_id: str) -> dict[str, Any]:
        """The application report (the `app` object)."""
        status, body = await self._request("GET", f"/apps/{application_id}")
        self._expect(status, body, 200)
        return body["app"]

    async def kill(self, application_id: str) -> str:
        """Ask for KILLED until the RM confirms (202 while in progress, then 200); the final state.

        An application that already ended keeps its state (FINISHED, FAILED), which is returned.
        """
        for _ in range(KILL_ATTEMPTS):
            status, body = await self._request("PUT", f"/apps/{application_id}/state", {"state": "KILLED"})
            if status == 200:
                return body["state"]
            self._expect(status, body, 202)
            await asyncio.sleep(KILL_POLL_SECONDS)
        raise ResourceManagerError(202, "", "", f"{application_id}: still not KILLED after "
                                                f"{KILL_ATTEMPTS} requests")

    # --- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _expect(status: int, body: Any, expected: int) -> None:
        if status != expected:
            raise body if isinstance(body, ResourceManagerError) else ResourceManagerError(
                status, "", "", f"unexpected HTTP {status}")

    def _auth(self) -> tuple[dict[str, str], dict[str, str]]:
        if self.delegation_token:
            return {}, {"X-Hadoop-Delegation-Token": self.delegation_token}
        return ({"user.name": self.user} if self.user else {}), {}

    async def _request(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        """(status, JSON body or the ResourceManagerError for an error answer), failing over."""
        failures = []
        count = len(self.urls)
        for attempt in range(count):
            index = (self._active + attempt) % count
            try:
                status, body = await self._send(method, self.urls[index] + API_PREFIX + path, payload)
            except (TimeoutError, aiohttp.ClientConnectionError) as error:
                failures.append(f"{self.urls[index]}: {type(error).__name__}: {error}")
                continue
            if status in REDIRECTS:
                failures.append(f"{self.urls[index]}: standby, redirect not usable")
                continue
            self._active = index
            return status, body
        raise NoResourceManagerAvailable(503, "NoResourceManagerAvailable", "",
                                         f"{method} {path}: no ResourceManager answered: " + "; ".join(failures))

    async def _send(self, method: str, url: str, payload: Any) -> tuple[int, Any]:
        """One request; a standby's 307 is followed once to the active ResourceManager."""
        params, headers = self._auth()
        for _ in range(2):
            async with self.session.request(method, url, params=params, json=payload, allow_redirects=False,
                                            headers={**JSON_HEADERS, **headers}) as response:
                if response.status in REDIRECTS and "Location" in response.headers:
                    url = response.headers["Location"]
                    if urlsplit(url).query:
                        params = {}  # Hadoop 3 carries the original query over; Hadoop 2 drops it
                    continue
                if response.status >= 400:
                    return response.status, await _error(response)
                text = await response.text()
                return response.status, json.loads(text) if text.strip() else {}
        return 307, None
