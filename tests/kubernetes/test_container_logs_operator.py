"""The operator's plumbing for an agent that reads pods (kubernetes interceptor), done with the chart's
own RBAC on a real API server: ServiceAccount, pod-reader ClusterRole and binding, NODE_NAME, and
their removal with the FlumeAgent."""

from __future__ import annotations

import pytest

from tests.kubernetes.cluster import DAEMONSETS, FLUMEAGENTS, SERVICEACCOUNTS, Cluster, OperatorProcess, wait_for

pytestmark = pytest.mark.kubernetes

NAME = "node-logs"
CLUSTER_ROLES = "rbac.authorization.k8s.io/v1/clusterroles"
CLUSTER_ROLE_BINDINGS = "rbac.authorization.k8s.io/v1/clusterrolebindings"


def container_logs_agent(namespace: str, **interceptor_keys: str) -> dict:
    return {"apiVersion": "kubeflume.io/v1alpha1", "kind": "FlumeAgent",
            "metadata": {"name": NAME, "namespace": namespace},
            "spec": {"agentName": "a1", "workload": "DaemonSet",
                     "sources": {"r1": {"type": "TAILDIR", "channels": ["c1"], "filegroups": "c",
                                        "filegroups.c": "/var/log/containers/.*\\.log", "fileHeader": True,
                                        "lineFormat": "cri",
                                        "interceptors": [{"name": "k8s", "type": "kubernetes", "labels": "app",
                                                          **interceptor_keys}]}},
                     "channels": {"c1": {"type": "memory"}},
                     "sinks": {"k1": {"type": "logger", "channel": "c1"}}}}


def can(cluster: Cluster, namespace: str, *request: str) -> bool:
    """`kubectl auth can-i` as the agent's ServiceAccount."""
    done = cluster.kubectl("auth", "can-i", *request, "--all-namespaces",
                           f"--as=system:serviceaccount:{namespace}:{NAME}-agent", check=False)
    return done.stdout.strip() == "yes"


def test_an_agent_reading_pods_gets_exactly_pod_reading_rights_and_loses_them_with_the_agent(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    operator = chart_operator
    cluster.create(FLUMEAGENTS, container_logs_agent(namespace))
    cluster_name = f"kubeflume-agent-{namespace}-{NAME}"
    wait_for(lambda: cluster.get(CLUSTER_ROLE_BINDINGS, None, cluster_name), "the ClusterRoleBinding",
             operator=operator)
    role = cluster.get(CLUSTER_ROLES, None, cluster_name)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert cluster.get(SERVICEACCOUNTS, namespace, f"{NAME}-agent") is not None
    assert can(cluster, namespace, "list", "pods") and can(cluster, namespace, "watch", "pods")
    assert not can(cluster, namespace, "create", "pods") and not can(cluster, namespace, "list", "secrets")
    assert not can(cluster, namespace, "list", "namespaces")  # not asked for namespace metadata
    pod = wait_for(lambda: cluster.get(DAEMONSETS, namespace, NAME), "the DaemonSet",
                   operator=operator)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{NAME}-agent"
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}} \
        in pod["containers"][0]["env"]

    cluster.delete(FLUMEAGENTS, namespace, NAME)
    wait_for(lambda: cluster.get(FLUMEAGENTS, namespace, NAME) is None, "the FlumeAgent to go (finalizer done)",
             operator=operator)
    wait_for(lambda: cluster.get(CLUSTER_ROLES, None, cluster_name) is None
             and cluster.get(CLUSTER_ROLE_BINDINGS, None, cluster_name) is None, "the RBAC objects to go")
    wait_for(lambda: cluster.get(SERVICEACCOUNTS, namespace, f"{NAME}-agent") is None,
             "the ServiceAccount to be garbage-collected")
    assert not can(cluster, namespace, "list", "pods")


def test_an_agent_asking_for_namespace_metadata_may_also_read_namespaces(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    cluster.create(FLUMEAGENTS, container_logs_agent(namespace, namespaceLabels="tenant"))
    cluster_name = f"kubeflume-agent-{namespace}-{NAME}"
    wait_for(lambda: cluster.get(CLUSTER_ROLE_BINDINGS, None, cluster_name), "the ClusterRoleBinding",
             operator=chart_operator)
    role = cluster.get(CLUSTER_ROLES, None, cluster_name)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                             {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]
    assert can(cluster, namespace, "watch", "namespaces") and can(cluster, namespace, "list", "pods")
    assert not can(cluster, namespace, "patch", "namespaces")
