"""Scaling, draining and disruption budgets on the real API server, with the operator as the chart
runs it (its RBAC included) and the real StatefulSet, Job and garbage-collector controllers.

Pods never run here (no kubelet), so where a drain pod would finish, the test writes the pod's
status as the kubelet would: phase, exit code, and the drain agent's JSON report as the
termination message. The Job controller then marks the Job Complete or Failed by itself. In the
last test the drain pod's own command (the Job's args, the ConfigMap's flume.conf) runs as a real
process on a real file channel directory, and what it writes is what the kubelet would report.
"""

from __future__ import annotations

import datetime
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubeflume_operator import conditions
from kubeflume_operator.flumeagent import drain
from tests.kubernetes.cluster import (
    CONFIGMAPS,
    FLUMEAGENTS,
    PODS,
    STATEFULSETS,
    Cluster,
    OperatorProcess,
    free_port,
    posted,
    wait_for,
)

pytestmark = pytest.mark.kubernetes

NAME = "agg"
JOBS = "batch/v1/jobs"
CLAIMS = "v1/persistentvolumeclaims"
BUDGETS = "policy/v1/poddisruptionbudgets"


def aggregator(namespace: str, replicas: int, **fields: Any) -> dict[str, Any]:
    """An aggregator tier: Avro in, a file channel on each pod's claim, Avro out."""
    return {
        "apiVersion": "kubeflume.io/v1alpha1", "kind": "FlumeAgent",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "agentName": "a1", "replicas": replicas,
            "sources": {"r1": {"type": "avro", "channels": ["c1"], "bind": "0.0.0.0", "port": 4545}},
            "channels": {"c1": {"type": "file", "checkpointDir": "/var/lib/flume/checkpoint",
                                "dataDirs": "/var/lib/flume/data"}},
            "sinks": {"k1": {"type": "avro", "channel": "c1", "hostname": "collector.test", "port": 4545}},
            **fields,
        },
    }


def claims(cluster: Cluster, namespace: str) -> set[str]:
    return {c["metadata"]["name"] for c in cluster.list(CLAIMS, namespace)
            if not c["metadata"].get("deletionTimestamp")}


def drains(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return ((cluster.get(FLUMEAGENTS, namespace, NAME) or {}).get("status") or {}).get("drains") or []


def drain_phases(cluster: Cluster, namespace: str) -> dict[int, str]:
    return {entry["ordinal"]: entry["phase"] for entry in drains(cluster, namespace)}


def draining(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    status = (cluster.get(FLUMEAGENTS, namespace, NAME) or {}).get("status") or {}
    return conditions.find(status.get("conditions"), drain.DRAINING)


def scale(cluster: Cluster, namespace: str, replicas: int) -> None:
    cluster.kubectl("scale", "flumeagent", NAME, "-n", namespace, f"--replicas={replicas}")


def finish_drain_pod(cluster: Cluster, namespace: str, job: str, *, exit_code: int,
                     report: dict[str, Any] | str) -> None:
    """What the kubelet would write when the drain pod of `job` exits (`report`: its termination message)."""
    pod = wait_for(lambda: next(iter(cluster.list(PODS, namespace, f"{drain.JOB_NAME_LABEL}={job}")), None),
                   f"the pod of Job {job}")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    container = pod["spec"]["containers"][0]
    terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                  "message": report if isinstance(report, str) else json.dumps(report),
                  "startedAt": now, "finishedAt": now}
    cluster.patch(PODS, namespace, pod["metadata"]["name"], {"status": {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [{"name": container["name"], "image": container["image"], "imageID": "",
                               "ready": False, "restartCount": 0, "state": {"terminated": terminated}}],
    }}, subresource="status")


def report(held: int, delivered: int, reason: str = "") -> dict[str, Any]:
    return {"agent": "a1", "drained": not reason, "held": held, "delivered": delivered, "left": held - delivered,
            "seconds": 1.5, "reason": reason, "channels": {"c1": {"held": held, "left": held - delivered}},
            "sinks": {"k1": delivered}}


def test_kubectl_scale_drives_the_statefulset_and_the_status_tells_an_autoscaler_what_it_needs(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    cluster.create(FLUMEAGENTS, aggregator(namespace, 2))
    wait_for(lambda: (cluster.get(FLUMEAGENTS, namespace, NAME) or {}).get("status", {}).get("selector"),
             "status.selector", operator=chart_operator)
    scale(cluster, namespace, 4)
    statefulset = wait_for(lambda: (s := cluster.get(STATEFULSETS, namespace, NAME)) and s["spec"]["replicas"] == 4
                           and s, "the StatefulSet at 4 replicas", operator=chart_operator)
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                                           "whenScaled": "Retain"}
    assert statefulset["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    grace = statefulset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace == 5 + 5 + 15  # file channels only: the minimum drain time
    wait_for(lambda: (cluster.get(FLUMEAGENTS, namespace, NAME) or {}).get("status", {}).get("replicas") == 4,
             "status.replicas 4", operator=chart_operator)
    scale_view = cluster.get(FLUMEAGENTS, namespace, NAME, subresource="scale")
    assert scale_view["kind"] == "Scale" and scale_view["spec"]["replicas"] == 4
    assert scale_view["status"]["replicas"] == 4
    assert scale_view["status"]["selector"] == \
        "app.kubernetes.io/name=kubeflume-agent,app.kubernetes.io/instance=agg"
    # the selector finds exactly the agent pods the StatefulSet made
    pods = cluster.list(PODS, namespace, scale_view["status"]["selector"])
    assert sorted(p["metadata"]["name"] for p in pods) == [f"{NAME}-{n}" for n in range(4)]


def test_scaling_down_drains_each_removed_claim_and_deletes_it_only_after_its_job_succeeded(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    operator = chart_operator
    cluster.create(FLUMEAGENTS, aggregator(namespace, 3))
    wanted = {drain.claim_name(NAME, n) for n in range(3)}
    wait_for(lambda: claims(cluster, namespace) == wanted, "the StatefulSet's three claims", operator=operator)

    scale(cluster, namespace, 1)
    jobs = wait_for(lambda: {j["metadata"]["name"]: j for j in cluster.list(JOBS, namespace)}
                    if len(cluster.list(JOBS, namespace)) == 2 else None, "two drain Jobs", operator=operator)
    assert set(jobs) == {"agg-drain-1", "agg-drain-2"}
    for ordinal in (1, 2):
        job = jobs[f"agg-drain-{ordinal}"]
        volumes = job["spec"]["template"]["spec"]["volumes"]
        assert {"name": "data", "persistentVolumeClaim": {"claimName": f"data-agg-{ordinal}"}} in volumes
        assert "--drain" in job["spec"]["template"]["spec"]["containers"][0]["args"]
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("FlumeAgent", NAME, True)
    wait_for(lambda: drain_phases(cluster, namespace) == {1: "Running", 2: "Running"}, "two running drains",
             operator=operator)
    # written by a patch function of the status write (record_drains): wait for it as for the drains
    wait_for(lambda: (draining(cluster, namespace) or {}).get("status") == "True", "the Draining condition",
             operator=operator)
    assert claims(cluster, namespace) == wanted  # nothing deleted while the drains run

    finish_drain_pod(cluster, namespace, "agg-drain-2", exit_code=0, report=report(held=1234, delivered=1234))
    wait_for(lambda: drain.claim_name(NAME, 2) not in claims(cluster, namespace), "claim data-agg-2 deleted",
             operator=operator)
    assert drain.claim_name(NAME, 1) in claims(cluster, namespace)  # its drain still runs
    entry = wait_for(lambda: next((e for e in drains(cluster, namespace)
                                   if e["ordinal"] == 2 and e.get("claimDeleted")), None),
                     "the finished drain in the status", operator=operator)
    assert (entry["phase"], entry["held"], entry["delivered"], entry["left"]) == ("Succeeded", 1234, 1234, 0)
    wait_for(posted(cluster, namespace, "FlumeAgent", NAME, "DrainStarted", "DrainSucceeded", "ClaimDeleted"),
             "the DrainStarted, DrainSucceeded and ClaimDeleted Events", operator=operator)

    # scaling up while ordinal 1 still drains cancels its drain: the pod gets its claim back
    scale(cluster, namespace, 3)
    wait_for(lambda: cluster.list(JOBS, namespace) == [], "the drain Jobs deleted", operator=operator)
    assert drain.claim_name(NAME, 1) in claims(cluster, namespace)
    wait_for(lambda: claims(cluster, namespace) == wanted, "ordinal 2 back with a new claim", operator=operator)
    wait_for(lambda: drains(cluster, namespace) == [] and draining(cluster, namespace)["reason"] == "Idle",
             "no drain left", operator=operator)
    wait_for(posted(cluster, namespace, "FlumeAgent", NAME, "DrainCancelled"), "the DrainCancelled Event",
             operator=operator)


def test_a_failed_drain_keeps_its_claim_and_says_why(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    operator = chart_operator
    cluster.create(FLUMEAGENTS, aggregator(namespace, 2, drain={"backoffLimit": 0, "timeoutSeconds": 30}))
    wait_for(lambda: len(claims(cluster, namespace)) == 2, "two claims", operator=operator)
    scale(cluster, namespace, 1)
    job = wait_for(lambda: cluster.get(JOBS, namespace, "agg-drain-1"), "the drain Job", operator=operator)
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][6] == "30"

    reason = "no event delivered for 30 s (c1 holds 500); last sink errors: k1: connection refused"
    finish_drain_pod(cluster, namespace, "agg-drain-1", exit_code=3, report=report(held=500, delivered=0,
                                                                                     reason=reason))
    entry = wait_for(lambda: next((e for e in drains(cluster, namespace) if e["phase"] == "Failed"), None),
                     "the failed drain in the status", operator=operator)
    assert (entry["held"], entry["delivered"], entry["left"], entry["reason"]) == (500, 0, 500, reason)
    condition = wait_for(lambda: (c := draining(cluster, namespace)) and c["reason"] == "DrainFailed" and c,
                         "Draining False, DrainFailed", operator=operator)
    assert reason in condition["message"]
    assert claims(cluster, namespace) == {drain.claim_name(NAME, 0), drain.claim_name(NAME, 1)}
    wait_for(posted(cluster, namespace, "FlumeAgent", NAME, "DrainFailed"), "the DrainFailed Event", operator=operator)


def test_a_disruption_budget_for_two_or_more_replicas_owned_and_collected_with_the_agent(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    operator = chart_operator
    created = cluster.create(FLUMEAGENTS, aggregator(namespace, 2))
    budget = wait_for(lambda: cluster.get(BUDGETS, namespace, NAME), "the PodDisruptionBudget", operator=operator)
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "kubeflume-agent",
                                                         "app.kubernetes.io/instance": NAME}
    assert budget["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]

    cluster.patch(FLUMEAGENTS, namespace, NAME, {"spec": {"disruptionBudget": {"minAvailable": 1}}})
    wait_for(lambda: (cluster.get(BUDGETS, namespace, NAME) or {}).get("spec", {}).get("minAvailable") == 1,
             "the budget changed to minAvailable 1", operator=operator)
    cluster.patch(FLUMEAGENTS, namespace, NAME, {"spec": {"disruptionBudget": {"enabled": False}}})
    wait_for(lambda: cluster.get(BUDGETS, namespace, NAME) is None, "the budget turned off", operator=operator)
    cluster.patch(FLUMEAGENTS, namespace, NAME, {"spec": {"disruptionBudget": None}})
    wait_for(lambda: cluster.get(BUDGETS, namespace, NAME), "the budget back by default", operator=operator)

    cluster.delete(FLUMEAGENTS, namespace, NAME)
    wait_for(lambda: cluster.get(BUDGETS, namespace, NAME) is None, "the budget collected with the FlumeAgent")


def fill_file_channel(tmp_path: Path, count: int) -> None:
    """A real agent (netcat -> the file channel's directories, no sink) stores `count` acknowledged
    events, then stops: what a scaled-down pod leaves on its claim."""
    port = free_port()
    conf = tmp_path / "fill.conf"
    conf.write_text(
        "a1.sources = r1\na1.channels = c1\n"
        f"a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\na1.sources.r1.port = {port}\n"
        "a1.sources.r1.channels = c1\na1.channels.c1.type = file\n"
        f"a1.channels.c1.checkpointDir = {tmp_path / 'checkpoint'}\na1.channels.c1.dataDirs = {tmp_path / 'data'}\n")
    agent = subprocess.Popen([sys.executable, "-m", "kubeflume_agent.cli", "-n", "a1", "-f", str(conf),
                              "--no-metrics", "--no-reload-conf"], stderr=subprocess.PIPE, text=True)
    try:
        connection = wait_for(lambda: _connect(port), "the filling agent's netcat source")
        with connection:
            connection.sendall("".join(f"event-{n:05d}\n" for n in range(count)).encode())
            replies = connection.makefile("rb")
            assert [replies.readline() for _ in range(count)] == [b"OK\n"] * count
    finally:
        agent.terminate()
    assert agent.wait(60) == 0, agent.stderr.read()


def _connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=30)
    except OSError:
        return None


def run_drain_pod_command(cluster: Cluster, namespace: str, job: dict[str, Any], tmp_path: Path
                          ) -> tuple[int, str]:
    """The drain container's own command and args, run here: the ConfigMap's flume.conf stands in for
    the mounted one and a file for /dev/termination-log. Its exit code and termination message."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    config_map = cluster.get(CONFIGMAPS, namespace, f"{NAME}-config")
    conf, termination_log = tmp_path / "flume.conf", tmp_path / "termination-log"
    conf.write_text(config_map["data"]["flume.conf"])
    local = {"/etc/kubeflume/flume.conf": str(conf), drain.TERMINATION_LOG: str(termination_log)}
    args = [local.get(arg, arg) for arg in container["args"]]
    assert container["command"] == ["kubeflume-agent"]
    done = subprocess.run([sys.executable, "-m", "kubeflume_agent.cli", *args], capture_output=True, text=True,
                          timeout=300)
    return done.returncode, termination_log.read_text()


def test_the_drain_pods_own_command_empties_a_real_file_channel_and_its_report_reaches_the_status(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess, tmp_path: Path) -> None:
    operator = chart_operator
    out = tmp_path / "out"
    cluster.create(FLUMEAGENTS, aggregator(
        namespace, 2,
        sources={"r1": {"type": "netcat", "channels": ["c1"], "bind": "0.0.0.0", "port": free_port()}},
        channels={"c1": {"type": "file", "checkpointDir": str(tmp_path / "checkpoint"),
                         "dataDirs": str(tmp_path / "data")}},
        sinks={"k1": {"type": "file_roll", "channel": "c1", "sink": {"directory": str(out), "rollInterval": 0}}}))
    wait_for(lambda: len(claims(cluster, namespace)) == 2, "two claims", operator=operator)
    fill_file_channel(tmp_path, 2000)  # what pod agg-1 left on its claim

    scale(cluster, namespace, 1)
    job = wait_for(lambda: cluster.get(JOBS, namespace, "agg-drain-1"), "the drain Job", operator=operator)
    exit_code, message = run_drain_pod_command(cluster, namespace, job, tmp_path)
    assert exit_code == 0, message
    assert sorted(line for path in out.iterdir() for line in path.read_text().splitlines()) == \
        [f"event-{n:05d}" for n in range(2000)]

    finish_drain_pod(cluster, namespace, "agg-drain-1", exit_code=exit_code, report=message)
    wait_for(lambda: claims(cluster, namespace) == {drain.claim_name(NAME, 0)}, "claim data-agg-1 deleted",
             operator=operator)
    entry = wait_for(lambda: next((e for e in drains(cluster, namespace) if e.get("claimDeleted")), None),
                     "the drain in the status", operator=operator)
    assert (entry["phase"], entry["held"], entry["delivered"], entry["left"]) == ("Succeeded", 2000, 2000, 0)
