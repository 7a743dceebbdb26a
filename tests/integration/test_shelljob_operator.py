"""The real operator process turning ShellJobs into YARN applications.

Kubernetes is kmock's emulator (tests/integration/operator_env.py says what it does not emulate);
HDFS and the ResourceManager are the fakes of tests/fakes/, and the fake ResourceManager runs the
worker container's `ExecScript.sh` on this machine, so a Succeeded job really ran its command.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from tests.fakes.hadoop import AM_JAR_PATH, HDFS_TOKEN, HOME, USER, YARN_TOKEN, Hadoop, fake_hadoop, job_spec
from tests.fakes.javajob import WORDS, build_java_job, serve_directory
from tests.integration.operator_env import (
    KubernetesApiEmulator,
    create,
    delete,
    events_about,
    prepare_cluster,
    running_operator,
    stored,
    update_spec,
    wait_for,
)

CRD = Path(__file__).resolve().parents[2] / "crds" / "shelljobs.yaml"

pytestmark = [pytest.mark.timeout(180), pytest.mark.kmock(cls=KubernetesApiEmulator)]

SHELLJOBS = "kubeflume.io/v1alpha1/shelljobs"
CONFIGMAPS = "v1/configmaps"
NS = "default"
NAME = "wordcount"
ENV = {"KUBEFLUME_SHELLJOB_POLL_INTERVAL": "0.2"}
HOSTILE_ARGUMENT = "$(touch pwned) `touch pwned2`; it's \"quoted\" | cat"
HOSTILE_LABEL = "nightly 'run' $HOME; touch pwned3"


@pytest.fixture
def cluster(kmock):
    prepare_cluster(kmock, ["shelljobs.yaml"])
    return kmock


@pytest.fixture
async def hadoop():
    async with fake_hadoop() as cluster:
        yield cluster


@pytest.fixture
async def operator(cluster, tmp_path):
    async with running_operator(cluster, tmp_path, watched=[SHELLJOBS], env=ENV) as process:
        yield process


def shelljob(spec: dict, name: str = NAME) -> dict:
    return {"apiVersion": "kubeflume.io/v1alpha1", "kind": "ShellJob",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def job_status(kmock, name: str = NAME) -> dict:
    return (stored(kmock, SHELLJOBS, NS, name) or {}).get("status", {})


async def wait_for_phase(kmock, operator, *phases: str, name: str = NAME) -> dict:
    return await wait_for(lambda: job_status(kmock, name).get("phase") in phases and job_status(kmock, name),
                          f"phase {' or '.join(phases)}", operator=operator)


def reasons_posted(kmock, name: str = NAME) -> set[str]:
    return {event["reason"] for event in events_about(kmock, NS, "ShellJob", name)}


def condition(status: dict, type_: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == type_)


def undeclared(value, schema: dict, path: str = "status") -> list[str]:
    """Fields the CRD's structural schema does not declare: a real API server would prune them."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return [found for key, item in value.items()
                for found in ([f"{path}.{key}"] if key not in properties
                              else undeclared(item, properties[key], f"{path}.{key}"))]
    if isinstance(value, list):
        return [found for item in value for found in undeclared(item, schema.get("items", {}), f"{path}[]")]
    return []


def status_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]


def recorded_cluster(hadoop: Hadoop) -> dict:
    return {"resourceManagers": [hadoop.rm.url], "webhdfs": [hadoop.hdfs.url], "user": USER,
            "defaultFS": f"hdfs://{hadoop.hdfs.namenode_address}"}


async def test_a_java_job_runs_on_the_dshell_variant_with_its_jars_and_archive(cluster, hadoop, operator, tmp_path):
    kmock = cluster
    java = build_java_job(tmp_path / "build")
    hadoop.hdfs.write("/jobs/wordcount.jar", java.jar.read_bytes(), owner=USER)
    served = tmp_path / "repository"
    served.mkdir()
    (served / java.dependency.name).write_bytes(java.dependency.read_bytes())
    await create(kmock, CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "dictionaries", "namespace": NS},
                                     "binaryData": {"dict.zip": base64.b64encode(java.archive.read_bytes()).decode()}})
    async with serve_directory(served) as repository:
        await create(kmock, SHELLJOBS, shelljob(job_spec(
            hadoop,
            jar={"url": "hdfs:///jobs/wordcount.jar", "mainClass": "demo.WordCount"},
            args=["--label-check", "a b", HOSTILE_ARGUMENT],
            files=[{"url": f"{repository}/greeter-1.0.jar"}],
            archives=[{"configMap": {"name": "dictionaries", "key": "dict.zip"}}],
            env=[{"name": "JOB_LABEL", "value": HOSTILE_LABEL}],
            applicationTags=["kubeflume"],
        )))
        status = await wait_for_phase(kmock, operator, "Succeeded", "Failed", "Killed")

    assert status["phase"] == "Succeeded", status
    application_id = status["applicationId"]
    assert hadoop.rm.issued == [application_id]
    assert status["yarn"] == {"state": "FINISHED", "finalStatus": "SUCCEEDED", "progress": 100.0}
    assert status["trackingUrl"].endswith(f"/cluster/app/{application_id}/")
    assert status["amContainerLogs"].endswith(f"/node/containerlogs/container_{application_id[12:]}_01_000001/{USER}")
    assert status["diagnostics"] == ""
    assert status["observedGeneration"] == 1
    assert status["cluster"] == recorded_cluster(hadoop)
    assert status["stagingDirectory"] == hadoop.staging(application_id, NAME)
    assert undeclared(status, status_schema()) == []
    assert status["startTime"] and status["completionTime"]
    assert condition(status, "Complete")["status"] == "True"
    assert condition(status, "Failed")["status"] == "False"
    staging = hadoop.staging(application_id, NAME)
    fs_uri = f"hdfs://{hadoop.hdfs.namenode_address}"
    expected_paths = {
        "AppMaster.jar": AM_JAR_PATH,  # used in place
        "ExecScript": f"{staging}/ExecScript",
        "wordcount.jar": "/jobs/wordcount.jar",  # used in place
        "greeter-1.0.jar": f"{staging}/greeter-1.0.jar",  # streamed from http
        "dict": f"{staging}/dict.zip",  # from the ConfigMap
    }
    assert {s["name"]: s["path"] for s in status["staged"]} == {k: fs_uri + v for k, v in expected_paths.items()}
    for staged in status["staged"]:
        on_hdfs = hadoop.hdfs.status(expected_paths[staged["name"]])
        assert (staged["size"], staged["timestamp"]) == (on_hdfs["length"], on_hdfs["modificationTime"])
    assert {s["name"]: s["type"] for s in status["staged"]}["dict"] == "ARCHIVE"
    assert hadoop.hdfs.read(f"{staging}/dict.zip") == java.archive.read_bytes()

    stdout = hadoop.rm.container_log(application_id)
    assert "hello yarn from greeter" in stdout
    assert f"words=3 {','.join(WORDS)}" in stdout
    assert f"label={HOSTILE_LABEL}\n" in stdout
    assert f"arg[1]=a b\narg[2]={HOSTILE_ARGUMENT}\n" in stdout
    workdir = hadoop.rm.apps[application_id].workdir
    assert not list(workdir.rglob("pwned*"))
    submission = hadoop.rm.submissions[0]
    assert submission["application-tags"] == {"tag": ["kubeflume"]}
    await wait_for(lambda: reasons_posted(kmock) >= {"Staging", "Submitted", "Running", "Succeeded"},
                   "an Event for each phase", operator=operator)

    await delete(kmock, SHELLJOBS, NS, NAME)  # a finished job: no kill, just the cleanup
    await wait_for(lambda: stored(kmock, SHELLJOBS, NS, NAME) is None, "the ShellJob to go", operator=operator)
    assert not hadoop.hdfs.exists(staging)
    assert hadoop.hdfs.exists("/jobs/wordcount.jar")  # the user's own file stays
    assert not any(method == "PUT" for method, _ in hadoop.rm.requests)


async def test_the_stock_am_runs_a_command_in_several_containers(cluster, hadoop, operator):
    kmock = cluster
    await create(kmock, SHELLJOBS, shelljob(job_spec(
        hadoop, kind="distributedshell", command=["cat", "notes.txt"], containers=2,
        files=[{"name": "notes.txt", "inline": "notes given inline\n"}])))
    status = await wait_for_phase(kmock, operator, "Succeeded", "Failed", "Killed")
    assert status["phase"] == "Succeeded", status
    application_id = status["applicationId"]
    command = hadoop.rm.submissions[0]["am-container-spec"]["commands"]["command"]
    assert f"--num_containers 2 --priority 0 --localized_files notes.txt --appname {NAME} --homedir {HOME}" in command
    for container in (1, 2):
        assert hadoop.rm.container_log(application_id, container=container) == "notes given inline\n"


async def test_a_stock_am_job_with_archives_is_refused_before_any_application(cluster, hadoop, operator):
    kmock = cluster
    await create(kmock, SHELLJOBS, shelljob(job_spec(
        hadoop, kind="distributedshell", command=["ls"], archives=[{"url": "hdfs:///x/dict.zip"}])))
    status = await wait_for_phase(kmock, operator, "Failed")
    assert "cannot localize archives" in status["diagnostics"] and "dshell" in status["diagnostics"]
    assert condition(status, "Failed")["reason"] == "Rejected"
    assert hadoop.rm.issued == []
    await wait_for(lambda: any(e["type"] == "Warning" and e["reason"] == "Rejected"
                               for e in events_about(kmock, NS, "ShellJob", NAME)), "the Rejected Event",
                   operator=operator)


async def test_a_failing_command_ends_failed_with_the_diagnostics(cluster, hadoop, operator):
    kmock = cluster
    await create(kmock, SHELLJOBS, shelljob(job_spec(hadoop, script="echo 'no input table' >&2\nexit 3")))
    status = await wait_for_phase(kmock, operator, "Succeeded", "Failed", "Killed")
    assert status["phase"] == "Failed"
    assert status["yarn"]["state"] == "FINISHED" and status["yarn"]["finalStatus"] == "FAILED"
    assert "failed = 1" in status["diagnostics"] and "no input table" in status["diagnostics"]
    assert condition(status, "Failed")["status"] == "True"


async def test_the_timeout_kills_the_application(cluster, hadoop, operator):
    kmock = cluster
    await create(kmock, SHELLJOBS, shelljob(job_spec(hadoop, command=["sleep", "300"], timeoutSeconds=2)))
    status = await wait_for_phase(kmock, operator, "Succeeded", "Failed", "Killed")
    assert status["phase"] == "Killed"
    assert "timeoutSeconds (2 s)" in status["diagnostics"]
    assert hadoop.rm.apps[status["applicationId"]].state == "KILLED"


async def test_deleting_a_running_job_kills_it_and_removes_the_staging_directory(cluster, hadoop, operator):
    kmock = cluster
    await create(kmock, SHELLJOBS, shelljob(job_spec(hadoop, command=["sleep", "300"])))
    status = await wait_for_phase(kmock, operator, "Running")
    application_id = status["applicationId"]
    staging = hadoop.staging(application_id, NAME)
    assert hadoop.hdfs.exists(f"{staging}/ExecScript")
    await delete(kmock, SHELLJOBS, NS, NAME)
    await wait_for(lambda: stored(kmock, SHELLJOBS, NS, NAME) is None, "the ShellJob to go", operator=operator)
    assert hadoop.rm.apps[application_id].state == "KILLED"
    kills = [path for method, path in hadoop.rm.requests if method == "PUT"]
    assert len(kills) >= 2 and set(kills) == {f"/apps/{application_id}/state"}  # 202 first, then 200 KILLED
    assert not hadoop.hdfs.exists(staging)


async def test_an_operator_killed_before_submitting_resumes_with_the_same_application(cluster, hadoop, tmp_path):
    kmock = cluster
    hadoop.rm.hold_submissions()
    async with running_operator(kmock, tmp_path, watched=[SHELLJOBS], env=ENV) as first:
        await create(kmock, SHELLJOBS, shelljob(job_spec(hadoop, command=["echo", "once"])))
        await wait_for(lambda: hadoop.rm.waiting_submissions == 1, "the submission to be on its way", operator=first)
        first.process.kill()  # SIGKILL: no cleanup, no last status write
        await first.process.wait()
    hadoop.rm.drop_held_submissions()
    stored_id = job_status(kmock)["applicationId"]
    assert hadoop.rm.issued == [stored_id] and hadoop.rm.apps == {}

    async with running_operator(kmock, tmp_path, watched=[SHELLJOBS], env=ENV) as second:
        status = await wait_for_phase(kmock, second, "Succeeded", "Failed", "Killed")
    assert status["phase"] == "Succeeded", status
    assert status["applicationId"] == stored_id
    assert hadoop.rm.issued == [stored_id]  # no second new-application
    assert list(hadoop.rm.apps) == [stored_id]
    assert hadoop.rm.container_log(stored_id) == "once\n"
    uploads = [path for server, _, op, path in hadoop.hdfs.requests if op == "CREATE" and server.startswith("namenode")]
    assert uploads == [f"{hadoop.staging(stored_id, NAME)}/ExecScript"]  # staged once, reused after the crash


async def test_a_missing_file_source_is_reported_and_nothing_is_submitted(cluster, hadoop, operator):
    kmock = cluster
    settings = {"configMap": {"name": "job-settings", "key": "settings.ini"}}
    await create(kmock, SHELLJOBS, shelljob(job_spec(hadoop, command=["cat", "settings.ini"], files=[settings])))
    waiting = await wait_for(
        lambda: any(c["reason"] == "SourceUnavailable" for c in job_status(kmock).get("conditions", []))
        and job_status(kmock), "the SourceUnavailable condition", operator=operator)
    assert waiting["phase"] == "Pending"
    assert "ConfigMap default/job-settings does not exist" in condition(waiting, "Submitted")["message"]
    assert hadoop.rm.issued == [] and "applicationId" not in waiting
    await wait_for(lambda: "SourceUnavailable" in reasons_posted(kmock), "the SourceUnavailable Event",
                   operator=operator)

    await create(kmock, CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "job-settings", "namespace": NS},
                                     "data": {"settings.ini": "[job]\nmode=fast\n"}})
    status = await wait_for_phase(kmock, operator, "Succeeded", "Failed", "Killed")
    assert status["phase"] == "Succeeded"
    assert hadoop.rm.container_log(status["applicationId"]) == "[job]\nmode=fast\n"


async def test_a_spec_change_replaces_the_running_application(cluster, hadoop, operator):
    kmock = cluster
    await create(kmock, SHELLJOBS, shelljob(job_spec(hadoop, command=["sleep", "300"])))
    first = (await wait_for_phase(kmock, operator, "Running"))["applicationId"]
    await update_spec(kmock, SHELLJOBS, NS, NAME, job_spec(hadoop, command=["echo", "second"]))
    status = await wait_for(lambda: (s := job_status(kmock)).get("observedGeneration") == 2
                            and s.get("phase") == "Succeeded" and s, "generation 2 to succeed", operator=operator)
    assert status["applicationId"] != first
    assert hadoop.rm.apps[first].state == "KILLED"
    assert not hadoop.hdfs.exists(hadoop.staging(first, NAME))
    assert hadoop.rm.container_log(status["applicationId"]) == "second\n"


async def test_delegation_tokens_and_secret_files_come_from_secrets(cluster, hadoop, operator):
    kmock = cluster

    def encoded(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    await create(kmock, "v1/secrets", {"apiVersion": "v1", "kind": "Secret",
                                       "metadata": {"name": "hadoop-tokens", "namespace": NS},
                                       "data": {"hdfs": encoded(HDFS_TOKEN), "yarn": encoded(YARN_TOKEN)}})
    await create(kmock, "v1/secrets", {"apiVersion": "v1", "kind": "Secret",
                                       "metadata": {"name": "db", "namespace": NS},
                                       "data": {"password": encoded("s3cret")}})
    cluster_spec = {**hadoop.cluster(), "delegationTokenSecret": "hadoop-tokens"}
    del cluster_spec["user"]  # the tokens say who we are
    await create(kmock, SHELLJOBS, shelljob({**job_spec(hadoop), "yarn": cluster_spec, "command": ["cat", "pw"],
                                             "files": [{"secret": {"name": "db", "key": "password"}, "name": "pw"}]}))
    status = await wait_for_phase(kmock, operator, "Succeeded", "Failed", "Killed")
    assert status["phase"] == "Succeeded", status
    application_id = status["applicationId"]
    assert hadoop.rm.apps[application_id].user == USER
    submission = hadoop.rm.submissions[0]
    tokens = submission["am-container-spec"]["credentials"]["tokens"]["entry"]
    assert [entry["value"] for entry in tokens] == [HDFS_TOKEN]
    assert submission["cancel-tokens-when-complete"] is False
    staging = hadoop.staging(application_id, NAME)
    assert hadoop.hdfs.read(f"{staging}/pw") == b"s3cret"
    assert hadoop.rm.container_log(application_id) == "s3cret"
    # The application ended without cancelling the Secret's token: the cleanup still can use it.
    await delete(kmock, SHELLJOBS, NS, NAME)
    await wait_for(lambda: stored(kmock, SHELLJOBS, NS, NAME) is None, "the ShellJob to go", operator=operator)
    assert not hadoop.hdfs.exists(staging)


@contextlib.asynccontextmanager
async def held_download(content: bytes) -> AsyncIterator[tuple[str, asyncio.Event, list[str]]]:
    """A real HTTP server whose answer waits for the returned event; yields (url, release, requests)."""
    release, requests = asyncio.Event(), []

    async def serve(request: web.Request) -> web.Response:
        requests.append(request.path)
        await release.wait()
        return web.Response(body=content)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", release, requests
    finally:
        release.set()
        await runner.cleanup()


async def test_an_operator_killed_while_staging_resumes_with_the_stored_application(cluster, hadoop, tmp_path):
    kmock = cluster
    async with held_download(b"downloaded once\n") as (url, release, requests):
        async with running_operator(kmock, tmp_path, watched=[SHELLJOBS], env=ENV) as first:
            await create(kmock, SHELLJOBS, shelljob(job_spec(hadoop, command=["cat", "input.txt"],
                                                             files=[{"url": f"{url}/input.txt"}])))
            await wait_for(lambda: requests, "the download to start", operator=first)
            during = job_status(kmock)  # the id is stored before anything is staged
            first.process.kill()
            await first.process.wait()
        assert during["phase"] == "Staging" and "staged" not in during
        stored_id = during["applicationId"]
        assert hadoop.rm.issued == [stored_id] and hadoop.rm.submissions == []
        release.set()
        async with running_operator(kmock, tmp_path, watched=[SHELLJOBS], env=ENV) as second:
            status = await wait_for_phase(kmock, second, "Succeeded", "Failed", "Killed")
    assert status["phase"] == "Succeeded", status
    assert status["applicationId"] == stored_id and hadoop.rm.issued == [stored_id]
    assert list(hadoop.rm.apps) == [stored_id]
    assert hadoop.rm.container_log(stored_id) == "downloaded once\n"
    staged = {s["name"]: s for s in status["staged"]}
    on_hdfs = hadoop.hdfs.status(f"{hadoop.staging(stored_id, NAME)}/input.txt")
    assert (staged["input.txt"]["size"], staged["input.txt"]["timestamp"]) == (16, on_hdfs["modificationTime"])


@pytest.mark.parametrize(("keep_cluster", "change", "reason", "diagnostics"), [
    (True, {"command": ["sleep", "300"], "script": "sleep 300"}, "InvalidSpec", "give exactly one of command, script"),
    (False, {"command": ["sleep", "300"]}, "Rejected", "spec.yarn: required"),  # no yarn block any more
], ids=["invalid", "no-cluster"])
async def test_a_spec_edit_the_job_cannot_run_still_retires_the_running_application(
        cluster, hadoop, operator, keep_cluster, change, reason, diagnostics):
    kmock = cluster
    await create(kmock, SHELLJOBS, shelljob(job_spec(hadoop, command=["sleep", "300"])))
    running = await wait_for_phase(kmock, operator, "Running")
    application_id = running["applicationId"]
    assert undeclared(running, status_schema()) == []
    await update_spec(kmock, SHELLJOBS, NS, NAME, {**job_spec(hadoop), **change} if keep_cluster else change)
    refused = await wait_for(lambda: (s := job_status(kmock)).get("observedGeneration") == 2
                             and s.get("phase") == "Failed" and s, "generation 2 to be refused", operator=operator)
    assert condition(refused, "Failed")["reason"] == reason
    assert diagnostics in refused["diagnostics"]
    assert hadoop.rm.apps[application_id].state == "KILLED"
    assert f"/apps/{application_id}/state" in hadoop.kills()
    assert not hadoop.hdfs.exists(hadoop.staging(application_id, NAME))
    assert {"applicationId", "cluster", "stagingDirectory"}.isdisjoint(refused)
    assert hadoop.rm.issued == [application_id]  # nothing created for the refused generation
    await wait_for(lambda: "SpecChanged" in reasons_posted(kmock), "the SpecChanged Event", operator=operator)

    kills = len(hadoop.kills())
    await delete(kmock, SHELLJOBS, NS, NAME)
    await wait_for(lambda: stored(kmock, SHELLJOBS, NS, NAME) is None, "the ShellJob to go", operator=operator)
    assert len(hadoop.kills()) == kills and "CleanupSkipped" not in reasons_posted(kmock)


async def test_a_spec_moved_to_another_cluster_kills_the_old_application_where_it_runs(cluster, hadoop, operator):
    kmock = cluster
    await create(kmock, SHELLJOBS, shelljob(job_spec(hadoop, command=["sleep", "300"])))
    first = (await wait_for_phase(kmock, operator, "Running"))["applicationId"]
    async with fake_hadoop() as other:
        await update_spec(kmock, SHELLJOBS, NS, NAME, job_spec(other, command=["echo", "elsewhere"],
                                                                applicationName="moved"))
        status = await wait_for(lambda: (s := job_status(kmock)).get("observedGeneration") == 2
                                and s.get("phase") in ("Succeeded", "Failed", "Killed") and s,
                                "generation 2 to end", operator=operator)
        assert status["phase"] == "Succeeded", status
        second = status["applicationId"]
        assert hadoop.rm.apps[first].state == "KILLED"  # on the cluster it was created on
        assert set(hadoop.kills()) == {f"/apps/{first}/state"}
        assert not hadoop.hdfs.exists(hadoop.staging(first, NAME))  # under the old applicationName
        assert hadoop.rm.issued == [first]
        assert other.rm.issued == [second] and other.kills() == []  # the same id there is not touched
        assert other.rm.container_log(second) == "elsewhere\n"
        assert status["cluster"] == recorded_cluster(other)
        assert status["stagingDirectory"] == other.staging(second, app_name="moved")
        assert other.hdfs.exists(f"{other.staging(second, app_name='moved')}/ExecScript")


async def test_deleting_a_job_whose_spec_became_invalid_kills_its_application_where_it_runs(cluster, hadoop,
                                                                                           tmp_path):
    kmock = cluster
    async with running_operator(kmock, tmp_path, watched=[SHELLJOBS], env=ENV) as first:
        await create(kmock, SHELLJOBS, shelljob(job_spec(hadoop, command=["sleep", "300"])))
        application_id = (await wait_for_phase(kmock, first, "Running"))["applicationId"]
        first.process.kill()  # the edit and the deletion happen while no operator runs
        await first.process.wait()
    nowhere = {"resourceManagers": ["http://127.0.0.1:9"], "webhdfs": ["http://127.0.0.1:9"], "user": "bob"}
    await update_spec(kmock, SHELLJOBS, NS, NAME, {**job_spec(hadoop), "yarn": nowhere, "applicationName": "other",
                                                   "command": ["sleep", "1"], "script": "sleep 1"})
    await delete(kmock, SHELLJOBS, NS, NAME)
    assert stored(kmock, SHELLJOBS, NS, NAME) is not None  # the finalizer holds it for the operator

    async with running_operator(kmock, tmp_path, watched=[SHELLJOBS], env=ENV) as second:
        await wait_for(lambda: stored(kmock, SHELLJOBS, NS, NAME) is None, "the ShellJob to go", operator=second)
    assert hadoop.rm.apps[application_id].state == "KILLED"
    assert set(hadoop.kills()) == {f"/apps/{application_id}/state"}
    assert not hadoop.hdfs.exists(hadoop.staging(application_id, NAME))
    cleaned = [e["message"] for e in events_about(kmock, NS, "ShellJob", NAME) if e["reason"] == "CleanedUp"]
    assert cleaned == [f"application {application_id} KILLED; {hadoop.staging(application_id, NAME)} deleted"]
    assert {"CleanupSkipped", "SpecChanged"}.isdisjoint(reasons_posted(kmock))  # the deletion did it
