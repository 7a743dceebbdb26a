"""Run the real operator process against kmock's Kubernetes emulator.

The emulator (the `kmock` pytest fixture) serves Kubernetes URLs from memory in the test's event
loop; the operator runs as a subprocess (`python -m kubeflume_operator.main`) that reaches it through
a kubeconfig, exactly as it would reach a real API server. Tests therefore see the operator's real
requests and the objects they leave behind.

What kmock does not emulate, and what the helpers here do about it:
- no `uid`, `generation` or `creationTimestamp` on created objects: `create()` fills them in
  and `update_spec()` bumps `generation` like the API server would;
- no label or field selectors, no server-side apply, no PUT: the operator must (and does) use
  PATCH and filter what it watches by labels itself;
- no status subresource separation, no schema validation or pruning: CRD schemas are checked
  separately (tests/unit/test_crds_and_examples.py);
- no controllers, no pods, no garbage collector: tests create pod objects and set workload
  status themselves, and check ownerReferences where the garbage collector would act;
- no `metadata.generateName`, no new resourceVersion per write, HTTP 500 for a failed JSON-patch
  test: `KubernetesApiEmulator` adds what kopf needs; use it with
  `pytestmark = pytest.mark.kmock(cls=KubernetesApiEmulator)`.

Objects must carry `metadata.namespace` in their body: kmock filters namespaced watch events by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiohttp.web
import jsonpatch
import kmock as kmock_lib
import yaml

from tests.kubernetes.cluster import resource_path
from tests.network import free_port

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
DEFAULT_TIMEOUT = 60.0

T = TypeVar("T")


class KubernetesApiEmulator(kmock_lib.KubernetesEmulator):
    """kmock's emulator plus three things the API server does and kopf relies on.

    - `metadata.generateName` (kopf names its Events that way);
    - a new `metadata.resourceVersion` on every write, so kopf recognises its own changes
      coming back through the watch instead of handling stale copies again;
    - a failed JSON-patch `test` (kopf's optimistic concurrency) is HTTP 422, not 500.
    """

    _versions = itertools.count(2)

    async def _handle(self, request: kmock_lib.Request) -> aiohttp.web.StreamResponse:
        version = str(next(self._versions))
        if request.action == kmock_lib.action.CREATE and isinstance(request.data, dict):
            metadata = request.data.setdefault("metadata", {})
            if not metadata.get("name") and metadata.get("generateName"):
                metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:8]
            metadata.setdefault("resourceVersion", version)
        elif request.action == kmock_lib.action.UPDATE and isinstance(request.data, dict):
            request.data.setdefault("metadata", {})["resourceVersion"] = version
        elif request.action == kmock_lib.action.UPDATE and isinstance(request.data, list):
            request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
        return await super()._handle(request)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, jsonpatch.JsonPatchTestFailed):
            exc = kmock_lib.KubernetesError(status=422, reason="Invalid", message=f"the object has changed: {exc}")
        return await super()._render_error(exc)


def declare_crds(kmock: kmock_lib.KubernetesEmulator, paths: Iterable[Path]) -> list[str]:
    """Make the custom resources of these CRD files discoverable, as installing the CRDs would.

    Returns the resources as "group/version/plural".
    """
    declared = []
    for path in paths:
        for crd in yaml.safe_load_all(path.read_text()):
            spec = crd["spec"]
            names = spec["names"]
            for version in spec["versions"]:
                resource = f"{spec['group']}/{version['name']}/{names['plural']}"
                kmock.resources[resource] = kmock_lib.ResourceInfo(
                    kind=names["kind"],
                    singular=names.get("singular", names["kind"].lower()),
                    shortnames=set(names.get("shortNames", ())),
                    categories=set(names.get("categories", ())),
                    verbs={"list", "watch", "get", "create", "patch", "update", "delete"},
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    subresources=set(version.get("subresources", {})),
                )
                declared.append(resource)
    return declared


def prepare_cluster(kmock: kmock_lib.KubernetesEmulator, crd_files: Iterable[str]) -> list[str]:
    """Built-in resources (pods, events, apps/v1...) plus the named CRD files of crds/."""
    kmock.resources.load_bundled()
    return declare_crds(kmock, [CRD_DIR / name for name in crd_files])


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "kmock-does-not-check-tokens"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
        "current-context": "kmock",
    }))
    return path


async def wait_for(condition: Callable[[], T | None], what: str, timeout: float = DEFAULT_TIMEOUT,
                   operator: OperatorProcess | None = None) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` (and the operator's log)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            log = f"\n--- operator log (tail) ---\n{operator.log_tail()}" if operator else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{log}")
        if operator is not None and operator.process.returncode is not None:
            raise AssertionError(f"the operator exited ({operator.process.returncode}) while waiting "
                                 f"for {what}\n{operator.log_tail()}")
        await asyncio.sleep(0.05)


@dataclass
class OperatorProcess:
    process: asyncio.subprocess.Process
    log_path: Path
    liveness_url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as Kubernetes stops a pod; SIGKILL only if it does not exit in time."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode


async def _liveness_answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


@contextlib.asynccontextmanager
async def running_operator(
    kmock: kmock_lib.KubernetesEmulator,
    tmp_path: Path,
    *,
    watched: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    args: Iterable[str] = ("--all-namespaces",),
) -> AsyncIterator[OperatorProcess]:
    """Start `python -m kubeflume_operator.main` against kmock; stop it on exit.

    Cluster-wide by default: in namespaced mode kopf lists /api/v1/namespaces, a path kmock 0.8
    fails to parse (HTTP 500), so `--namespace` cannot be exercised against it.
    Waits until the liveness endpoint answers and the operator watches every resource in
    `watched` ("group/version/plural"), so that what the test creates next is seen as a change.
    """
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url))
    liveness_url = f"http://127.0.0.1:{free_port()}/healthz"
    command = [sys.executable, "-m", "kubeflume_operator.main", "--verbose", "--liveness", liveness_url, *args]
    log_path = tmp_path / f"operator-{uuid.uuid4().hex[:8]}.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(kubeconfig), **(env or {})},
        )
    operator = OperatorProcess(process, log_path, liveness_url)
    try:
        await _wait_until_live(operator)
        for resource in watched:
            view = kmock[f"watch {resource}"]
            await wait_for(lambda view=view: len(list(view)) > 0, f"the operator to watch {resource}",
                           operator=operator)
        yield operator
    finally:
        await operator.stop()


async def _wait_until_live(operator: OperatorProcess, timeout: float = DEFAULT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not await _liveness_answers(operator.liveness_url):
        if operator.process.returncode is not None:
            raise AssertionError(f"the operator exited ({operator.process.returncode}):\n{operator.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the operator did not become live:\n{operator.log_tail()}")
        await asyncio.sleep(0.1)


def stored(kmock: kmock_lib.KubernetesEmulator, resource: str, namespace: str | None,
           name: str) -> dict[str, Any] | None:
    """The object as the emulator holds it now (a deep copy), or None if absent or deleted."""
    key = (kmock_lib.resource(resource), namespace, name)
    if key not in kmock.objects or kmock.objects[key].deleted:
        return None
    return copy.deepcopy(kmock.objects[key].raw)


def _with_server_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a real API server would add on creation and kmock does not."""
    body = copy.deepcopy(dict(body))
    metadata = body.setdefault("metadata", {})
    metadata.setdefault("uid", str(uuid.uuid4()))
    metadata.setdefault("generation", 1)
    metadata.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return body


async def _request(kmock: kmock_lib.KubernetesEmulator, method: str, path: str,
                   body: Any = None) -> dict[str, Any]:
    async with kmock.request(method, path, json=body) as response:
        payload = await response.json()
        if response.status >= 400:
            raise AssertionError(f"{method} {path} -> {response.status}: {payload.get('message')}")
        return payload


async def create(kmock: kmock_lib.KubernetesEmulator, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """POST an object, as `kubectl create` would (through the API, so watchers see it)."""
    full = _with_server_fields(body)
    return await _request(kmock, "POST", resource_path(resource, full["metadata"].get("namespace")), full)


async def patch(kmock: kmock_lib.KubernetesEmulator, resource: str, namespace: str | None, name: str,
                change: Mapping[str, Any] | list[Any], subresource: str = "") -> dict[str, Any]:
    """A merge patch (dict) or JSON patch (list), as kmock tells them apart."""
    return await _request(kmock, "PATCH", resource_path(resource, namespace, name, subresource), change)


async def update_spec(kmock: kmock_lib.KubernetesEmulator, resource: str, namespace: str, name: str,
                      spec: Mapping[str, Any]) -> dict[str, Any]:
    """Replace the spec and bump metadata.generation, as the API server does on a spec change."""
    current = stored(kmock, resource, namespace, name)
    assert current is not None, f"{resource} {namespace}/{name} does not exist"
    generation = current["metadata"].get("generation", 1) + 1
    return await patch(kmock, resource, namespace, name, [
        {"op": "add", "path": "/spec", "value": dict(spec)},
        {"op": "add", "path": "/metadata/generation", "value": generation},
    ])


async def delete(kmock: kmock_lib.KubernetesEmulator, resource: str, namespace: str | None, name: str) -> None:
    await _request(kmock, "DELETE", resource_path(resource, namespace, name))


def events_about(kmock: kmock_lib.KubernetesEmulator, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    """Events posted for one object (kopf posts core/v1 Events)."""
    events = []
    for (resource, event_namespace, _), obj in kmock.objects.items():
        if resource != kmock_lib.resource("v1/events") or event_namespace != namespace or obj.deleted:
            continue
        event = obj.raw
        involved = event.get("involvedObject", {})
        if involved.get("kind") == kind and involved.get("name") == name:
            events.append(copy.deepcopy(event))
    return events
