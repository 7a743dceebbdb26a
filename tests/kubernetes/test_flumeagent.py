"""FlumeAgents reconciled by the real operator process on a real API server."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubeflume_agent.config.manifest import parse_manifest
from kubeflume_agent.config.properties import fingerprint, flume_conf
from kubeflume_operator import conditions
from kubeflume_operator.flumeagent import resources
from tests.kubernetes.cluster import (
    CONFIGMAPS,
    DAEMONSETS,
    DEPLOYMENTS,
    FLUMEAGENTS,
    PERSISTENTVOLUMECLAIMS,
    PODS,
    REPLICASETS,
    ROLES,
    SERVICES,
    STATEFULSETS,
    Cluster,
    OperatorProcess,
    posted,
    start_chart_operator,
    wait_for,
)
from tests.kubernetes.conftest import CHART_VALUES

pytestmark = pytest.mark.kubernetes

NAME = "web-logs"
CONTROLLER_TIMEOUT = 180.0  # the controller-manager's garbage collector is slow on a loaded 2-core machine
# Every status field the operator writes for a running agent.
STATUS_FIELDS = {"phase", "observedGeneration", "configHash", "workload", "replicas", "readyReplicas", "endpoints",
                 "eventsReceived", "eventsAccepted", "eventsDelivered", "channelFillPercent", "unreachablePods",
                 "conditions", "selector"}


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
    wait_for(posted(cluster, namespace, "FlumeAgent", NAME, "Applied"), "the Applied Event", operator=operator)


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
    # The counts and the phase are two writes (a merge patch, then a patch function): wait for both.
    half = wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("readyReplicas") == 1
                                         and s.get("phase") == "Progressing"),
                    "readyReplicas 1 and phase Progressing", operator=chart_operator)
    assert conditions.find(half["conditions"], "Progressing")["message"] == \
        "2/2 agent pods updated, 1/2 agent pods ready"

    mark_ready(cluster, pods[1])
    # What docs/troubleshooting.md tells users to wait on for an agent.
    waited = cluster.kubectl("wait", "--for=condition=Available", f"fa/{NAME}", "-n", namespace, "--timeout=120s",
                             timeout=150)
    assert "condition met" in waited.stdout
    running = wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("phase") == "Running"),
                       "phase Running", operator=chart_operator)
    deployment = cluster.get(DEPLOYMENTS, namespace, NAME)["status"]
    assert (deployment["updatedReplicas"], deployment["readyReplicas"], deployment["availableReplicas"]) == (2, 2, 2)
    complete = conditions.find(running["conditions"], "Progressing")
    assert (complete["status"], complete["reason"], complete["observedGeneration"]) == ("False", "RolloutComplete", 1)
    available = conditions.find(running["conditions"], "Available")
    assert (available["status"], available["reason"]) == ("True", "AllReplicasReady")
    assert set(running) == STATUS_FIELDS  # a field the CRD does not declare would have been pruned


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(ref["uid"] == owner["metadata"]["uid"] and ref.get("controller")
               for ref in obj["metadata"].get("ownerReferences") or ())


def file_channel_spec(**fields: Any) -> dict[str, Any]:
    spec = agent_spec(**fields)
    spec["replicas"] = 1
    spec["channels"]["c1"] = {"type": "file", "checkpointDir": "/var/lib/flume/checkpoint",
                              "dataDirs": "/var/lib/flume/data"}
    return spec


def test_a_file_channel_agent_is_a_statefulset_whose_claims_the_controller_creates(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    created = cluster.create(FLUMEAGENTS, flume_agent(namespace, file_channel_spec(storage={"size": "2Gi"})))
    stateful_set = wait_for(lambda: cluster.get(STATEFULSETS, namespace, NAME), "the StatefulSet",
                            operator=chart_operator)
    assert stateful_set["spec"]["serviceName"] == NAME
    [claim_template] = stateful_set["spec"]["volumeClaimTemplates"]
    assert claim_template["metadata"]["name"] == "data"
    assert claim_template["spec"]["resources"]["requests"]["storage"] == "2Gi"
    mounts = stateful_set["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {m["mountPath"] for m in mounts if m["name"] == "data"} == {"/var/lib/flume/checkpoint",
                                                                       "/var/lib/flume/data"}
    # The StatefulSet controller (not the operator) makes the pod's claim from the template.
    claim = wait_for(lambda: cluster.get(PERSISTENTVOLUMECLAIMS, namespace, f"data-{NAME}-0"),
                     "the claim data-web-logs-0")
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    status = wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("workload") == f"StatefulSet/{NAME}"
                                           and s.get("replicas") == 1 and s.get("phase") == "Pending"),
                      "the status: 1 pod wanted, none ready", operator=chart_operator)
    assert status["readyReplicas"] == 0
    assert owned_by(stateful_set, created)


def test_a_daemonset_agent_follows_what_the_daemonset_controller_reports(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    spec = agent_spec(workload="DaemonSet")
    del spec["replicas"]
    cluster.create(FLUMEAGENTS, flume_agent(namespace, spec))
    daemon_set = wait_for(lambda: cluster.get(DAEMONSETS, namespace, NAME), "the DaemonSet", operator=chart_operator)
    assert "replicas" not in daemon_set["spec"]
    # This cluster has no node: the controller wants no pod, and says so once it has seen the spec.
    observed = wait_for(lambda: (d := cluster.get(DAEMONSETS, namespace, NAME))["status"].get("observedGeneration")
                        and d["status"], "the DaemonSet controller's status")
    assert observed["desiredNumberScheduled"] == 0
    status = wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("phase") == "Running"),
                      "phase Running (0/0 pods)", operator=chart_operator)
    assert (status["workload"], status["replicas"], status["readyReplicas"]) == (f"DaemonSet/{NAME}", 0, 0)
    assert cluster.get(DEPLOYMENTS, namespace, NAME) is None


def test_a_config_change_rolls_a_new_replicaset_and_a_bad_one_changes_nothing(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    cluster.create(FLUMEAGENTS, flume_agent(namespace, agent_spec()))
    first = wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("configHash")), "the first config",
                     operator=chart_operator)["configHash"]
    changed = agent_spec()
    changed["channels"]["c1"]["capacity"] = 5000
    cluster.patch(FLUMEAGENTS, namespace, NAME, {"spec": changed})
    second = fingerprint(parse_manifest(flume_agent(namespace, changed)))
    assert second != first
    wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("configHash") == second
                                  and s.get("observedGeneration") == 2), "the new hash", operator=chart_operator)
    template = cluster.get(DEPLOYMENTS, namespace, NAME)["spec"]["template"]
    assert template["metadata"]["annotations"][resources.CONFIG_HASH_ANNOTATION] == second
    assert "capacity = 5000" in cluster.get(CONFIGMAPS, namespace, f"{NAME}-config")["data"]["flume.conf"]

    def replica_set_hashes() -> set[str]:
        found = cluster.list(REPLICASETS, namespace, f"{resources.INSTANCE_LABEL}={NAME}")
        return {rs["spec"]["template"]["metadata"]["annotations"][resources.CONFIG_HASH_ANNOTATION] for rs in found}

    wait_for(lambda: replica_set_hashes() == {first, second}, "a ReplicaSet per config (the Deployment controller)")

    deployment = cluster.get(DEPLOYMENTS, namespace, NAME)
    config_map = cluster.get(CONFIGMAPS, namespace, f"{NAME}-config")
    broken = agent_spec(port=99999)
    broken["sinks"]["k1"]["channel"] = "missing"
    cluster.patch(FLUMEAGENTS, namespace, NAME, {"spec": broken})
    invalid = wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("phase") == "Invalid"),
                       "phase Invalid", operator=chart_operator)
    verdict = conditions.find(invalid["conditions"], "ConfigValid")
    assert (verdict["status"], verdict["reason"], verdict["observedGeneration"]) == ("False", "InvalidConfig", 3)
    assert "spec.sources.r1.port" in verdict["message"] and "missing" in verdict["message"]
    assert invalid["observedGeneration"] == 3 and invalid["configHash"] == second  # what the pods still run
    warning = wait_for(lambda: [e for e in cluster.events_about(namespace, "FlumeAgent", NAME)
                                if e["reason"] == "InvalidConfig"], "the InvalidConfig Event")[0]
    assert warning["type"] == "Warning" and "spec.sources.r1.port" in warning["message"]
    after = cluster.get(DEPLOYMENTS, namespace, NAME)
    assert (after["metadata"]["generation"], after["spec"]) == (deployment["metadata"]["generation"],
                                                                deployment["spec"])
    assert cluster.get(CONFIGMAPS, namespace, f"{NAME}-config")["metadata"]["resourceVersion"] == \
        config_map["metadata"]["resourceVersion"]


def test_deleting_a_flumeagent_leaves_its_children_to_the_garbage_collector(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    created = cluster.create(FLUMEAGENTS, flume_agent(namespace, agent_spec()))
    wait_for(lambda: cluster.list(PODS, namespace, f"{resources.INSTANCE_LABEL}={NAME}"), "the agent pods",
             operator=chart_operator)
    children = [(CONFIGMAPS, f"{NAME}-config"), (DEPLOYMENTS, NAME), (SERVICES, NAME), (SERVICES, f"{NAME}-metrics")]
    assert all(owned_by(cluster.get(resource, namespace, name), created) for resource, name in children)

    cluster.delete(FLUMEAGENTS, namespace, NAME)
    wait_for(lambda: cluster.get(FLUMEAGENTS, namespace, NAME) is None, "the FlumeAgent to be gone",
             operator=chart_operator)
    wait_for(lambda: all(cluster.get(resource, namespace, name) is None for resource, name in children),
             "the controller-manager's garbage collector to delete the children", timeout=CONTROLLER_TIMEOUT)
    selector = f"{resources.INSTANCE_LABEL}={NAME}"
    wait_for(lambda: not cluster.list(REPLICASETS, namespace, selector) and not cluster.list(PODS, namespace, selector),
             "the ReplicaSet and pods to follow", timeout=CONTROLLER_TIMEOUT)
    assert "Forbidden" not in chart_operator.log()


def without_verb(rules: list[dict[str, Any]], resource: str, verb: str) -> list[dict[str, Any]]:
    return [{**rule, "verbs": [v for v in rule["verbs"] if v != verb]} if resource in rule.get("resources", ())
            else rule for rule in rules]


def test_an_operator_killed_mid_rollout_converges_after_a_restart_without_orphans(
        cluster: Cluster, crds: list[str], namespace: str, install_chart: Callable[..., str], tmp_path: Path) -> None:
    """The kill lands between the two writes of a config change (the ConfigMap updated, the Deployment
    not): the chart's Role briefly lacks `patch` on Deployments, so the operator stops right there."""
    release = install_chart({**CHART_VALUES, "watchNamespaces": [namespace]})
    deployment = cluster.get(DEPLOYMENTS, namespace, f"{release}-kubeflume")
    role = cluster.get(ROLES, namespace, f"{release}-kubeflume")
    first = start_chart_operator(cluster, deployment, tmp_path)
    try:
        created = cluster.create(FLUMEAGENTS, flume_agent(namespace, agent_spec()))
        old = wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("configHash")), "the first config",
                       operator=first)["configHash"]
        cluster.patch(ROLES, namespace, role["metadata"]["name"],
                      {"rules": without_verb(role["rules"], "deployments", "patch")})
        changed = agent_spec()
        changed["channels"]["c1"]["capacity"] = 5000
        cluster.patch(FLUMEAGENTS, namespace, NAME, {"spec": changed})
        wait_for(lambda: [e for e in cluster.events_about(namespace, "FlumeAgent", NAME)
                          if e["reason"] == "ApplyFailed" and "forbidden" in e["message"]],
                 "the refused Deployment patch", operator=first)
    finally:
        first.kill()
    template_hash = cluster.get(DEPLOYMENTS, namespace, NAME)["spec"]["template"]["metadata"]["annotations"]
    assert template_hash[resources.CONFIG_HASH_ANNOTATION] == old  # killed mid rollout
    assert "capacity = 5000" in cluster.get(CONFIGMAPS, namespace, f"{NAME}-config")["data"]["flume.conf"]

    cluster.patch(ROLES, namespace, role["metadata"]["name"], {"rules": role["rules"]})
    second = start_chart_operator(cluster, deployment, tmp_path)
    try:
        new = fingerprint(parse_manifest(flume_agent(namespace, changed)))
        wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("configHash") == new
                                      and s.get("observedGeneration") == 2), "the new config", operator=second)
        template = cluster.get(DEPLOYMENTS, namespace, NAME)["spec"]["template"]
        assert template["metadata"]["annotations"][resources.CONFIG_HASH_ANNOTATION] == new
    finally:
        second.stop()
    selector = f"{resources.INSTANCE_LABEL}={NAME}"
    for resource, count in ((CONFIGMAPS, 1), (DEPLOYMENTS, 1), (SERVICES, 2)):
        found = cluster.list(resource, namespace, selector)
        assert len(found) == count and all(owned_by(obj, created) for obj in found), (resource, found)
    assert all(any(ref["kind"] == "Deployment" for ref in rs["metadata"]["ownerReferences"])
               for rs in cluster.list(REPLICASETS, namespace, selector))


def test_a_workload_deleted_by_hand_comes_back(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    cluster.create(FLUMEAGENTS, flume_agent(namespace, agent_spec()))
    first = wait_for(lambda: cluster.get(DEPLOYMENTS, namespace, NAME), "the Deployment", operator=chart_operator)
    wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("phase") == "Pending"), "phase Pending",
             operator=chart_operator)
    cluster.delete(DEPLOYMENTS, namespace, NAME)
    again = wait_for(lambda: (d := cluster.get(DEPLOYMENTS, namespace, NAME)) and d["metadata"]["uid"] !=
                     first["metadata"]["uid"] and d, "a new Deployment", operator=chart_operator)
    assert again["spec"]["template"] == first["spec"]["template"]
    restored = wait_for(lambda: [e for e in cluster.events_about(namespace, "FlumeAgent", NAME)
                                 if e["reason"] == "Restored"], "the Restored Event", operator=chart_operator)
    assert "Deployment web-logs created" in restored[0]["message"]


def test_switching_to_a_daemonset_replaces_the_deployment(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    cluster.create(FLUMEAGENTS, flume_agent(namespace, agent_spec()))
    wait_for(lambda: cluster.get(DEPLOYMENTS, namespace, NAME), "the Deployment", operator=chart_operator)
    spec = {**agent_spec(workload="DaemonSet"), "replicas": None}  # null: the merge patch removes it
    cluster.patch(FLUMEAGENTS, namespace, NAME, {"spec": spec})
    wait_for(lambda: cluster.get(DAEMONSETS, namespace, NAME), "the DaemonSet", operator=chart_operator)
    wait_for(lambda: cluster.get(DEPLOYMENTS, namespace, NAME) is None, "the Deployment to go",
             operator=chart_operator)
    wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("workload") == f"DaemonSet/{NAME}"),
             "the status to name the DaemonSet", operator=chart_operator)


def test_a_restarted_operator_converges_without_rewriting_anything(
        cluster: Cluster, namespace: str, chart_deployment: dict[str, Any], tmp_path: Path) -> None:
    first = start_chart_operator(cluster, chart_deployment, tmp_path, namespace=namespace)
    try:
        cluster.create(FLUMEAGENTS, flume_agent(namespace, agent_spec()))
        wait_for(lambda: status_where(cluster, namespace, lambda s: s.get("phase") == "Pending"), "phase Pending",
                 operator=first)
    finally:
        first.stop()
    before = {(resource, name): cluster.get(resource, namespace, name)["metadata"]
              for resource, name in ((CONFIGMAPS, f"{NAME}-config"), (DEPLOYMENTS, NAME), (SERVICES, NAME))}
    cluster.delete(SERVICES, namespace, f"{NAME}-metrics")  # lost while the operator was away

    second = start_chart_operator(cluster, chart_deployment, tmp_path, namespace=namespace)
    try:
        wait_for(lambda: cluster.get(SERVICES, namespace, f"{NAME}-metrics"), "the metrics Service to come back",
                 operator=second)
    finally:
        second.stop()
    for (resource, name), metadata in before.items():
        now = cluster.get(resource, namespace, name)["metadata"]
        assert now["uid"] == metadata["uid"]
        assert now.get("generation") == metadata.get("generation"), f"{resource} {name} was rewritten"
    config_map = before[(CONFIGMAPS, f"{NAME}-config")]
    assert cluster.get(CONFIGMAPS, namespace, f"{NAME}-config")["metadata"]["resourceVersion"] == \
        config_map["resourceVersion"]
