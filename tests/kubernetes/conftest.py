"""Fixtures for tests on a real Kubernetes API server (see cluster.py for where it comes from).

One cluster per test session, one namespace per test. Put a test that needs the real server
under tests/kubernetes/ and mark it `kubernetes` (`pytestmark = pytest.mark.kubernetes`), so it
shares this session's cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kubernetes.cluster import (
    DEPLOYMENTS,
    REPO,
    BadClusterSetting,
    Cluster,
    NoCluster,
    OperatorProcess,
    acquire_cluster,
    cluster_required,
    create_namespace,
    delete_namespace,
    ensure_crds,
    namespace_name,
    start_chart_operator,
    start_operator,
)
from tests.packaging.helm_venv import build_helm_venv, run_helm_tool

CHART = REPO / "charts" / "kubeflume"

# Fast timers so tests see the operator's work in seconds, not the production 15 s / 5 s.
OPERATOR_ENV = {
    "KUBEFLUME_STATUS_INTERVAL": "0.5",
    "KUBEFLUME_SHELLJOB_POLL_INTERVAL": "0.5",
    "KUBEFLUME_AGENT_IMAGE": "registry.test/kubeflume/agent:dev",
}
# The same through the chart's own values.
CHART_VALUES = {
    "statusInterval": 0.5,
    "shellJobPollInterval": 0.5,
    "agentImage": {"repository": "registry.test/kubeflume/agent", "tag": "dev"},
    # The kit has no kube-proxy: the API server cannot reach the webhook's Service (the operator
    # still makes its certificate and injects the CA). Ignore lets writes through at once; the
    # local webhook (`--webhook-listen`, test_admission.py) is what the API server really calls.
    "webhook": {"failurePolicy": "Ignore"},
}


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The session's cluster (admin kubeconfig); skipped, or failed under KUBEFLUME_REQUIRE_CLUSTER=1."""
    try:
        with acquire_cluster() as found:
            yield found
    except NoCluster as error:
        if cluster_required() or isinstance(error, BadClusterSetting):
            pytest.fail(f"KUBEFLUME_REQUIRE_CLUSTER is set but {error}", pytrace=False)
        pytest.skip(str(error))


@pytest.fixture
def crds(cluster: Cluster) -> list[str]:
    """The repository's CRDs (crds/*.yaml) applied server-side and Established; their names.

    Applied once per session, and again only if a test removed them.
    """
    return ensure_crds(cluster)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted afterwards."""
    name = namespace_name(request.node.name)
    create_namespace(cluster, name)
    yield name
    delete_namespace(cluster, name)


@pytest.fixture
def run_operator(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """`run_operator(kubeconfig=None, namespace=None, env=None, args=())`: the real operator process.

    Defaults: the admin kubeconfig, the test's namespace, fast timers (OPERATOR_ENV). Every
    operator started is stopped (SIGTERM) after the test.
    """
    started: list[OperatorProcess] = []
    test_namespace = namespace

    def run(*, kubeconfig: Path | None = None, namespace: str | None = None, env: dict[str, str] | None = None,
            **options: Any) -> OperatorProcess:
        operator = start_operator(kubeconfig or cluster.kubeconfig, namespace or test_namespace, tmp_path,
                                  env={**OPERATOR_ENV, **(env or {})}, **options)
        started.append(operator)
        return operator

    yield run
    for operator in started:
        operator.stop()


@pytest.fixture
def operator(crds: list[str], run_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    """The operator serving the test's namespace, as the cluster admin (RBAC is tested with the chart)."""
    return run_operator()


@pytest.fixture(scope="session")
def helm_python() -> Path:
    """Python 3.12 with Helm's own library (helm-sdkpy), as the packaging tests use it."""
    return build_helm_venv()


def helm(helm_python: Path, cluster: Cluster, action: str, release: str, namespace: str,
         values: dict[str, Any] | None = None) -> dict[str, Any]:
    """`helm install|uninstall` of charts/kubeflume with Helm's own library (tests/packaging/helm_tool.py)."""
    return run_helm_tool(helm_python, {"action": action, "kubeconfig": str(cluster.kubeconfig), "chart": str(CHART),
                                       "values": values or {}, "release": release, "namespace": namespace})


def installed(helm_python: Path, cluster: Cluster, namespace: str, values: dict[str, Any]) -> str:
    release = f"kf{uuid.uuid4().hex[:6]}"
    answer = helm(helm_python, cluster, "install", release, namespace, values)
    assert "error" not in answer, f"helm install failed: {answer['error']}"
    return release


@pytest.fixture
def install_chart(cluster: Cluster, namespace: str, helm_python: Path) -> Iterator[Callable[..., str]]:
    """`install_chart(values)`: `helm install` of charts/kubeflume into the test's namespace.

    Returns the release name; every release is uninstalled after the test.
    """
    releases: list[str] = []

    def install(values: dict[str, Any] | None = None) -> str:
        releases.append(installed(helm_python, cluster, namespace, values or {}))
        return releases[-1]

    yield install
    for release in releases:
        helm(helm_python, cluster, "uninstall", release, namespace)


@pytest.fixture(scope="session")
def shared_chart(cluster: Cluster, helm_python: Path) -> Iterator[dict[str, Any]]:
    """The chart installed once per session, cluster-wide, in a namespace of its own; its Deployment.

    One release serves every test (installing one per test would cost seconds each); tests that
    check the chart's namespaced mode install their own with `install_chart`.
    """
    ensure_crds(cluster)
    namespace = namespace_name("kubeflume-system")
    create_namespace(cluster, namespace)
    release = installed(helm_python, cluster, namespace, CHART_VALUES)
    deployment = cluster.get(DEPLOYMENTS, namespace, f"{release}-kubeflume")
    assert deployment is not None, f"the chart made no Deployment {release}-kubeflume"
    yield deployment
    helm(helm_python, cluster, "uninstall", release, namespace)
    delete_namespace(cluster, namespace)


@pytest.fixture
def chart_deployment(crds: list[str], shared_chart: dict[str, Any]) -> dict[str, Any]:
    """The chart's operator Deployment, as the server holds it (cluster-wide RBAC, see shared_chart)."""
    return shared_chart


@pytest.fixture
def chart_operator(cluster: Cluster, chart_deployment: dict[str, Any], namespace: str,
                   tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator as the chart's Deployment runs it, with a token of the chart's ServiceAccount.

    The Deployment never runs (no kubelet): its args, env and ServiceAccount are taken from the
    server and the operator runs here, so every call it makes is checked against the chart's RBAC.
    It serves the test's namespace only (`--namespace` in place of the chart's `--all-namespaces`).
    Start another one (after a kill, say) with
    `start_chart_operator(cluster, chart_deployment, tmp_path, namespace=namespace)`.
    """
    operator = start_chart_operator(cluster, chart_deployment, tmp_path, namespace=namespace)
    yield operator
    operator.stop()


@pytest.fixture
def namespaced_chart_operator(cluster: Cluster, crds: list[str], namespace: str, install_chart: Callable[..., str],
                              tmp_path: Path) -> Iterator[OperatorProcess]:
    """`chart_operator`, but from a release of its own installed in the test's namespace and watching
    only it (the chart's namespaced mode: a Role there, the webhook's Secret there too)."""
    release = install_chart({**CHART_VALUES, "watchNamespaces": [namespace]})
    deployment = cluster.get(DEPLOYMENTS, namespace, f"{release}-kubeflume")
    assert deployment is not None, f"the chart made no Deployment {release}-kubeflume"
    operator = start_chart_operator(cluster, deployment, tmp_path)
    yield operator
    operator.stop()
