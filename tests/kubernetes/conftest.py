"""Fixtures for tests on a real Kubernetes API server (see cluster.py for where it comes from).

One cluster per test session, one namespace per test. Put a test that needs the real server
under tests/kubernetes/ and mark it `kubernetes` (`pytestmark = pytest.mark.kubernetes`), so it
shares this session's cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kubernetes.cluster import (
    BadClusterSetting,
    Cluster,
    NoCluster,
    OperatorProcess,
    acquire_cluster,
    cluster_required,
    create_namespace,
    delete_namespace,
    install_crds,
    namespace_name,
    start_operator,
)

# Fast timers so tests see the operator's work in seconds, not the production 15 s / 5 s.
OPERATOR_ENV = {
    "KUBEFLUME_STATUS_INTERVAL": "0.5",
    "KUBEFLUME_SHELLJOB_POLL_INTERVAL": "0.5",
    "KUBEFLUME_AGENT_IMAGE": "registry.test/kubeflume/agent:dev",
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


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> list[str]:
    """The repository's CRDs (crds/*.yaml) applied server-side and Established; their names."""
    return install_crds(cluster)


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
