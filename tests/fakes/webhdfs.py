"""A fake HDFS cluster speaking WebHDFS, for tests.

Follows Apache Hadoop's "WebHDFS REST API" document (hadoop-hdfs-project/hadoop-hdfs/src/site/
markdown/WebHDFS.md): NameNode URLs `http://<nn>/webhdfs/v1/<PATH>?op=...`; data operations in two
steps (CREATE/APPEND/OPEN answer `307 Temporary Redirect` with a `Location` on a separate DataNode
port, or `200 {"Location": ...}` with `noredirect=true`; the DataNode answers CREATE with `201 Created`,
`Location: webhdfs://...`, `Content-Length: 0`, APPEND with 200); JSON bodies `{"boolean": ...}`,
`{"FileStatus": ...}`, `{"FileStatuses": {"FileStatus": [...]}}`, `{"Path": ...}`; errors as
`{"RemoteException": {"exception", "javaClassName", "message"}}` with the document's status mapping
(IllegalArgumentException 400, SecurityException 401, IOException and its subclasses 403,
FileNotFoundException 404). Where a check happens follows Hadoop's code: parameters are parsed by
the NameNode (400 for a bad `permission`), while CREATE's `overwrite` check happens when the
DataNode opens the file, while APPEND and OPEN of a missing file are refused by the NameNode
(404 "File <path> not found.", NamenodeWebHdfsMethods.chooseDatanode). `doas=<user>` makes the
request act as that user when the authenticated one may impersonate (Hadoop's proxy users; else
403 AuthorizationException). Beyond the document, for HA tests: a NameNode in standby answers
403 StandbyException, as Hadoop's does.

    async with FakeWebHDFS(strict=True) as fs:
        fs.url                  # NameNode base URL, e.g. http://127.0.0.1:41234
        fs.read("/a/b")         # inspect the in-memory tree
        await fs.stop()         # the NameNode goes away; start() brings it back on the same port
        fs.crash_on("APPEND")   # the next APPEND drops its connection and the NameNodes stop
        fs.hang_on("APPEND")    # the next APPEND waits unanswered until fs.release()

Also runnable on its own: `python -m tests.fakes.webhdfs --port 9870`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

API_PREFIX = "/webhdfs/v1"
DEFAULT_WEB_USER = "dr.who"
PERMISSION = re.compile(r"^[0-1]?[0-7]?[0-7]?[0-7]$")
DEFAULT_BLOCK_SIZE = 134217728
DEFAULT_REPLICATION = 3

# (HTTP method, op) -> where the NameNode sends it: "namenode" answers itself, "redirect" sends
# the client to the DataNode.
OPS = {
    ("PUT", "CREATE"): "redirect",
    ("POST", "APPEND"): "redirect",
    ("GET", "OPEN"): "redirect",
    ("PUT", "MKDIRS"): "namenode",
    ("PUT", "RENAME"): "namenode",
    ("DELETE", "DELETE"): "namenode",
    ("POST", "TRUNCATE"): "namenode",
    ("GET", "GETFILESTATUS"): "namenode",
    ("GET", "LISTSTATUS"): "namenode",
    ("GET", "GETHOMEDIRECTORY"): "namenode",
}
WRITE_OPS = {"CREATE", "APPEND", "MKDIRS", "RENAME", "DELETE", "TRUNCATE"}


class RemoteError(Exception):
    """An error the server answers as a RemoteException."""

    STATUS_BY_KIND = {"IllegalArgumentException": 400, "SecurityException": 401,
                      "FileNotFoundException": 404, "RuntimeException": 500}

    def __init__(self, exception: str, java_class: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.exception = exception
        self.java_class = java_class
        self.message = message
        self.status = status or self.STATUS_BY_KIND.get(exception, 403)

    def response(self) -> web.Response:
        body = {"RemoteException": {"exception": self.exception, "javaClassName": self.java_class,
                                    "message": self.message}}
        return web.json_response(body, status=self.status)


def not_found(path: str) -> RemoteError:
    return RemoteError("FileNotFoundException", "java.io.FileNotFoundException", f"File does not exist: {path}")


def illegal_argument(message: str) -> RemoteError:
    return RemoteError("IllegalArgumentException", "java.lang.IllegalArgumentException", message)


@dataclass
class Node:
    """A file or directory of the fake namespace."""

    type: str
    owner: str
    group: str = "supergroup"
    permission: str = "755"
    data: bytearray = field(default_factory=bytearray)
    replication: int = 0
    block_size: int = 0
    modification_time: int = 0
    access_time: int = 0

    def status(self, suffix: str) -> dict[str, Any]:
        return {
            "accessTime": self.access_time,
            "blockSize": self.block_size,
            "childrenNum": 0,
            "fileId": id(self) & 0xFFFFFFF,
            "group": self.group,
            "length": len(self.data) if self.type == "FILE" else 0,
            "modificationTime": self.modification_time,
            "owner": self.owner,
            "pathSuffix": suffix,
            "permission": self.permission,
            "replication": self.replication,
            "storagePolicy": 0,
            "type": self.type,
        }


def normalize(path: str) -> str:
    parts = [part for part in path.split("/") if part]
    return "/" + "/".join(parts)


def parent_of(path: str) -> str:
    return normalize(path.rsplit("/", 1)[0]) if path != "/" else "/"


@dataclass
class Crash:
    """A scripted NameNode crash: the next `op` request drops its connection at `stage`."""

    op: str
    stage: str  # "namenode": before anything happens; "after_write": the DataNode stored the bytes;
    #             "hang": the NameNode answers only after release() (a NameNode too slow for the client)
    skip: int = 0  # matching requests to let through first


class FakeWebHDFS:
    """An in-memory HDFS behind WebHDFS: one or more NameNode ports and one DataNode port.

    `strict`: requests without `user.name` or `delegation` get 401 (else they act as dr.who).
    `tokens`: accepted delegation tokens -> user. `proxy_users`: users that may act for others
    with `doas`. `standby`: NameNode 0 starts in standby; with `namenodes=2`, NameNode 1 is then
    the active one.
    """

    def __init__(
        self,
        *,
        strict: bool = False,
        standby: bool = False,
        namenodes: int = 1,
        tokens: dict[str, str] | None = None,
        proxy_users: set[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.strict = strict
        self.tokens = tokens or {}
        self.proxy_users = proxy_users or set()
        self.host = host
        self.standby = [standby and index == 0 for index in range(namenodes)]
        self.nodes: dict[str, Node] = {"/": Node("DIRECTORY", "hdfs", permission="777",
                                                 modification_time=self._now())}
        self.requests: list[tuple[str, str, str, str]] = []  # (server, method, op, path)
        self.crashed = asyncio.Event()
        self.hung = asyncio.Event()  # set when a request scripted by hang_on() is being held
        self._crash: Crash | None = None
        self._release = asyncio.Event()
        self._namenode_runners: list[web.AppRunner | None] = [None] * namenodes
        self._namenode_ports = [0] * namenodes
        self._datanode_runner: web.AppRunner | None = None
        self._datanode_port = 0
        self._background: set[asyncio.Task] = set()

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> FakeWebHDFS:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self, index: int | None = None) -> None:
        """Start the DataNode and the NameNodes (or NameNode `index`), on their earlier ports."""
        if self._datanode_runner is None:
            self._datanode_runner, self._datanode_port = await self._serve(self._datanode, self._datanode_port)
        for i in self._indexes(index):
            if self._namenode_runners[i] is None:
                handler = self._namenode_handler(i)
                self._namenode_runners[i], self._namenode_ports[i] = await self._serve(
                    handler, self._namenode_ports[i])

    async def stop(self, index: int | None = None) -> None:
        """The NameNodes (or NameNode `index`) go away: connections drop, the port refuses."""
        for i in self._indexes(index):
            runner, self._namenode_runners[i] = self._namenode_runners[i], None
            if runner is not None:
                await runner.cleanup()

    async def close(self) -> None:
        self.release()
        await self.stop()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._datanode_runner is not None:
            await self._datanode_runner.cleanup()
            self._datanode_runner = None

    def _indexes(self, index: int | None) -> range:
        return range(len(self._namenode_runners)) if index is None else range(index, index + 1)

    async def _serve(self, handler, port: int) -> tuple[web.AppRunner, int]:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", API_PREFIX + "{path:.*}", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port, reuse_address=True)
        await site.start()
        return runner, runner.addresses[0][1]

    # --- what tests use ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of NameNode 0."""
        return self.urls[0]

    @property
    def urls(self) -> list[str]:
        return [f"http://{self.host}:{port}" for port in self._namenode_ports]

    @property
    def namenode_address(self) -> str:
        """host:port of NameNode 0, for `hdfs://` and `webhdfs://` URIs."""
        return f"{self.host}:{self._namenode_ports[0]}"

    def set_active(self, index: int) -> None:
        """Make NameNode `index` the active one and the others standby (an HA failover)."""
        self.standby = [i != index for i in range(len(self.standby))]

    def crash_on(self, op: str, stage: str = "namenode", skip: int = 0) -> None:
        """Script a crash: the next `op` request (after `skip` of them) drops its connection and
        every NameNode stops.

        stage "namenode": the NameNode drops the request before doing anything;
        "after_write": the DataNode stores the bytes, then the connection drops unanswered.
        """
        if stage not in ("namenode", "after_write"):
            raise ValueError(f"unknown crash stage {stage!r}")
        self.crashed.clear()
        self._crash = Crash(op.upper(), stage, skip)

    def hang_on(self, op: str, skip: int = 0) -> None:
        """Script a slow NameNode: the next `op` request (after `skip`) is held unanswered until
        `release()`, then carried out as usual, long after a client with a short timeout gave up."""
        self.hung.clear()
        self._release.clear()
        self._crash = Crash(op.upper(), "hang", skip)

    def release(self) -> None:
        """Let a request held by hang_on() go on."""
        self._release.set()

    def exists(self, path: str) -> bool:
        return normalize(path) in self.nodes

    def read(self, path: str) -> bytes:
        node = self.nodes[normalize(path)]
        if node.type != "FILE":
            raise IsADirectoryError(path)
        return bytes(node.data)

    def status(self, path: str) -> dict[str, Any]:
        return self.nodes[normalize(path)].status("")

    def listdir(self, path: str) -> list[str]:
        return sorted(name for name, _ in self._children(normalize(path)))

    def write(self, path: str, data: bytes, owner: str = "hdfs") -> None:
        """Put a file into the namespace directly (test set-up)."""
        path = normalize(path)
        self._make_dirs(parent_of(path), owner, "755")
        self.nodes[path] = Node("FILE", owner, permission="644", data=bytearray(data),
                                replication=DEFAULT_REPLICATION, block_size=DEFAULT_BLOCK_SIZE,
                                modification_time=self._now())

    # --- NameNode ---------------------------------------------------------------------------

    def _namenode_handler(self, index: int):
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._namenode(request, index)

        return handle

    async def _namenode(self, request: web.Request, index: int) -> web.StreamResponse:
        path = normalize(request.match_info["path"])
        op = request.query.get("op", "").upper()
        self.requests.append((f"namenode{index}", request.method, op, path))
        if self._crash_now(op, "namenode"):
            return await self._drop(request)
        if self._crash_now(op, "hang"):
            self.hung.set()
            await self._release.wait()
        try:
            user = self._user(request)
            if self.standby[index]:
                category = "WRITE" if op in WRITE_OPS else "READ"
                raise RemoteError("StandbyException", "org.apache.hadoop.ipc.StandbyException",
                                  f"Operation category {category} is not supported in state standby. "
                                  "Visit https://s.apache.org/sbnn-error")
            route = OPS.get((request.method, op))
            if route is None:
                raise illegal_argument(f'Invalid value for webhdfs parameter "op": {op!r} with {request.method}')
            self._check_permission_param(request)
            if route == "redirect":
                return self._redirect(request, op, path)
            return web.json_response(self._namenode_op(op, path, user, request.query))
        except RemoteError as error:
            return error.response()

    def _namenode_op(self, op: str, path: str, user: str, query) -> Any:
        if op == "GETFILESTATUS":
            return {"FileStatus": self._node(path).status("")}
        if op == "LISTSTATUS":
            node = self._node(path)
            if node.type == "FILE":
                return {"FileStatuses": {"FileStatus": [node.status("")]}}
            children = sorted(self._children(path))
            return {"FileStatuses": {"FileStatus": [child.status(name) for name, child in children]}}
        if op == "GETHOMEDIRECTORY":
            return {"Path": f"/user/{user}"}
        if op == "MKDIRS":
            return {"boolean": self._mkdirs(path, user, query.get("permission", "755"))}
        if op == "RENAME":
            return {"boolean": self._rename(path, query.get("destination", ""), user)}
        if op == "DELETE":
            return {"boolean": self._delete(path, query.get("recursive", "false") == "true", user)}
        if op == "TRUNCATE":
            return {"boolean": self._truncate(path, query.get("newlength", ""), user)}
        raise illegal_argument(f"unsupported op {op}")

    def _redirect(self, request: web.Request, op: str, path: str) -> web.Response:
        if op in ("OPEN", "APPEND"):
            self._check_readable_file(op, path, request.query)
        query = {key: value for key, value in request.query.items() if key != "noredirect"}
        query["namenoderpcaddress"] = f"{self.host}:{request.url.port}"
        location = f"http://{self.host}:{self._datanode_port}{API_PREFIX}{path}?{urlencode(query)}"
        if request.query.get("noredirect", "false") == "true":
            return web.json_response({"Location": location})
        return web.Response(status=307, headers={"Location": location})

    def _check_readable_file(self, op: str, path: str, query) -> None:
        """What Hadoop's NameNode checks before choosing a DataNode that holds the file."""
        node = self.nodes.get(path)
        if node is None:
            raise RemoteError("FileNotFoundException", "java.io.FileNotFoundException", f"File {path} not found.")
        if node.type != "FILE":
            raise RemoteError("FileNotFoundException", "java.io.FileNotFoundException", f"Path is not a file: {path}")
        offset = query.get("offset", "0")
        length = len(node.data)
        if op == "OPEN" and (not offset.isdigit() or (int(offset) >= length > 0)):
            raise RemoteError("IOException", "java.io.IOException",
                              f"Offset={offset} out of the range [0, {length}); OPEN, path={path}")

    def _user(self, request: web.Request) -> str:
        """The user a request acts as: its own, or the one named by `doas` for a proxy user."""
        user = self._authenticated_user(request)
        doas = request.query.get("doas")
        if not doas or doas == user:
            return user
        if user not in self.proxy_users:
            raise RemoteError("AuthorizationException",
                              "org.apache.hadoop.security.authorize.AuthorizationException",
                              f"User: {user} is not allowed to impersonate {doas}")
        return doas

    def _authenticated_user(self, request: web.Request) -> str:
        token = request.query.get("delegation")
        if token is not None:
            if token not in self.tokens:
                raise RemoteError("InvalidToken", "org.apache.hadoop.security.token.SecretManager$InvalidToken",
                                  f"token (HDFS_DELEGATION_TOKEN token {token}) can't be found in cache")
            return self.tokens[token]
        user = request.query.get("user.name")
        if user:
            return user
        if self.strict:
            raise RemoteError("SecurityException", "java.lang.SecurityException",
                              "Failed to obtain user group information: java.io.IOException: "
                              "Security enabled but user not authenticated by filter")
        return DEFAULT_WEB_USER

    @staticmethod
    def _check_permission_param(request: web.Request) -> None:
        permission = request.query.get("permission")
        if permission is not None and not PERMISSION.match(permission):
            raise illegal_argument(
                f'Invalid value for webhdfs parameter "permission": Invalid value: "{permission}" '
                f'does not belong to the domain {PERMISSION.pattern}')

    # --- DataNode ---------------------------------------------------------------------------

    async def _datanode(self, request: web.Request) -> web.StreamResponse:
        path = normalize(request.match_info["path"])
        op = request.query.get("op", "").upper()
        self.requests.append(("datanode", request.method, op, path))
        try:
            if not any(self._namenode_runners):
                raise RemoteError("ConnectException", "java.net.ConnectException",
                                  f"Call From datanode to {request.query.get('namenoderpcaddress')} failed "
                                  "on connection exception: java.net.ConnectException: Connection refused")
            user = self._user(request)
            if op == "OPEN":
                return self._open(path, request.query)
            data = await request.read()
            if op == "CREATE":
                self._create(path, data, user, request.query)
                response: web.StreamResponse = web.Response(
                    status=201, headers={"Location": f"webhdfs://{self.namenode_address}{path}"})
            elif op == "APPEND":
                self._append(path, data, user)
                response = web.Response(status=200)
            else:
                raise illegal_argument(f'Invalid value for webhdfs parameter "op": {op}')
        except RemoteError as error:
            return error.response()
        if self._crash_now(op, "after_write"):
            return await self._drop(request)
        return response

    def _open(self, path: str, query) -> web.Response:
        node = self._node(path)
        offset = int(query.get("offset", "0"))
        length = query.get("length")
        end = len(node.data) if length is None else offset + int(length)
        node.access_time = self._now()
        return web.Response(body=bytes(node.data[offset:end]), content_type="application/octet-stream")

    def _create(self, path: str, data: bytes, user: str, query) -> None:
        existing = self.nodes.get(path)
        if existing is not None and existing.type == "DIRECTORY":
            raise RemoteError("FileAlreadyExistsException",
                              "org.apache.hadoop.fs.FileAlreadyExistsException",
                              f"{path} already exists as a directory")
        if existing is not None and query.get("overwrite", "false") != "true":
            raise RemoteError("FileAlreadyExistsException",
                              "org.apache.hadoop.fs.FileAlreadyExistsException",
                              f"{path} for client 127.0.0.1 already exists")
        parent = parent_of(path)
        self._make_dirs(parent, user, "755")
        self._check_write(parent, user)
        modified = self._later(existing.modification_time) if existing is not None else self._now()
        self.nodes[path] = Node(
            "FILE", user, permission=query.get("permission", "644"), data=bytearray(data),
            replication=int(query.get("replication", DEFAULT_REPLICATION)),
            block_size=int(query.get("blocksize", DEFAULT_BLOCK_SIZE)),
            modification_time=modified, access_time=self._now())
        self._touch(parent)

    def _append(self, path: str, data: bytes, user: str) -> None:
        node = self._node(path)
        if node.type != "FILE":
            raise RemoteError("FileNotFoundException", "java.io.FileNotFoundException",
                              f"failed to append to non-existent file {path}")
        self._check_write(path, user)
        node.data += data
        node.modification_time = self._later(node.modification_time)

    # --- namespace operations ---------------------------------------------------------------

    def _node(self, path: str) -> Node:
        node = self.nodes.get(path)
        if node is None:
            raise not_found(path)
        return node

    def _children(self, path: str) -> list[tuple[str, Node]]:
        prefix = path.rstrip("/") + "/"
        return [(name[len(prefix):], node) for name, node in self.nodes.items()
                if name.startswith(prefix) and "/" not in name[len(prefix):] and name != "/"]

    def _make_dirs(self, path: str, user: str, permission: str) -> None:
        current = ""
        for part in [p for p in path.split("/") if p]:
            parent = current or "/"
            current += "/" + part
            node = self.nodes.get(current)
            if node is None:
                self._check_write(parent, user)
                self.nodes[current] = Node("DIRECTORY", user, permission=permission,
                                           modification_time=self._now())
                self._touch(parent)
            elif node.type != "DIRECTORY":
                raise RemoteError("ParentNotDirectoryException",
                                  "org.apache.hadoop.fs.ParentNotDirectoryException",
                                  f"{current} (is not a directory)")

    def _mkdirs(self, path: str, user: str, permission: str) -> bool:
        existing = self.nodes.get(path)
        if existing is not None and existing.type == "FILE":
            raise RemoteError("FileAlreadyExistsException", "org.apache.hadoop.fs.FileAlreadyExistsException",
                              f"Path is not a directory: {path}")
        self._make_dirs(path, user, permission)
        return True

    def _rename(self, src: str, destination: str, user: str) -> bool:
        if not destination.startswith("/"):
            raise illegal_argument(f'Invalid value for webhdfs parameter "destination": {destination!r}')
        dst = normalize(destination)
        if src not in self.nodes or src == "/":
            return False
        target = self.nodes.get(dst)
        if target is not None and target.type == "DIRECTORY":
            dst = normalize(dst + "/" + src.rsplit("/", 1)[1])
            target = self.nodes.get(dst)
        if target is not None or parent_of(dst) not in self.nodes or dst.startswith(src + "/"):
            return False
        self._check_write(parent_of(src), user)
        self._check_write(parent_of(dst), user)
        for name in [n for n in self.nodes if n == src or n.startswith(src + "/")]:
            self.nodes[dst + name[len(src):]] = self.nodes.pop(name)
        self._touch(parent_of(src))
        self._touch(parent_of(dst))
        return True

    def _delete(self, path: str, recursive: bool, user: str) -> bool:
        node = self.nodes.get(path)
        if node is None or path == "/":
            return False
        if node.type == "DIRECTORY" and self._children(path) and not recursive:
            raise RemoteError("PathIsNotEmptyDirectoryException",
                              "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
                              f"`{path} is non empty': Directory is not empty")
        self._check_write(parent_of(path), user)
        for name in [n for n in self.nodes if n == path or n.startswith(path + "/")]:
            del self.nodes[name]
        self._touch(parent_of(path))
        return True

    def _truncate(self, path: str, new_length: str, user: str) -> bool:
        node = self._node(path)
        try:
            length = int(new_length)
        except ValueError:
            raise illegal_argument(f'Invalid value for webhdfs parameter "newlength": {new_length!r}') from None
        if length > len(node.data):
            raise RemoteError("HadoopIllegalArgumentException",
                              "org.apache.hadoop.HadoopIllegalArgumentException",
                              f"Cannot truncate to a larger file size. Current size: {len(node.data)}, "
                              f"truncate size: {length}.", status=400)
        self._check_write(path, user)
        del node.data[length:]
        node.modification_time = self._later(node.modification_time)
        return True

    def _check_write(self, path: str, user: str) -> None:
        """POSIX-style check of the write bit for the owner or for others (groups are not modelled)."""
        node = self.nodes[path]
        mode = int(node.permission, 8)
        allowed = mode & (0o200 if user == node.owner else 0o002)
        if not allowed and user != "hdfs":
            kind = "d" if node.type == "DIRECTORY" else "-"
            raise RemoteError("AccessControlException", "org.apache.hadoop.security.AccessControlException",
                              f'Permission denied: user={user}, access=WRITE, inode="{path}":'
                              f"{node.owner}:{node.group}:{kind}{_rwx(mode)}")

    def _touch(self, path: str) -> None:
        node = self.nodes.get(path)
        if node is not None:
            node.modification_time = self._later(node.modification_time)

    # --- crashes ----------------------------------------------------------------------------

    def _crash_now(self, op: str, stage: str) -> bool:
        crash = self._crash
        if crash is None or crash.op != op or crash.stage != stage:
            return False
        if crash.skip:
            crash.skip -= 1
            return False
        self._crash = None
        return True

    async def _drop(self, request: web.Request) -> web.StreamResponse:
        """Die like a killed process: no answer on this connection, then every NameNode stops."""
        if request.transport is not None:
            request.transport.abort()
        task = asyncio.get_running_loop().create_task(self._crash_stop())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        raise asyncio.CancelledError

    async def _crash_stop(self) -> None:
        await self.stop()
        self.crashed.set()

    # --- time -------------------------------------------------------------------------------

    @staticmethod
    def _now() -> int:
        return int(time.time() * 1000)

    def _later(self, previous: int) -> int:
        """A modification time after `previous`: every write changes it, even within one ms."""
        return max(self._now(), previous + 1)


def _rwx(mode: int) -> str:
    return "".join(
        ("r" if mode & (4 << shift) else "-") + ("w" if mode & (2 << shift) else "-")
        + ("x" if mode & (1 << shift) else "-")
        for shift in (6, 3, 0)
    )


async def _serve_forever(port: int, strict: bool) -> None:
    fs = FakeWebHDFS(strict=strict)
    fs._namenode_ports[0] = port
    async with fs:
        print(f"fake WebHDFS NameNode on {fs.url}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9870)
    parser.add_argument("--strict", action="store_true", help="refuse requests without user.name")
    args = parser.parse_args()
    asyncio.run(_serve_forever(args.port, args.strict))


if __name__ == "__main__":
    main()
