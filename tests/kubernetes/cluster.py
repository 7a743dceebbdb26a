"""A real Kubernetes API server for tests, and the helpers to work with it.

Where the cluster comes from (see `acquire_cluster`): an existing one named by
KUBEFLUME_TEST_KUBECONFIG (kind, say), else the k8s-kit folder named by KUBEFLUME_K8S_KIT, started
on free loopback ports in a temporary state directory and wiped afterwards. With neither, the
tests are skipped, or fail when KUBEFLUME_REQUIRE_CLUSTER=1 (what `.ci/run` sets).

The helpers talk to the API server with the official client (reads and writes by API path, as
plain dicts) and with `kubectl` where a user would (apply, wait). Other test folders import this
module as `tests.kubernetes.cluster`; the fixtures built on it are in tests/kubernetes/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException

from tests.network import free_port

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
KUBECONFIG_ENV = "KUBEFLUME_TEST_KUBECONFIG"
KIT_ENV = "KUBEFLUME_K8S_KIT"
REQUIRE_ENV = "KUBEFLUME_REQUIRE_CLUSTER"
DEFAULT_TIMEOUT = 60.0
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

FLUMEAGENTS = "kubeflume.io/v1alpha1/flumeagents"
SHELLJOBS = "kubeflume.io/v1alpha1/shelljobs"
CONFIGMAPS = "v1/configmaps"
SERVICES = "v1/services"
PODS = "v1/pods"
EVENTS = "v1/events"
SERVICEACCOUNTS = "v1/serviceaccounts"
DEPLOYMENTS = "apps/v1/deployments"
STATEFULSETS = "apps/v1/statefulsets"
DAEMONSETS = "apps/v1/daemonsets"
REPLICASETS = "apps/v1/replicasets"
PERSISTENTVOLUMECLAIMS = "v1/persistentvolumeclaims"
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"
ROLES = "rbac.authorization.k8s.io/v1/roles"

T = TypeVar("T")


class NoCluster(Exception):
    """No cluster can be had; the message says why (it becomes the skip or failure reason)."""


class BadClusterSetting(NoCluster):
    """A cluster was asked for but cannot be had as asked: a failure, never a skip."""


def _free_port_pair() -> int:
    """A free port whose successor is free too (etcd's peer port is the client port + 1)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise NoCluster("found no two consecutive free ports for etcd")


def resource_path(resource: str, namespace: str | None, name: str | None = None, subresource: str = "") -> str:
    """The API path of `resource` ("v1/pods", "apps/v1/deployments", "kubeflume.io/v1alpha1/...")."""
    *group, version, plural = resource.split("/")
    base = f"/apis/{group[0]}/{version}" if group else f"/api/{version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = DEFAULT_TIMEOUT,
             operator: OperatorProcess | None = None, interval: float = 0.2) -> T:
    """Poll `condition` until it returns something truthy; fail naming `what` (and the operator's log).

    The timeout only bounds a wait that would otherwise hang: no test asserts how long anything takes.
    """
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        _still_waiting(deadline, what, timeout, operator)
        time.sleep(interval)
    return result


def posted(cluster: Cluster, namespace: str, kind: str, name: str,
           *reasons: str) -> Callable[[], list[dict[str, Any]] | None]:
    """A condition for `wait_for`: the object's Events once every one of `reasons` is among them.

    kopf posts Events from a queue after the handler that wrote the status has returned, so an Event
    may arrive after the status it goes with: wait for it, never read it right after a status wait.
    """
    def condition() -> list[dict[str, Any]] | None:
        events = cluster.events_about(namespace, kind, name)
        return events if set(reasons) <= {event["reason"] for event in events} else None
    return condition


async def wait_for_async(condition: Callable[[], T | None], what: str, timeout: float = DEFAULT_TIMEOUT,
                         operator: OperatorProcess | None = None, interval: float = 0.2) -> T:
    """`wait_for` in an async test: `condition` runs in a thread, so the test's own servers keep serving."""
    deadline = time.monotonic() + timeout
    while not (result := await asyncio.to_thread(condition)):
        _still_waiting(deadline, what, timeout, operator)
        await asyncio.sleep(interval)
    return result


def _still_waiting(deadline: float, what: str, timeout: float, operator: OperatorProcess | None) -> None:
    if operator is not None and operator.process.poll() is not None:
        raise AssertionError(f"the operator exited ({operator.process.returncode}) while waiting for "
                             f"{what}\n{operator.log_tail()}")
    if time.monotonic() > deadline:
        log = f"\n--- operator log (tail) ---\n{operator.log_tail()}" if operator else ""
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{log}")


@dataclass
class Cluster:
    """One API server reached through `kubeconfig`: typed-free REST calls and kubectl."""

    kubeconfig: Path
    _client: kubernetes.dynamic.DynamicClient | None = field(default=None, repr=False)

    @property
    def client(self) -> kubernetes.dynamic.DynamicClient:
        """The official client's raw-path interface (stable across client releases)."""
        if self._client is None:
            api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
            self._client = kubernetes.dynamic.DynamicClient(api)
        return self._client

    def raw(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
            **params: Any) -> bytes:
        """One API call; the answer's bytes. Errors raise ApiException (status, body)."""
        response = self.client.request(method, path, body=body, content_type=content_type, serialize=False,
                                       **params)
        return response.data

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                **params: Any) -> dict[str, Any]:
        """One API call; the answer as a dict (params: label_selector, field_selector, ...)."""
        return json.loads(self.raw(method, path, body, content_type, **params) or b"{}")

    def get(self, resource: str, namespace: str | None, name: str, subresource: str = "") -> dict[str, Any] | None:
        """The object as the server holds it now, or None when it does not exist."""
        try:
            return self.request("GET", resource_path(resource, namespace, name, subresource))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def list(self, resource: str, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.request("GET", resource_path(resource, namespace), label_selector=label_selector)["items"]

    def create(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", resource_path(resource, body["metadata"].get("namespace")), dict(body))

    def patch(self, resource: str, namespace: str | None, name: str, change: Any, subresource: str = "",
              content_type: str = MERGE_PATCH) -> dict[str, Any]:
        return self.request("PATCH", resource_path(resource, namespace, name, subresource), change, content_type)

    def delete(self, resource: str, namespace: str | None, name: str, **options: Any) -> None:
        """Delete (options: a DeleteOptions body, e.g. propagationPolicy); a missing object is fine."""
        try:
            self.request("DELETE", resource_path(resource, namespace, name), options or None)
        except ApiException as error:
            if error.status != 404:
                raise

    def events_about(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        """core/v1 Events about one object (what `kubectl describe` shows)."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        items = self.request("GET", resource_path(EVENTS, namespace), field_selector=selector)["items"]
        return sorted(items, key=lambda event: event.get("lastTimestamp") or event.get("eventTime") or "")

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True,
                timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """`kubectl ARGS` against this cluster, as a user would run it."""
        command = [kubectl_command(), "--kubeconfig", str(self.kubeconfig), *args]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def apply(self, manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]], *extra: str) -> str:
        """`kubectl apply -f -` of one object or several; kubectl's output."""
        documents = [manifest] if isinstance(manifest, Mapping) else list(manifest)
        return self.kubectl("apply", "-f", "-", *extra, stdin=yaml.safe_dump_all(documents)).stdout

    def server_version(self) -> str:
        return self.request("GET", "/version")["gitVersion"]


def kubectl_command() -> str:
    found = shutil.which("kubectl")
    if not found:
        raise NoCluster("kubectl is not on PATH (the Kubernetes tests use it as a user would)")
    return found


def wait_until_ready(cluster: Cluster, timeout: float = 120.0) -> None:
    """/readyz answers ok and the default ServiceAccount machinery is up."""
    def ready() -> bool:
        try:
            return cluster.raw("GET", "/readyz").strip() == b"ok"
        except (ApiException, OSError):
            return False

    wait_for(ready, "the API server's /readyz", timeout=timeout)


@dataclass
class Kit:
    """A k8s-kit control plane started by this process, in a state directory of its own."""

    folder: Path
    state: Path
    ports: dict[str, int]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "K8S_KIT_API_PORT": str(self.ports["api"]),
                "K8S_KIT_ETCD_PORT": str(self.ports["etcd"]), "K8S_KIT_KCM_PORT": str(self.ports["kcm"])}

    def start(self) -> Cluster:
        done = subprocess.run(["bash", str(self.folder / "start.sh"), str(self.state)], env=self.environment(),
                              capture_output=True, text=True, timeout=300)
        found = re.search(r"^KUBECONFIG=(.+)$", done.stdout, re.MULTILINE)
        if done.returncode != 0 or not found:
            raise BadClusterSetting(f"{self.folder}/start.sh failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                            f"{self.log_tails()}")
        return Cluster(Path(found.group(1).strip()))

    def stop(self) -> None:
        subprocess.run(["bash", str(self.folder / "stop.sh"), str(self.state), "--wipe"], env=self.environment(),
                       capture_output=True, timeout=120)
        shutil.rmtree(self.state, ignore_errors=True)

    def log_tails(self, lines: int = 10) -> str:
        tails = []
        for log in sorted((self.state / "logs").glob("*.log")):
            tails.append(f"\n--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "".join(tails)


def kit_folder(value: str) -> Path:
    """KUBEFLUME_K8S_KIT as a folder: absolute, or relative to the working directory or the repository."""
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else list(dict.fromkeys([Path.cwd() / path, REPO / path]))
    for candidate in candidates:
        if (candidate / "start.sh").is_file():
            return candidate.resolve()
    raise BadClusterSetting(f"{KIT_ENV}={value}: no start.sh there (looked in {', '.join(map(str, candidates))})")


@contextlib.contextmanager
def acquire_cluster(environ: Mapping[str, str] = os.environ) -> Iterator[Cluster]:
    """The test cluster: KUBEFLUME_TEST_KUBECONFIG, else a k8s-kit started here (and wiped after)."""
    kubectl_command()
    if environ.get(KUBECONFIG_ENV):
        cluster = Cluster(Path(environ[KUBECONFIG_ENV]).expanduser().resolve())
        wait_until_ready(cluster, timeout=30)
        yield cluster
        return
    if not environ.get(KIT_ENV):
        raise NoCluster(f"no Kubernetes cluster: set {KUBECONFIG_ENV} to a kubeconfig, "
                        f"or {KIT_ENV} to the k8s-kit folder (e.g. ../shared/k8s-kit)")
    folder = kit_folder(environ[KIT_ENV])
    kit = Kit(folder, Path(tempfile.mkdtemp(prefix="kubeflume-kit-")),
              {"api": free_port(), "etcd": _free_port_pair(), "kcm": free_port()})
    try:
        cluster = kit.start()
        wait_until_ready(cluster)
        yield cluster
    finally:
        kit.stop()


def cluster_required(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")


def namespace_name(test_name: str) -> str:
    """A DNS-1123 label from a test's name, unique per call."""
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"{stem or 'test'}-{uuid.uuid4().hex[:6]}"


def create_namespace(cluster: Cluster, name: str, labels: Mapping[str, str] | None = None) -> None:
    cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": name, "labels": dict(labels or {})}})
    # The namespace's `default` ServiceAccount comes from the controller-manager, shortly after; until
    # then the API server refuses pods there (a fresh cluster, as in CI, is slowest to make it).
    wait_for(lambda: cluster.get(SERVICEACCOUNTS, name, "default"), f"the default ServiceAccount of {name}")


def delete_namespace(cluster: Cluster, name: str) -> None:
    """Delete the namespace, first dropping our finalizers so no stopped operator holds it."""
    for resource in (FLUMEAGENTS, SHELLJOBS):
        with contextlib.suppress(ApiException):
            for obj in cluster.list(resource, name):
                if obj["metadata"].get("finalizers"):
                    cluster.patch(resource, name, obj["metadata"]["name"], {"metadata": {"finalizers": None}})
    cluster.delete("v1/namespaces", None, name)


def crd_files(folder: Path = CRD_DIR) -> list[Path]:
    return sorted(folder.glob("*.yaml"))


def crd_names(files: Iterable[Path]) -> list[str]:
    return [doc["metadata"]["name"] for path in files for doc in yaml.safe_load_all(path.read_text()) if doc]


def install_crds(cluster: Cluster, files: Iterable[Path] | None = None, *extra: str) -> list[str]:
    """`kubectl apply --server-side` the CRD files and wait until each is Established; their names."""
    files = list(files or crd_files())
    arguments = [argument for path in files for argument in ("-f", str(path))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *arguments, *extra)
    names = crd_names(files)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *[f"crd/{name}" for name in names])
    return names


def crds_established(cluster: Cluster, names: Iterable[str]) -> bool:
    for name in names:
        crd = cluster.get(CRDS, None, name)
        found = (crd or {}).get("status", {}).get("conditions") or ()
        if crd is None or crd["metadata"].get("deletionTimestamp") or not any(
                c["type"] == "Established" and c["status"] == "True" for c in found):
            return False
    return True


def ensure_crds(cluster: Cluster) -> list[str]:
    """The repository's CRDs, installed unless already there (a test may have removed them)."""
    names = crd_names(crd_files())
    if crds_established(cluster, names):
        return names
    wait_for(lambda: all(cluster.get(CRDS, None, name) is None or not cluster.get(CRDS, None, name)["metadata"]
                         .get("deletionTimestamp") for name in names), "CRDs being deleted to be gone")
    return install_crds(cluster)


@dataclass
class OperatorProcess:
    """The real operator, a child process of the test, with its log in a file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    liveness_url: str | None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as Kubernetes stops a pod; SIGKILL only if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.wait()

    def kill(self) -> int:
        """SIGKILL: the operator dies wherever it is, as in an OOM kill or a node loss."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait()

    def live(self) -> bool:
        if self.liveness_url is None:
            return False
        try:
            with urllib.request.urlopen(self.liveness_url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False


OPERATOR_MAIN = (sys.executable, "-m", "kubeflume_operator.main", "--verbose")
OPERATOR_CLI = (sys.executable, "-m", "kubeflume_operator.cli", "operator")  # `kubeflume operator`


def start_operator(kubeconfig: Path, namespace: str, log_dir: Path, *, env: Mapping[str, str] | None = None,
                   args: Sequence[str] = (), timeout: float = DEFAULT_TIMEOUT) -> OperatorProcess:
    """Run `python -m kubeflume_operator.main -n NAMESPACE ARGS` with `kubeconfig`; return once it is live.

    Its liveness endpoint is asked for on a free port (and waited on), so several operators and
    tests can run side by side.
    """
    liveness_url = local_liveness_url()
    return launch_operator(kubeconfig, log_dir, [f"--liveness={liveness_url}", "--namespace", namespace, *args],
                           env=env, liveness_url=liveness_url, timeout=timeout)


def local_liveness_url() -> str:
    return f"http://127.0.0.1:{free_port()}/healthz"


def launch_operator(kubeconfig: Path, log_dir: Path, args: Sequence[str], *, env: Mapping[str, str] | None = None,
                    command: Sequence[str] = OPERATOR_MAIN, liveness_url: str | None = None,
                    timeout: float = DEFAULT_TIMEOUT) -> OperatorProcess:
    """`COMMAND ARGS` with `kubeconfig`, its output in a log file; once live when `liveness_url` is given."""
    log_path = log_dir / f"operator-{uuid.uuid4().hex[:8]}.log"
    environment = {**os.environ, "KUBECONFIG": str(kubeconfig), **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([*command, *args], stdout=log_file, stderr=subprocess.STDOUT, env=environment)
    operator = OperatorProcess(process, log_path, liveness_url)
    if liveness_url is None:
        return operator
    try:
        wait_for(operator.live, "the operator's liveness endpoint", timeout=timeout, operator=operator)
    except BaseException:
        operator.stop()
        raise
    return operator


@contextlib.contextmanager
def running_operator(kubeconfig: Path, namespace: str, log_dir: Path, **options: Any) -> Iterator[OperatorProcess]:
    """`start_operator`, stopped (SIGTERM) on exit."""
    operator = start_operator(kubeconfig, namespace, log_dir, **options)
    try:
        yield operator
    finally:
        operator.stop()


def service_account_kubeconfig(cluster: Cluster, namespace: str, service_account: str, path: Path,
                               seconds: int = 3600) -> Path:
    """A kubeconfig that is `service_account` (a token from the TokenRequest API), as its pod would be."""
    answer = cluster.request("POST", resource_path(SERVICEACCOUNTS, namespace, service_account, "token"), {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": seconds}})
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c["cluster"] for c in admin["clusters"] if c["name"] == context["cluster"])
    user = f"system:serviceaccount:{namespace}:{service_account}"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": server}],
        "users": [{"name": user, "user": {"token": answer["status"]["token"]}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": user, "namespace": namespace}}],
        "current-context": "test",
    }))
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class ChartOperator:
    """How the chart runs the operator: its container's args and env, and its ServiceAccount."""

    args: list[str]
    env: dict[str, str]
    service_account: str

    @classmethod
    def of(cls, deployment: Mapping[str, Any]) -> ChartOperator:
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {item["name"]: item["value"] for item in container.get("env", ()) if "value" in item}
        return cls(list(container.get("args", ())), env, pod["serviceAccountName"])

    def local_args(self, liveness_url: str, namespace: str | None = None) -> list[str]:
        """The chart's args with the liveness endpoint moved to `liveness_url` and the webhook to a free
        local port (the pod's fixed ports would collide between tests), serving only `namespace`
        instead of the whole cluster when it is given."""
        moved = {"--liveness": f"--liveness={liveness_url}",
                 "--webhook-listen": f"--webhook-listen=127.0.0.1:{free_port()}"}
        if namespace is not None:
            moved["--all-namespaces"] = f"--namespace={namespace}"
        return [moved.get(arg.split("=", 1)[0], arg) for arg in self.args]


def start_chart_operator(cluster: Cluster, deployment: Mapping[str, Any], log_dir: Path, *,
                         namespace: str | None = None, env: Mapping[str, str] | None = None) -> OperatorProcess:
    """The operator as the chart's Deployment would run it: its args, env and ServiceAccount's token.

    The admin kubeconfig is not used: every call the operator makes goes through the chart's RBAC.
    """
    chart = ChartOperator.of(deployment)
    kubeconfig = service_account_kubeconfig(cluster, deployment["metadata"]["namespace"], chart.service_account,
                                            log_dir / f"{chart.service_account}.kubeconfig")
    liveness_url = local_liveness_url()
    return launch_operator(kubeconfig, log_dir, chart.local_args(liveness_url, namespace),
                           env={**chart.env, **(env or {})},
                           liveness_url=liveness_url)
