"""The real operator process reconciling FlumeAgents in kmock's Kubernetes emulator.

What kmock does not emulate, and how these tests make up for it:
- no controllers and no kubelet: nothing turns a Deployment into pods or fills in its status.
  The status test creates the pod objects and patches the Deployment status itself, and runs the
  real `kubeflume-agent` process with the ConfigMap's flume.conf where the pod would run it, so
  the counters the operator scrapes are real ones.
- no garbage collector: deleting a FlumeAgent leaves its children in kmock. The tests check that
  every child carries a controller ownerReference to the FlumeAgent's uid (what the collector
  follows) and that the operator itself deletes nothing else.
- no uid, resourceVersion or generation: `operator_env.create()` and `update_spec()` fill them in.
- no status subresource separation, no schema pruning: the CRD's schema is checked against every
  example separately (tests/unit/test_crds_and_examples.py).
"""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from kubeflume_agent.config.manifest import parse_manifest
from kubeflume_agent.config.properties import fingerprint, flume_conf
from kubeflume_operator import conditions
from kubeflume_operator.flumeagent import resources
from tests.integration.operator_env import (
    KubernetesApiEmulator,
    create,
    delete,
    events_about,
    free_port,
    patch,
    prepare_cluster,
    running_operator,
    stored,
    update_spec,
    wait_for,
)

pytestmark = [pytest.mark.timeout(240), pytest.mark.kmock(cls=KubernetesApiEmulator)]

FLUMEAGENTS = "kubeflume.io/v1alpha1/flumeagents"
CONFIGMAPS = "v1/configmaps"
SERVICES = "v1/services"
PODS = "v1/pods"
DEPLOYMENTS = "apps/v1/deployments"
DAEMONSETS = "apps/v1/daemonsets"
WATCHED = [FLUMEAGENTS, PODS, DEPLOYMENTS, "apps/v1/statefulsets", DAEMONSETS]
NS = "default"
NAME = "web-logs"
ENV = {"KUBEFLUME_STATUS_INTERVAL": "0.5", "KUBEFLUME_AGENT_IMAGE": "registry.test/kubeflume/agent:dev"}


def agent_spec(port: int = 5140, **fields) -> dict:
    return {
        "agentName": "a1",
        "replicas": 2,
        "sources": {"r1": {"type": "syslogtcp", "channels": ["c1"], "host": "127.0.0.1", "port": port}},
        "channels": {"c1": {"type": "memory", "capacity": 1000, "transactionCapacity": 100}},
        "sinks": {"k1": {"type": "http", "channel": "c1", "endpoint": "http://collector.test:8080/"}},
        **fields,
    }


def flume_agent(spec: dict) -> dict:
    return {"apiVersion": "kubeflume.io/v1alpha1", "kind": "FlumeAgent",
            "metadata": {"name": NAME, "namespace": NS}, "spec": spec}


def agent_status(kmock) -> dict:
    return (stored(kmock, FLUMEAGENTS, NS, NAME) or {}).get("status", {})


def condition(kmock, type_: str) -> dict | None:
    return conditions.find(agent_status(kmock).get("conditions"), type_)


def versions(kmock, resource: str, name: str) -> int:
    return len(kmock.objects[kmock.resource(resource), NS, name].history)


@pytest.fixture
def cluster(kmock):
    prepare_cluster(kmock, ["flumeagents.yaml"])
    return kmock


@pytest.fixture
async def operator(cluster, tmp_path):
    async with running_operator(cluster, tmp_path, watched=WATCHED, env=ENV) as process:
        yield process


async def test_a_flumeagent_becomes_a_configmap_a_deployment_and_a_service(cluster, operator):
    kmock = cluster
    created = await create(kmock, FLUMEAGENTS, flume_agent(agent_spec()))
    config = parse_manifest(created)

    config_map = await wait_for(lambda: stored(kmock, CONFIGMAPS, NS, f"{NAME}-config"), "the ConfigMap",
                                operator=operator)
    deployment = await wait_for(lambda: stored(kmock, DEPLOYMENTS, NS, NAME), "the Deployment", operator=operator)
    service = await wait_for(lambda: stored(kmock, SERVICES, NS, NAME), "the Service", operator=operator)
    metrics = await wait_for(lambda: stored(kmock, SERVICES, NS, f"{NAME}-metrics"), "the metrics Service",
                             operator=operator)

    assert config_map["data"]["flume.conf"] == flume_conf(config)
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"][resources.CONFIG_HASH_ANNOTATION] == fingerprint(config)
    assert deployment["spec"]["replicas"] == 2
    container = template["spec"]["containers"][0]
    assert container["image"] == "registry.test/kubeflume/agent:dev"
    assert container["args"][:6] == ["-n", "a1", "-f", "/etc/kubeflume/flume.conf", "--metrics-port", "41414"]
    assert service["spec"]["ports"] == [{"name": "tcp-5140", "port": 5140, "targetPort": 5140, "protocol": "TCP"}]
    assert metrics["spec"]["clusterIP"] == "None" and metrics["spec"]["ports"][0]["port"] == 41414
    for child in (config_map, deployment, service, metrics):
        assert child["metadata"]["labels"][resources.INSTANCE_LABEL] == NAME
        owner = child["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == \
            ("FlumeAgent", NAME, created["metadata"]["uid"], True)

    await wait_for(lambda: agent_status(kmock).get("phase") == "Progressing", "phase Progressing (no pods yet)",
                   operator=operator)
    status = agent_status(kmock)
    assert status["configHash"] == fingerprint(config)
    assert status["observedGeneration"] == 1
    assert status["workload"] == f"Deployment/{NAME}"
    assert status["endpoints"] == [{"source": "r1", "address": f"{NAME}.{NS}.svc:5140", "protocol": "TCP"}]
    assert condition(kmock, "ConfigValid")["status"] == "True"
    assert any(e["reason"] == "Applied" for e in events_about(kmock, NS, "FlumeAgent", NAME))


async def test_a_config_change_rolls_the_pods_and_a_bad_one_changes_nothing(cluster, operator):
    kmock = cluster
    await create(kmock, FLUMEAGENTS, flume_agent(agent_spec()))
    await wait_for(lambda: agent_status(kmock).get("configHash"), "the first config", operator=operator)
    first_hash = agent_status(kmock)["configHash"]

    changed = agent_spec()
    changed["channels"]["c1"]["capacity"] = 5000
    await update_spec(kmock, FLUMEAGENTS, NS, NAME, changed)
    new_hash = fingerprint(parse_manifest(changed))
    assert new_hash != first_hash
    await wait_for(lambda: agent_status(kmock).get("configHash") == new_hash, "the new hash", operator=operator)
    deployment = stored(kmock, DEPLOYMENTS, NS, NAME)
    assert deployment["spec"]["template"]["metadata"]["annotations"][resources.CONFIG_HASH_ANNOTATION] == new_hash
    assert "capacity = 5000" in stored(kmock, CONFIGMAPS, NS, f"{NAME}-config")["data"]["flume.conf"]
    assert agent_status(kmock)["observedGeneration"] == 2
    good_deployment = versions(kmock, DEPLOYMENTS, NAME)
    good_config_map = versions(kmock, CONFIGMAPS, f"{NAME}-config")

    broken = agent_spec(port=99999)
    broken["sinks"]["k1"]["channel"] = "missing"
    await update_spec(kmock, FLUMEAGENTS, NS, NAME, broken)
    invalid = await wait_for(lambda: (c := condition(kmock, "ConfigValid")) and c["status"] == "False" and c,
                             "ConfigValid=False", operator=operator)
    assert invalid["reason"] == "InvalidConfig"
    assert "sources.r1.port" in invalid["message"]
    assert "sinks.k1" in invalid["message"] and "missing" in invalid["message"]
    assert agent_status(kmock)["phase"] == "Invalid"
    assert agent_status(kmock)["observedGeneration"] == 3
    assert agent_status(kmock)["configHash"] == new_hash  # still what the pods run
    warnings = await wait_for(
        lambda: [e for e in events_about(kmock, NS, "FlumeAgent", NAME) if e["reason"] == "InvalidConfig"],
        "the InvalidConfig Event", operator=operator)
    assert warnings[0]["type"] == "Warning" and "sources.r1.port" in warnings[0]["message"]
    assert versions(kmock, DEPLOYMENTS, NAME) == good_deployment
    assert versions(kmock, CONFIGMAPS, f"{NAME}-config") == good_config_map

    await update_spec(kmock, FLUMEAGENTS, NS, NAME, changed)  # fixed again: same objects as before
    await wait_for(lambda: condition(kmock, "ConfigValid")["status"] == "True", "ConfigValid=True",
                   operator=operator)
    assert versions(kmock, DEPLOYMENTS, NAME) == good_deployment


async def test_switching_to_a_daemonset_replaces_the_deployment(cluster, operator):
    kmock = cluster
    await create(kmock, FLUMEAGENTS, flume_agent(agent_spec()))
    await wait_for(lambda: stored(kmock, DEPLOYMENTS, NS, NAME), "the Deployment", operator=operator)
    spec = agent_spec(workload="DaemonSet")
    del spec["replicas"]
    await update_spec(kmock, FLUMEAGENTS, NS, NAME, spec)
    daemon_set = await wait_for(lambda: stored(kmock, DAEMONSETS, NS, NAME), "the DaemonSet", operator=operator)
    await wait_for(lambda: stored(kmock, DEPLOYMENTS, NS, NAME) is None, "the Deployment to go", operator=operator)
    assert "replicas" not in daemon_set["spec"]
    await wait_for(lambda: agent_status(kmock).get("workload") == f"DaemonSet/{NAME}", "the status",
                   operator=operator)


async def test_a_restarted_operator_converges_without_rewriting(cluster, tmp_path):
    kmock = cluster
    async with running_operator(kmock, tmp_path, watched=WATCHED, env=ENV) as first:
        await create(kmock, FLUMEAGENTS, flume_agent(agent_spec()))
        await wait_for(lambda: stored(kmock, SERVICES, NS, NAME), "the Service", operator=first)
        await wait_for(lambda: agent_status(kmock).get("configHash"), "the status", operator=first)
    deployment_versions = versions(kmock, DEPLOYMENTS, NAME)
    config_map_versions = versions(kmock, CONFIGMAPS, f"{NAME}-config")
    await delete(kmock, SERVICES, NS, NAME)  # lost while the operator was away

    async with running_operator(kmock, tmp_path, watched=WATCHED, env=ENV) as second:
        await wait_for(lambda: stored(kmock, SERVICES, NS, NAME), "the Service to come back", operator=second)
        assert versions(kmock, DEPLOYMENTS, NAME) == deployment_versions
        assert versions(kmock, CONFIGMAPS, f"{NAME}-config") == config_map_versions


async def test_a_workload_deleted_by_hand_comes_back(cluster, operator):
    kmock = cluster
    await create(kmock, FLUMEAGENTS, flume_agent(agent_spec()))
    await wait_for(lambda: agent_status(kmock).get("workload"), "the status", operator=operator)
    await delete(kmock, DEPLOYMENTS, NS, NAME)
    await wait_for(lambda: stored(kmock, DEPLOYMENTS, NS, NAME), "the Deployment to come back", operator=operator)
    await wait_for(lambda: [e for e in events_about(kmock, NS, "FlumeAgent", NAME) if e["reason"] == "Restored"],
                   "the Restored Event", operator=operator)


async def test_deleting_the_flumeagent_leaves_its_children_to_the_garbage_collector(cluster, operator):
    kmock = cluster
    created = await create(kmock, FLUMEAGENTS, flume_agent(agent_spec()))
    await wait_for(lambda: stored(kmock, FLUMEAGENTS, NS, NAME)["metadata"].get("finalizers"),
                   "the operator's finalizer", operator=operator)
    await wait_for(lambda: stored(kmock, SERVICES, NS, NAME), "the Service", operator=operator)
    await delete(kmock, FLUMEAGENTS, NS, NAME)
    await wait_for(lambda: stored(kmock, FLUMEAGENTS, NS, NAME) is None, "the FlumeAgent to be gone",
                   operator=operator)
    for resource, name in ((CONFIGMAPS, f"{NAME}-config"), (DEPLOYMENTS, NAME), (SERVICES, NAME)):
        child = stored(kmock, resource, NS, name)
        assert child is not None, f"the operator deleted {resource} {name} itself"
        assert child["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
        assert child["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True


def pod(name: str, ip: str, labels: dict) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [{"name": "agent", "image": "agent"}]},
        "status": {"phase": "Running", "podIP": ip,
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


async def send_syslog(port: int, messages: list[str]) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write("".join(f"<13>Nov 24 10:00:00 host app: {m}\n" for m in messages).encode())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_status_follows_the_workload_and_the_agents_metrics(cluster, operator, tmp_path):
    """The agent that a pod would run, run here: its metrics endpoint is what the operator scrapes."""
    kmock = cluster
    metrics_port, syslog_port = free_port(), free_port()
    out = tmp_path / "out"
    out.mkdir()
    spec = agent_spec(port=syslog_port, metrics={"port": metrics_port})
    spec["sinks"]["k1"] = {"type": "file_roll", "channel": "c1", "sink": {"directory": str(out)}}
    await create(kmock, FLUMEAGENTS, flume_agent(spec))
    config_map = await wait_for(lambda: stored(kmock, CONFIGMAPS, NS, f"{NAME}-config"), "the ConfigMap",
                                operator=operator)
    deployment = await wait_for(lambda: stored(kmock, DEPLOYMENTS, NS, NAME), "the Deployment", operator=operator)
    conf = tmp_path / "flume.conf"
    conf.write_text(config_map["data"]["flume.conf"])
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    args[args.index("-f") + 1] = str(conf)
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from kubeflume_agent.cli import agent_main; raise SystemExit(agent_main())", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=(tmp_path / "agent.log").open("wb"),
    )
    try:
        await wait_for(lambda: port_open(syslog_port), "the agent's syslog port")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        await create(kmock, PODS, pod(f"{NAME}-a", "127.0.0.1", labels))
        await create(kmock, PODS, pod(f"{NAME}-b", "192.0.2.1", labels))  # TEST-NET-1: never answers
        # What the Deployment controller reports once both pods run the template and are ready.
        await patch(kmock, DEPLOYMENTS, NS, NAME, {"status": {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                                                              "availableReplicas": 2}}, subresource="status")
        await wait_for(lambda: agent_status(kmock).get("phase") == "Running", "phase Running", operator=operator)
        available = condition(kmock, "Available")
        assert (available["status"], available["reason"]) == ("True", "AllReplicasReady")
        await send_syslog(syslog_port, [f"event {i}" for i in range(5)])
        await patch(kmock, DEPLOYMENTS, NS, NAME, {"status": {"readyReplicas": 1, "availableReplicas": 1}},
                    subresource="status")

        # The operator sees the workload and pods through watches (its indexes), and writes the
        # counters and the phase in two patches: the status catches up eventually, not at once.
        await wait_for(lambda: agent_status(kmock).get("eventsDelivered") == 5
                       and agent_status(kmock).get("phase") == "Degraded",
                       "5 delivered events and phase Degraded", operator=operator)
        status = agent_status(kmock)
        assert (status["eventsReceived"], status["eventsAccepted"]) == (5, 5)
        assert 0.0 <= status["channelFillPercent"] < 100.0
        assert [p.split(":")[0] for p in status["unreachablePods"]] == [f"{NAME}-b"]
        assert (status["replicas"], status["readyReplicas"]) == (2, 1)
        assert condition(kmock, "Available")["status"] == "False"
        progressing = condition(kmock, "Progressing")  # the rollout had completed; readiness is Available's news
        assert (progressing["status"], progressing["reason"]) == ("False", "RolloutComplete")
        assert sum(len(f.read_text().splitlines()) for f in out.iterdir()) == 5
    finally:
        agent.terminate()
        await agent.wait()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0

