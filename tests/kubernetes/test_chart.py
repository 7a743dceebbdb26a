"""The Helm chart on a real API server: Helm's own install, and RBAC that is exactly what the operator uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.kubernetes.cluster import (
    CONFIGMAPS,
    CRDS,
    DEPLOYMENTS,
    FLUMEAGENTS,
    ChartOperator,
    Cluster,
    crd_files,
    crd_names,
    crds_established,
    service_account_kubeconfig,
    start_chart_operator,
    wait_for,
)
from tests.kubernetes.conftest import CHART_VALUES
from tests.kubernetes.test_flumeagent import NAME, agent_spec, flume_agent, status_where
from tests.packaging.operator_api import required_rules, webhook_certificate_rules

pytestmark = pytest.mark.kubernetes

Rule = tuple[str, str, str]
# What every authenticated user may do (system:basic-user, system:discovery): not the chart's grant.
SELF_REVIEWS = {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"}


def granted_rules(cluster: Cluster, deployment: dict[str, Any], namespace: str, log_dir: Path) -> set[Rule]:
    """(apiGroup, resource, verb) the chart's ServiceAccount may use in `namespace`, as the server says
    (a SelfSubjectRulesReview made with that account's own token)."""
    chart = ChartOperator.of(deployment)
    kubeconfig = service_account_kubeconfig(cluster, deployment["metadata"]["namespace"], chart.service_account,
                                            log_dir / "review.kubeconfig")
    review = Cluster(kubeconfig).request("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": namespace}})
    assert not review["status"].get("incomplete"), review["status"]
    return {(group, resource, verb)
            for rule in review["status"]["resourceRules"] if resource_rule_counts(rule)
            for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}


def resource_rule_counts(rule: dict[str, Any]) -> bool:
    return not set(rule["resources"]) <= SELF_REVIEWS


def test_helm_installs_the_crds_and_its_namespaced_operator_handles_a_flumeagent(
        cluster: Cluster, namespace: str, install_chart: Callable[..., str], tmp_path: Path) -> None:
    names = crd_names(crd_files())
    cluster.kubectl("delete", "--wait=true", "--timeout=60s", *[f"crd/{name}" for name in names])
    wait_for(lambda: all(cluster.get(CRDS, None, name) is None for name in names), "the CRDs to be gone")

    release = install_chart({**CHART_VALUES, "watchNamespaces": [namespace]})
    wait_for(lambda: crds_established(cluster, names), "the chart's CRDs to be Established")
    deployment = cluster.get(DEPLOYMENTS, namespace, f"{release}-kubeflume")
    assert f"--namespace={namespace}" in ChartOperator.of(deployment).args
    operator = start_chart_operator(cluster, deployment, tmp_path)
    try:
        cluster.create(FLUMEAGENTS, flume_agent(namespace, agent_spec()))
        wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("workload") and "replicas" in s),
                 "the FlumeAgent handled under the chart's Role", operator=operator)
        assert cluster.get(CONFIGMAPS, namespace, f"{NAME}-config") is not None
    finally:
        operator.stop()
    assert "Forbidden" not in operator.log()


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_the_chart_grants_exactly_what_the_operator_uses(
        cluster: Cluster, crds: list[str], namespace: str, mode: str, shared_chart: dict[str, Any],
        install_chart: Callable[..., str], tmp_path: Path) -> None:
    if mode == "cluster-wide":
        deployment = shared_chart
    else:
        release = install_chart({**CHART_VALUES, "watchNamespaces": [namespace]})
        deployment = cluster.get(DEPLOYMENTS, namespace, f"{release}-kubeflume")
    granted = granted_rules(cluster, deployment, namespace, tmp_path)
    cluster_rules, namespaced_rules = required_rules(cluster_wide=mode == "cluster-wide", peering=False)
    # The webhook's own certificate: its configurations cluster-wide, its Secret in the release's namespace.
    certificate_cluster, certificate_own = webhook_certificate_rules()
    wanted = cluster_rules | namespaced_rules | certificate_cluster
    if deployment["metadata"]["namespace"] == namespace:
        wanted |= certificate_own
    assert not wanted - granted, f"the operator uses but is not granted {sorted(wanted - granted)}"
    assert not granted - wanted, f"granted but never used {sorted(granted - wanted)}"
