"""ShellJobs on a real API server, run by the operator under the chart's RBAC, on the fake YARN/HDFS.

The tests are async because the fake ResourceManager and WebHDFS serve from the test's event loop;
every call to the API server runs in a thread (`wait_for_async`, `asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubeflume_operator import conditions
from tests.fakes.hadoop import Hadoop, fake_hadoop, job_spec
from tests.kubernetes.cluster import (
    CONFIGMAPS,
    SHELLJOBS,
    Cluster,
    OperatorProcess,
    free_port,
    posted,
    start_chart_operator,
    wait_for_async,
)

pytestmark = pytest.mark.kubernetes

NAME = "wordcount"
# Every status field the operator writes for a job that ran, and inside its objects: a field the
# CRD did not declare would be pruned by the API server and missing here.
STATUS_FIELDS = {"phase", "applicationId", "cluster", "stagingDirectory", "trackingUrl", "amContainerLogs",
                 "diagnostics", "yarn", "startTime", "completionTime", "staged", "observedGeneration", "conditions"}
CLUSTER_FIELDS = {"resourceManagers", "webhdfs", "user", "defaultFS"}
YARN_FIELDS = {"state", "finalStatus", "progress"}
STAGED_FIELDS = {"name", "path", "type", "size", "timestamp"}
CONDITION_FIELDS = {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}


@pytest.fixture
async def hadoop() -> AsyncIterator[Hadoop]:
    async with fake_hadoop() as cluster:
        yield cluster


def shelljob(namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kubeflume.io/v1alpha1", "kind": "ShellJob",
            "metadata": {"name": NAME, "namespace": namespace}, "spec": spec}


def job_status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return (cluster.get(SHELLJOBS, namespace, NAME) or {}).get("status") or {}


async def create(cluster: Cluster, namespace: str, spec: dict[str, Any]) -> None:
    await asyncio.to_thread(cluster.create, SHELLJOBS, shelljob(namespace, spec))


async def phase(cluster: Cluster, namespace: str, operator: OperatorProcess, *phases: str) -> dict[str, Any]:
    return await wait_for_async(lambda: (s := job_status(cluster, namespace)).get("phase") in phases and s,
                                f"phase {' or '.join(phases)}", operator=operator)


async def kubectl_wait(cluster: Cluster, namespace: str, condition: str) -> str:
    """`kubectl wait --for=condition=... sj/NAME`, as docs/troubleshooting.md tells users to."""
    done = await asyncio.to_thread(cluster.kubectl, "wait", f"--for=condition={condition}", f"sj/{NAME}",
                                   "-n", namespace, "--timeout=120s", timeout=150)
    return done.stdout


async def test_a_job_succeeds_and_every_status_field_reads_back_from_the_server(
        cluster: Cluster, namespace: str, hadoop: Hadoop, chart_operator: OperatorProcess) -> None:
    await create(cluster, namespace, job_spec(hadoop, command=["echo", "hello"]))
    assert "condition met" in await kubectl_wait(cluster, namespace, "Complete")
    status = job_status(cluster, namespace)

    assert status["phase"] == "Succeeded"
    application_id = status["applicationId"]
    assert hadoop.rm.issued == [application_id]
    assert hadoop.rm.container_log(application_id) == "hello\n"
    assert set(status) == STATUS_FIELDS
    assert set(status["cluster"]) == CLUSTER_FIELDS and status["cluster"] == hadoop.cluster()
    assert status["yarn"] == {"state": "FINISHED", "finalStatus": "SUCCEEDED", "progress": 100.0}
    assert set(status["yarn"]) == YARN_FIELDS
    assert status["staged"] and all(set(item) == STAGED_FIELDS for item in status["staged"])
    assert status["stagingDirectory"] == hadoop.staging(application_id, NAME)
    assert status["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]} == \
        {"Submitted": "True", "Running": "False", "Complete": "True", "Failed": "False"}
    assert all(set(c) == CONDITION_FIELDS for c in status["conditions"])
    await wait_for_async(posted(cluster, namespace, "ShellJob", NAME, "Staging", "Submitted", "Succeeded"),
                         "the Staging, Submitted and Succeeded Events", operator=chart_operator)


async def test_a_job_past_its_timeout_is_killed(
        cluster: Cluster, namespace: str, hadoop: Hadoop, chart_operator: OperatorProcess) -> None:
    await create(cluster, namespace, job_spec(hadoop, command=["sleep", "300"], timeoutSeconds=2))
    assert "condition met" in await kubectl_wait(cluster, namespace, "Failed")
    status = job_status(cluster, namespace)
    assert status["phase"] == "Killed"
    assert status["diagnostics"].startswith("killed after spec.timeoutSeconds (2 s)")
    assert hadoop.rm.apps[status["applicationId"]].state == "KILLED"


async def test_deleting_a_running_job_kills_it_cleans_its_staging_and_lets_it_go(
        cluster: Cluster, namespace: str, hadoop: Hadoop, chart_operator: OperatorProcess) -> None:
    await create(cluster, namespace, job_spec(hadoop, command=["sleep", "300"]))
    running = await phase(cluster, namespace, chart_operator, "Running")
    application_id = running["applicationId"]
    staging = hadoop.staging(application_id, NAME)
    assert hadoop.hdfs.exists(f"{staging}/ExecScript")
    stored = await asyncio.to_thread(cluster.get, SHELLJOBS, namespace, NAME)
    assert stored["metadata"]["finalizers"] == ["kubeflume.io/finalizer"]

    await asyncio.to_thread(cluster.delete, SHELLJOBS, namespace, NAME)
    await wait_for_async(lambda: cluster.get(SHELLJOBS, namespace, NAME) is None,
                         "the ShellJob to be gone (finalizer removed)", operator=chart_operator)
    assert hadoop.rm.apps[application_id].state == "KILLED"
    assert set(hadoop.kills()) == {f"/apps/{application_id}/state"}
    assert not hadoop.hdfs.exists(staging)
    events = await wait_for_async(posted(cluster, namespace, "ShellJob", NAME, "CleanedUp"),
                                  "the CleanedUp Event", operator=chart_operator)
    cleaned = [e for e in events if e["reason"] == "CleanedUp"]
    assert application_id in cleaned[0]["message"]


async def test_an_unreachable_cluster_keeps_the_job_pending_and_says_why(
        cluster: Cluster, namespace: str, chart_operator: OperatorProcess) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spec = {"yarn": {"resourceManagers": [closed], "webhdfs": [closed], "user": "alice"},
            "applicationMaster": {"kind": "dshell", "jar": {"url": "hdfs:///apps/AppMaster.jar"}},
            "command": ["echo", "never"]}
    await create(cluster, namespace, spec)
    status = await wait_for_async(lambda: (s := job_status(cluster, namespace)).get("diagnostics") and s,
                                  "the job to say why it waits", operator=chart_operator)
    assert status["phase"] == "Pending"
    assert status["observedGeneration"] == 1
    assert status["diagnostics"].startswith("NoNameNodeAvailable: ")
    assert not re.search(r"\b(\w+): \1:", status["diagnostics"]), status["diagnostics"]  # no doubled prefix
    submitted = conditions.find(status["conditions"], "Submitted")
    assert (submitted["status"], submitted["reason"], submitted["message"]) == \
        ("False", "ClusterUnavailable", status["diagnostics"])
    assert "applicationId" not in status


async def test_an_operator_killed_mid_submission_restarts_without_a_second_application(
        cluster: Cluster, namespace: str, hadoop: Hadoop, chart_deployment: dict[str, Any],
        tmp_path: Path) -> None:
    hadoop.rm.hold_submissions()
    first = await asyncio.to_thread(start_chart_operator, cluster, chart_deployment, tmp_path,
                                    namespace=namespace)
    try:
        await create(cluster, namespace, job_spec(hadoop, command=["echo", "once"]))
        await wait_for_async(lambda: hadoop.rm.waiting_submissions == 1, "the submission to be on its way",
                             operator=first)
    finally:
        first.kill()  # SIGKILL: no cleanup, no last status write
    hadoop.rm.drop_held_submissions()
    stored_id = job_status(cluster, namespace)["applicationId"]
    assert hadoop.rm.issued == [stored_id] and hadoop.rm.apps == {}

    second = await asyncio.to_thread(start_chart_operator, cluster, chart_deployment, tmp_path,
                                    namespace=namespace)
    try:
        status = await phase(cluster, namespace, second, "Succeeded", "Failed", "Killed")
    finally:
        await asyncio.to_thread(second.stop)
    assert status["phase"] == "Succeeded", status
    assert status["applicationId"] == stored_id
    assert hadoop.rm.issued == [stored_id]  # no second new-application
    assert list(hadoop.rm.apps) == [stored_id]  # no duplicate YARN application
    assert hadoop.rm.container_log(stored_id) == "once\n"


async def test_a_spec_change_retires_the_running_application_and_reads_its_file_from_a_configmap(
        cluster: Cluster, namespace: str, hadoop: Hadoop, chart_operator: OperatorProcess) -> None:
    await create(cluster, namespace, job_spec(hadoop, command=["sleep", "300"]))
    first = (await phase(cluster, namespace, chart_operator, "Running"))["applicationId"]
    await asyncio.to_thread(cluster.create, CONFIGMAPS, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "job-settings", "namespace": namespace},
        "data": {"settings.ini": "[job]\nmode=fast\n"}})
    second_spec = job_spec(hadoop, command=["cat", "settings.ini"],
                           files=[{"configMap": {"name": "job-settings", "key": "settings.ini"}}])
    await asyncio.to_thread(cluster.patch, SHELLJOBS, namespace, NAME, {"spec": second_spec})
    status = await wait_for_async(
        lambda: (s := job_status(cluster, namespace)).get("observedGeneration") == 2 and s.get("phase") in
        ("Succeeded", "Failed", "Killed") and s, "generation 2 to end", operator=chart_operator)
    assert status["phase"] == "Succeeded", status
    assert status["applicationId"] != first
    assert hadoop.rm.apps[first].state == "KILLED"
    assert not hadoop.hdfs.exists(hadoop.staging(first, NAME))
    assert hadoop.rm.container_log(status["applicationId"]) == "[job]\nmode=fast\n"  # read under the chart's RBAC
    await wait_for_async(posted(cluster, namespace, "ShellJob", NAME, "SpecChanged"), "the SpecChanged Event",
                         operator=chart_operator)
    assert "Forbidden" not in chart_operator.log()
