"""The project's one WebHDFS client (Hadoop's WebHDFS REST API, WebHDFS.md), on aiohttp.

Used by the `hdfs` sink and by the operator to stage files. Operations that move data (CREATE,
APPEND, OPEN) take two steps as the API requires: the NameNode answers 307 with a DataNode URL,
and the bytes go to that DataNode.

Several NameNode addresses may be given (an HA pair): a request goes to the last NameNode that
answered; one that is unreachable or answers StandbyException is skipped for the next. Only
NameNode requests fail over, as Hadoop's client does; one whose NameNode died after receiving it
may have been carried out (a RENAME repeated elsewhere then answers false). A failed DataNode step
is raised to the caller, who knows whether the write may be repeated.

Errors are raised as typed exceptions carrying the server's RemoteException.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from kubeflume_agent.protocols.hadoop_rest import HadoopRemoteError, HaRestClient, remote_exception

API_PREFIX = "/webhdfs/v1"
OCTET_STREAM = {"Content-Type": "application/octet-stream"}


class WebHDFSError(HadoopRemoteError):
    """An error answer from WebHDFS, with the fields of its RemoteException."""


class FileNotFound(WebHDFSError):
    """404 FileNotFoundException."""


class FileAlreadyExists(WebHDFSError):
    """403 FileAlreadyExistsException (CREATE without overwrite on an existing path)."""


class AccessDenied(WebHDFSError):
    """403 AccessControlException or InvalidToken, or 401 when the server wants credentials."""


class StandbyError(WebHDFSError):
    """403 StandbyException: the NameNode asked is the standby of an HA pair."""


class NoNameNodeAvailable(WebHDFSError):
    """Every NameNode was unreachable or standby; the message lists what each one said."""


class DataNodeUnreachable(WebHDFSError):
    """The DataNode step of CREATE/APPEND/OPEN failed in transit: whether bytes landed is unknown."""


_ERROR_CLASSES: dict[str, type[WebHDFSError]] = {
    "FileNotFoundException": FileNotFound,
    "FileAlreadyExistsException": FileAlreadyExists,
    "AccessControlException": AccessDenied,
    "SecurityException": AccessDenied,
    "AuthorizationException": AccessDenied,
    "InvalidToken": AccessDenied,
    "StandbyException": StandbyError,
}


@dataclass
class FileStatus:
    """One FileStatus object of GETFILESTATUS / LISTSTATUS."""

    path_suffix: str
    type: str
    length: int
    modification_time: int
    permission: str
    owner: str
    group: str
    replication: int
    block_size: int
    access_time: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileStatus:
        return cls(
            path_suffix=data.get("pathSuffix", ""),
            type=data.get("type", "FILE"),
            length=int(data.get("length", 0)),
            modification_time=int(data.get("modificationTime", 0)),
            permission=str(data.get("permission", "")),
            owner=data.get("owner", ""),
            group=data.get("group", ""),
            replication=int(data.get("replication", 0)),
            block_size=int(data.get("blockSize", 0)),
            access_time=int(data.get("accessTime", 0)),
        )


async def error_from_response(response: aiohttp.ClientResponse) -> WebHDFSError:
    """The typed exception for an error answer (a RemoteException JSON body, or any text)."""
    exception, java_class, message = await remote_exception(response)
    if response.status == 401 and not exception:
        exception = "SecurityException"
    cls = _ERROR_CLASSES.get(exception, WebHDFSError)
    return cls(response.status, exception, java_class, message)


class WebHDFSClient(HaRestClient):
    """An async WebHDFS client for one HDFS cluster (one NameNode or an HA set of them).

    `namenodes`: "http://host:port" base URLs (a comma-separated string is accepted).
    Authentication: `user` is sent as `user.name` (simple auth); `delegation_token`, when set,
    is sent as `delegation` instead. `proxy_user` is sent as `doas`: the requests act as that
    user, which HDFS allows when the authenticated user is a proxy user (hadoop.proxyuser.*).
    `timeout` (seconds) bounds each connect and each wait for the server's next bytes.
    """

    def __init__(
        self,
        namenodes: list[str] | str,
        user: str | None = None,
        delegation_token: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        *,
        proxy_user: str | None = None,
    ) -> None:
        super().__init__(namenodes, "NameNode", user, delegation_token, session, timeout)
        self.proxy_user = proxy_user

    @property
    def namenodes(self) -> list[str]:
        return self.urls

    def session_timeout(self) -> aiohttp.ClientTimeout:
        """Each connect and each wait for the next bytes, not the whole call: staging may stream
        gigabytes."""
        return aiohttp.ClientTimeout(sock_connect=self.timeout, sock_read=self.timeout)

    # --- operations -------------------------------------------------------------------------

    async def create(
        self,
        path: str,
        data: bytes | AsyncIterable[bytes],
        *,
        overwrite: bool = False,
        permission: str | None = None,
        replication: int | None = None,
        blocksize: int | None = None,
    ) -> None:
        """CREATE: write a new file (or replace it when `overwrite`)."""
        params = _drop_none({
            "overwrite": "true" if overwrite else "false",
            "permission": permission,
            "replication": replication,
            "blocksize": blocksize,
        })
        location = await self._redirect("PUT", path, "CREATE", params)
        await self._send_data("PUT", location, data, expect=201)

    async def append(self, path: str, data: bytes | AsyncIterable[bytes]) -> None:
        """APPEND: add bytes at the end of an existing file."""
        location = await self._redirect("POST", path, "APPEND", {})
        await self._send_data("POST", location, data, expect=200)

    async def truncate(self, path: str, new_length: int) -> bool:
        """TRUNCATE to `new_length` bytes; False means HDFS finishes it in the background."""
        return await self._boolean("POST", path, "TRUNCATE", {"newlength": new_length})

    async def mkdirs(self, path: str, permission: str | None = None) -> bool:
        return await self._boolean("PUT", path, "MKDIRS", _drop_none({"permission": permission}))

    async def get_file_status(self, path: str) -> FileStatus:
        body = await self._namenode_json("GET", path, "GETFILESTATUS", {})
        return FileStatus.from_json(body["FileStatus"])

    async def list_status(self, path: str) -> list[FileStatus]:
        body = await self._namenode_json("GET", path, "LISTSTATUS", {})
        return [FileStatus.from_json(item) for item in body["FileStatuses"]["FileStatus"]]

    async def rename(self, src: str, dst: str) -> bool:
        return await self._boolean("PUT", src, "RENAME", {"destination": dst})

    async def delete(self, path: str, recursive: bool = False) -> bool:
        return await self._boolean("DELETE", path, "DELETE", {"recursive": "true" if recursive else "false"})

    async def open(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """OPEN: the file's bytes from `offset` (`length` of them, or to the end)."""
        location = await self._redirect("GET", path, "OPEN", _drop_none({"offset": offset, "length": length}))
        try:
            async with self.session.get(location) as response:
                if response.status != 200:
                    raise await error_from_response(response)
                return await response.read()
        except (TimeoutError, aiohttp.ClientError) as error:
            raise _datanode_unreachable(location, error) from error

    async def home_directory(self) -> str:
        body = await self._namenode_json("GET", "/", "GETHOMEDIRECTORY", {})
        return body["Path"]

    # --- plumbing ---------------------------------------------------------------------------

    def _query(self, op: str, params: dict[str, Any]) -> dict[str, str]:
        query = {"op": op}
        if self.delegation_token:
            query["delegation"] = self.delegation_token
        elif self.user:
            query["user.name"] = self.user
        if self.proxy_user:
            query["doas"] = self.proxy_user
        query.update({key: str(value) for key, value in params.items()})
        return query

    async def _boolean(self, method: str, path: str, op: str, params: dict[str, Any]) -> bool:
        body = await self._namenode_json(method, path, op, params)
        return bool(body["boolean"])

    async def _namenode_json(self, method: str, path: str, op: str, params: dict[str, Any]) -> Any:
        async def call(response: aiohttp.ClientResponse) -> Any:
            if response.status != 200:
                raise await error_from_response(response)
            return await response.json(content_type=None)

        return await self._on_namenode(method, path, op, params, call)

    async def _redirect(self, method: str, path: str, op: str, params: dict[str, Any]) -> str:
        """Step one of a data operation: the DataNode URL the NameNode points to."""

        async def call(response: aiohttp.ClientResponse) -> str:
            if response.status == 307 and "Location" in response.headers:
                return response.headers["Location"]
            raise await error_from_response(response)

        return await self._on_namenode(method, path, op, params, call)

    async def _on_namenode(
        self,
        method: str,
        path: str,
        op: str,
        params: dict[str, Any],
        handle: Callable[[aiohttp.ClientResponse], Any],
    ) -> Any:
        """Send one NameNode request, failing over across the NameNodes in order."""
        failures: list[str] = []
        query = self._query(op, params)
        count = len(self.namenodes)
        for attempt in range(count):
            index = (self._active + attempt) % count
            url = self.namenodes[index] + API_PREFIX + quote(_absolute(path))
            try:
                async with self.session.request(method, url, params=query, allow_redirects=False) as response:
                    result = await handle(response)
            except StandbyError as error:
                failures.append(f"{self.namenodes[index]}: standby ({error.message})")
                continue
            except (TimeoutError, aiohttp.ClientConnectionError) as error:
                failures.append(f"{self.namenodes[index]}: {type(error).__name__}: {error}")
                continue
            self._active = index
            return result
        raise NoNameNodeAvailable(
            503, "NoNameNodeAvailable", "", f"{op} {path}: no NameNode answered: " + "; ".join(failures)
        )

    async def _send_data(
        self, method: str, location: str, data: bytes | AsyncIterable[bytes], *, expect: int
    ) -> None:
        """Step two: the bytes go to the DataNode named by step one."""
        try:
            async with self.session.request(method, location, data=data, headers=OCTET_STREAM) as response:
                if response.status != expect:
                    raise await error_from_response(response)
                await response.read()
        except (TimeoutError, aiohttp.ClientError) as error:
            raise _datanode_unreachable(location, error) from error


def _datanode_unreachable(location: str, error: BaseException) -> DataNodeUnreachable:
    return DataNodeUnreachable(0, "DataNodeUnreachable", "", f"{location}: {type(error).__name__}: {error}")


def _absolute(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _drop_none(params: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}
