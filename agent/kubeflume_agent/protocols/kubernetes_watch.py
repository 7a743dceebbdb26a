"""Local copies of Kubernetes objects (the pods of one node, the namespaces), kept by list+watch.

A copy is read on the hot path without any I/O; one background task per copy keeps it current
(ListWatch): it lists the objects (pods: field selector `spec.nodeName`), then watches from the
list's resourceVersion, and lists again when the server says that version is gone (410) or the
connection breaks. A deleted object stays in the copy for `deleted_ttl` seconds, so the last lines
of its containers are still labelled.

Credentials come from a kubeconfig file or, without one, from the pod's service account
(the `kubernetes` client's loaders read both); requests are made with aiohttp on the agent's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
import orjson
from kubernetes import config as kube_config
from kubernetes.client import Configuration

log = logging.getLogger(__name__)

WATCH_SECONDS = 300  # the server ends each watch after this long; it is then resumed, not re-listed
RETRY_SECONDS = (0.5, 1, 2, 5, 10)  # waits between failed attempts, the last one repeated


@dataclass(frozen=True)
class Pod:
    """What events are labelled with; a new object for every change, so callers may cache by identity."""

    namespace: str
    name: str
    uid: str
    node: str
    labels: dict[str, str]
    annotations: dict[str, str]
    images: dict[str, str]  # container name -> image
    container_ids: tuple[str, ...] = ()
    deleted_at: float | None = field(default=None, compare=False)

    @classmethod
    def from_api(cls, item: dict) -> Pod:
        metadata, spec, status = item.get("metadata", {}), item.get("spec", {}), item.get("status", {})
        containers = [*spec.get("initContainers", ()), *spec.get("containers", ()),
                      *spec.get("ephemeralContainers", ())]
        statuses = [*status.get("initContainerStatuses", ()), *status.get("containerStatuses", ()),
                    *status.get("ephemeralContainerStatuses", ())]
        return cls(metadata.get("namespace", ""), metadata.get("name", ""), metadata.get("uid", ""),
                   spec.get("nodeName", ""), metadata.get("labels") or {}, metadata.get("annotations") or {},
                   {c["name"]: c.get("image", "") for c in containers if "name" in c},
                   tuple(s["containerID"].partition("://")[2] for s in statuses if s.get("containerID")))


@dataclass(frozen=True)
class Namespace:
    """A namespace's labels and annotations; a new object for every change."""

    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    deleted_at: float | None = field(default=None, compare=False)

    @classmethod
    def from_api(cls, item: dict) -> Namespace:
        metadata = item.get("metadata", {})
        return cls(metadata.get("name", ""), metadata.get("labels") or {}, metadata.get("annotations") or {})


class Gone(Exception):
    """The resourceVersion a watch started from is too old: list again."""


def client_configuration(kubeconfig: str | None) -> Configuration:
    """Where the API is and how to authenticate: from `kubeconfig`, else the in-cluster service account."""
    configuration = Configuration()
    if kubeconfig:
        kube_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        kube_config.load_incluster_config(client_configuration=configuration)
    return configuration


def _ssl_context(configuration: Configuration) -> ssl.SSLContext | bool:
    if not configuration.host.startswith("https"):
        return False
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


@dataclass(frozen=True)
class _Api:
    """Where objects are read from: an HTTP session and the API's address and credentials."""

    session: aiohttp.ClientSession
    configuration: Configuration

    def get(self, resource: str, params: dict[str, str]) -> Any:
        """GET of a core resource (a list, or a watch with `watch=1`), as an async context manager."""
        token = self.configuration.get_api_key_with_prefix("authorization")  # refreshes a rotated token
        return self.session.get(f"{self.configuration.host}/api/v1/{resource}", params=params,
                                headers={"Authorization": token} if token else {})


class Watched(Protocol):
    @property
    def deleted_at(self) -> float | None: ...


T = TypeVar("T", bound=Watched)


class ListWatch(Generic[T]):
    """A copy of one core resource kept current in `items` by list+watch; subclasses say which
    objects (`resource`, `params`), how one is read (`parse`) and keyed (`key_of`)."""

    resource = ""

    def __init__(self, configure: Callable[[], Configuration], *, deleted_ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.configure = configure  # called at start: reads the kubeconfig or the service account
        self.deleted_ttl = deleted_ttl
        self.clock = clock
        self.items: dict[Any, T] = {}
        self.connected = False
        self.generation = 0  # grows with every change of the copy: what was derived from it may be kept till then
        self.lists = 0  # how many times the objects were listed (a re-list after 410 Gone counts)
        self._task: asyncio.Task | None = None
        self._expired_at = float("-inf")
        self._api: _Api | None = None

    def parse(self, item: dict) -> T:
        raise NotImplementedError

    def key_of(self, item: T) -> Any:
        raise NotImplementedError

    def params(self) -> dict[str, str]:
        return {}

    def description(self) -> str:
        return self.resource

    async def start(self) -> None:
        configuration = self.configure()
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=_ssl_context(configuration)),
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=WATCH_SECONDS + 30))
        self._api = _Api(session, configuration)
        self._task = asyncio.create_task(self._run(self._api), name=f"kubernetes {self.resource} watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._api is not None:
            await self._api.session.close()

    # -- keeping the copy ---------------------------------------------------------------------

    async def _run(self, api: _Api) -> None:
        failures = 0
        while True:
            try:
                version = await self._list(api)
                failures = 0
                while True:
                    version = await self._watch(api, version)
            except Gone:
                log.info("kubernetes: the watch's resourceVersion expired; listing the %s again", self.resource)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
                self.connected = False
                wait = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("kubernetes: %s cannot be read (%s); events go on without what they say; "
                            "retrying in %s s", self.description(), error or type(error).__name__, wait)
                await asyncio.sleep(wait)

    async def _list(self, api: _Api) -> str:
        async with api.get(self.resource, self.params()) as response:
            response.raise_for_status()
            body = orjson.loads(await response.read())
        now = self.clock()
        listed = {}
        for item in body.get("items", ()):
            parsed = self.parse(item)
            listed[self.key_of(parsed)] = parsed
        for key, known in self.items.items():  # deleted while the watch was down: keep them for their late lines
            if key not in listed and known.deleted_at is None:
                self._put(replace(known, deleted_at=now))  # type: ignore[type-var]
        for parsed in listed.values():
            self._put(parsed)
        self._expire(now)
        self.connected = True
        self.lists += 1
        return body.get("metadata", {}).get("resourceVersion", "")

    async def _watch(self, api: _Api, version: str) -> str:
        """Follow changes from `version` until the server ends the watch; the version reached."""
        params = {**self.params(), "watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(WATCH_SECONDS)}
        async with api.get(self.resource, params) as response:
            if response.status == 410:
                raise Gone()
            response.raise_for_status()
            async for line in response.content:
                if line.strip():
                    version = self._apply(orjson.loads(line)) or version
        return version

    def _apply(self, change: dict) -> str | None:
        """One watch event into the copy; the resourceVersion it carries."""
        kind, item = change.get("type"), change.get("object") or {}
        if kind == "ERROR":
            if item.get("code") == 410:
                raise Gone()
            raise ValueError(f"watch error: {item.get('message', item)}")
        version = item.get("metadata", {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            self._put(self.parse(item))
        elif kind == "DELETED":
            self._put(replace(self.parse(item), deleted_at=self.clock()))  # type: ignore[type-var]
        self._expire(self.clock())
        return version

    def _put(self, item: T) -> None:
        self.generation += 1
        self.items[self.key_of(item)] = item

    def _expire(self, now: float) -> None:
        """Forget objects deleted more than deleted_ttl ago (looked at once a second at most)."""
        if now - self._expired_at < 1.0:
            return
        self._expired_at = now
        self.generation += 1
        self._forget_expired(now)

    def _forget_expired(self, now: float) -> None:
        self.items = {key: item for key, item in self.items.items() if not self._expired(item, now)}

    def _expired(self, item: Watched, now: float) -> bool:
        return item.deleted_at is not None and now - item.deleted_at >= self.deleted_ttl


class PodWatch(ListWatch[Pod]):
    """The pods of one node (all pods when `node` is empty), by (namespace, name) and by container id."""

    resource = "pods"

    def __init__(self, configure: Callable[[], Configuration], *, node: str, deleted_ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(configure, deleted_ttl=deleted_ttl, clock=clock)
        self.node = node
        self.by_container: dict[str, Pod] = {}  # container id -> pod

    @property
    def pods(self) -> dict[tuple[str, str], Pod]:
        return self.items

    def parse(self, item: dict) -> Pod:
        return Pod.from_api(item)

    def key_of(self, item: Pod) -> tuple[str, str]:
        return (item.namespace, item.name)

    def params(self) -> dict[str, str]:
        return {"fieldSelector": f"spec.nodeName={self.node}"} if self.node else {}

    def description(self) -> str:
        return f"pods of node {self.node or '(all)'}"

    def lookup(self, namespace: str, name: str, container_id: str) -> Pod | None:
        """The pod a container's log belongs to: by container id when the runtime reported it (a
        pod name may be reused), else by name."""
        return self.by_container.get(container_id) or self.items.get((namespace, name))

    def _put(self, item: Pod) -> None:
        super()._put(item)
        for container_id in item.container_ids:
            self.by_container[container_id] = item

    def _forget_expired(self, now: float) -> None:
        super()._forget_expired(now)
        self.by_container = {cid: pod for cid, pod in self.by_container.items() if not self._expired(pod, now)}


class NamespaceWatch(ListWatch[Namespace]):
    """All namespaces, by name."""

    resource = "namespaces"

    def parse(self, item: dict) -> Namespace:
        return Namespace.from_api(item)

    def key_of(self, item: Namespace) -> str:
        return item.name

    def lookup(self, name: str) -> Namespace | None:
        return self.items.get(name)
