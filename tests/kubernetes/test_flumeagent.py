"""FlumeAgents reconciled by the real operator process on a real API server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from kubeflume_agent.config.manifest import parse_manifest
from kubeflume_agent.config.properties import fingerprint, flume_conf
from kubeflume_operator import conditions
from kubeflume_operator.flumeagent import resources
from tests.kubernetes.cluster import (
    CONFIGMAPS,
    DEPLOYMENTS,
    FLUMEAGENTS,
    PODS,
    SERVICES,
    Cluster,
    OperatorProcess,
    wait_for,
)

pytestmark = pytest.mark.kubernetes

NAME = "web-logs"


def agent_spec(port: int = 5140, **fields: Any) -> dict[str, Any]:
    return {
        "agentName": "a1",
        "replicas": 2,
        "sources": {"r1": {"type": "syslogtcp", "channels": ["c1"], "host": "0.0.0.0", "port": port}},
        "channels": {"c1": {"type": "memory", "capacity": 1000, "transactionCapacity": 100}},
        "sinks": {"k1": {"type": "http", "channel": "c1", "endpoint": "http://collector.test:8080/"}},
        **fields,
    }


def flume_agent(namespace: str, spec: dict[str, Any], name: str = NAME) -> dict[str, Any]:
    return {"apiVersion": "kubeflume.io/v1alpha1", "kind": "FlumeAgent",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def status_where(cluster: Cluster, namespace: str, holds: Callable[[dict[str, Any]], Any],
                 name: str = NAME) -> dict[str, Any] | None:
    """The FlumeAgent's status as the server holds it, when `holds(status)`."""
    status = (cluster.get(FLUMEAGENTS, namespace, name) or {}).get("status") or {}
    return status if holds(status) else None


def test_a_flumeagent_becomes_its_children_and_a_status_on_the_server(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    operator = chart_operator
    created = cluster.create(FLUMEAGENTS, flume_agent(namespace, agent_spec()))
    config = parse_manifest(created)

    def child(resource: str, name: str) -> dict[str, Any]:
        return wait_for(lambda: cluster.get(resource, namespace, name), f"{resource} {name}", operator=operator)

    config_map = child(CONFIGMAPS, f"{NAME}-config")
    deployment = child(DEPLOYMENTS, NAME)
    service = child(SERVICES, NAME)
    metrics = child(SERVICES, f"{NAME}-metrics")

    assert config_map["data"]["flume.conf"] == flume_conf(config)
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"][resources.CONFIG_HASH_ANNOTATION] == fingerprint(config)
    assert deployment["spec"]["replicas"] == 2
    assert template["spec"]["containers"][0]["image"] == "registry.test/kubeflume/agent:dev"
    assert [(p["name"], p["port"], p["targetPort"], p["protocol"]) for p in service["spec"]["ports"]] == \
        [("tcp-5140", 5140, 5140, "TCP")]
    assert service["spec"]["clusterIP"] not in ("", "None")  # the server allocated one
    assert metrics["spec"]["clusterIP"] == "None" and metrics["spec"]["ports"][0]["port"] == 41414
    for owned in (config_map, deployment, service, metrics):
        owner = owned["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == \
            ("FlumeAgent", NAME, created["metadata"]["uid"], True)

    # No kubelet: the pods the Deployment controller makes stay Pending, so the rollout is not complete.
    status = wait_for(lambda: status_where(cluster, namespace, lambda s: "replicas" in s and conditions.find(
        s.get("conditions"), "ConfigValid")), "the status with replica counts and ConfigValid", operator=operator)
    assert status["configHash"] == fingerprint(config)
    assert status["observedGeneration"] == 1
    assert status["workload"] == f"Deployment/{NAME}"
    assert status["endpoints"] == [{"source": "r1", "address": f"{NAME}.{namespace}.svc:5140", "protocol": "TCP"}]
    assert status["readyReplicas"] == 0
    valid = conditions.find(status["conditions"], "ConfigValid")
    assert (valid["status"], valid["reason"], valid["observedGeneration"]) == ("True", "Valid", 1)
    assert any(event["reason"] == "Applied" for event in cluster.events_about(namespace, "FlumeAgent", NAME))


def mark_ready(cluster: Cluster, pod: dict[str, Any]) -> None:
    """Write a pod's status as a kubelet would once its container runs and passes its readiness probe."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = [{"type": kind, "status": "True", "lastTransitionTime": now}
             for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
    cluster.patch(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"],
                  {"status": {"phase": "Running", "conditions": ready, "startTime": now}}, subresource="status")


def test_a_rollout_is_complete_only_when_the_workload_controller_says_so(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    cluster.create(FLUMEAGENTS, flume_agent(namespace, agent_spec()))
    pending = wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("phase") == "Pending" and (
        conditions.find(s.get("conditions"), "Progressing") or {}).get("reason") == "RollingOut"),
        "phase Pending while no pod runs", operator=chart_operator)
    progressing = conditions.find(pending["conditions"], "Progressing")
    assert (progressing["status"], progressing["message"]) == ("True", "2/2 agent pods updated, 0/2 agent pods ready")
    assert conditions.find(pending["conditions"], "Available")["status"] == "False"
    pods = wait_for(lambda: len(found := cluster.list(PODS, namespace, f"{resources.INSTANCE_LABEL}={NAME}")) == 2
                    and found, "the Deployment controller's two pods")
    assert all(pod["status"]["phase"] == "Pending" for pod in pods)  # no scheduler, no kubelet

    mark_ready(cluster, pods[0])
    wait_for(lambda: (cluster.get(DEPLOYMENTS, namespace, NAME)["status"].get("readyReplicas") == 1),
             "the Deployment controller to count one ready pod")
    half = wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("readyReplicas") == 1),
                    "readyReplicas 1 in the FlumeAgent status", operator=chart_operator)
    assert half["phase"] == "Progressing"
    assert conditions.find(half["conditions"], "Progressing")["message"] == \
        "2/2 agent pods updated, 1/2 agent pods ready"

    mark_ready(cluster, pods[1])
    running = wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("phase") == "Running"),
                       "phase Running", operator=chart_operator)
    deployment = cluster.get(DEPLOYMENTS, namespace, NAME)["status"]
    assert (deployment["updatedReplicas"], deployment["readyReplicas"], deployment["availableReplicas"]) == (2, 2, 2)
    complete = conditions.find(running["conditions"], "Progressing")
    assert (complete["status"], complete["reason"], complete["observedGeneration"]) == ("False", "RolloutComplete", 1)
    available = conditions.find(running["conditions"], "Available")
    assert (available["status"], available["reason"]) == ("True", "AllReplicasReady")
