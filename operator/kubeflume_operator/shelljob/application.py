"""The YARN application of one ShellJob generation, driven step by step.

Each step is idempotent and keyed on the application id stored in the status, so the kopf
handler can be re-run after a crash at any point and never creates a second application for a
generation:

1. new-application, and the id written to status at once (with `observedGeneration`, and where
   the application lives: `cluster` and `stagingDirectory`, see placement.py);
2. staging under `<home>/<appName>/<appId>/`, sizes and timestamps read back with GETFILESTATUS
   and written to `status.staged`; once recorded, staged files are never written again (the
   NodeManager refuses a file whose timestamp changed). Before that, a re-run overwrites them:
   nothing has used them yet;
3. the submission (POST /apps; repeating it with the same id is harmless);
4. following the application report until it ends, killing it past `timeoutSeconds`.
"""

from __future__ import annotations

import calendar
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import kubernetes

from kubeflume_agent.protocols.webhdfs import FileNotFound, WebHDFSClient
from kubeflume_operator import conditions
from kubeflume_operator.problems import describe_all
from kubeflume_operator.shelljob import placement
from kubeflume_operator.shelljob import status as job_status
from kubeflume_operator.shelljob.launcher import worker_script
from kubeflume_operator.shelljob.placement import Placement
from kubeflume_operator.shelljob.sources import (
    SourceUnavailable,
    first_chunk_checked,
    hdfs_path,
    read_kubernetes_object,
    read_small,
    stream_http,
)
from kubeflume_operator.shelljob.spec import Cluster, ShellJobSpec, Source, cluster_problems
from kubeflume_operator.shelljob.submission import (
    PlannedFile,
    location_problems,
    staging_directory,
    staging_plan,
    submission_context,
)
from kubeflume_operator.yarn.distributedshell import StagedFile
from kubeflume_operator.yarn.resourcemanager import ApplicationNotFound, ResourceManagerClient

Record = Callable[[dict[str, Any]], Awaitable[None]]
Notify = Callable[[str, str, str], None]  # (event type Normal|Warning, reason, message)
STAGING_PERMISSION = "700"
HDFS_TOKEN_KEY = "hdfs"
YARN_TOKEN_KEY = "yarn"
HDFS_TOKEN_ALIAS = "kubeflume-hdfs-delegation-token"
# Staging streams files of any size (http -> HDFS): no bound on a whole request, only on silence.
TRANSFER_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)


class JobRejected(Exception):
    """The job cannot run on YARN as specified; the message says why (terminal for a generation)."""


def check_runnable(job: ShellJobSpec) -> None:
    """JobRejected when the job cannot be submitted to YARN as specified."""
    problems = cluster_problems(job)
    if not problems:
        problems = location_problems(job)
    if problems:
        raise JobRejected(describe_all(problems))


@dataclass
class Clients:
    rm: ResourceManagerClient
    hdfs: WebHDFSClient
    http: aiohttp.ClientSession
    hdfs_token: str | None
    core: kubernetes.client.CoreV1Api  # ConfigMap and Secret sources


@contextlib.asynccontextmanager
async def connect(cluster: Cluster, namespace: str, *, core: kubernetes.client.CoreV1Api) -> AsyncIterator[Clients]:
    """Clients for the cluster, with the delegation tokens of its Secret if it names one."""
    tokens: dict[str, bytes] = {}
    if cluster.token_secret:
        tokens = await read_kubernetes_object("Secret", namespace, cluster.token_secret, core=core)
    hdfs_token = tokens[HDFS_TOKEN_KEY].decode().strip() if HDFS_TOKEN_KEY in tokens else None
    yarn_token = tokens[YARN_TOKEN_KEY].decode().strip() if YARN_TOKEN_KEY in tokens else None
    async with aiohttp.ClientSession(timeout=TRANSFER_TIMEOUT) as session:
        yield Clients(
            rm=ResourceManagerClient(list(cluster.resource_managers), cluster.user, yarn_token, session=session),
            hdfs=WebHDFSClient(list(cluster.webhdfs), cluster.user, hdfs_token, session=session),
            http=session,
            hdfs_token=hdfs_token,
            core=core,
        )


class ApplicationRun:
    """Moves one ShellJob's application forward from what its status says."""

    def __init__(self, job: ShellJobSpec, namespace: str, generation: int | None, status: dict[str, Any],
                 clients: Clients, record: Record, notify: Notify) -> None:
        assert job.cluster is not None, "check_runnable() first"
        self.job = job
        self.namespace = namespace
        self.generation = generation
        self.status = status
        self.clients = clients
        self._record = record
        self.notify = notify
        self.default_fs = job.cluster.default_fs

    @property
    def application_id(self) -> str | None:
        return self.status.get("applicationId")

    async def record(self, fields: dict[str, Any]) -> None:
        await self._record(fields)
        self.status.update(fields)

    async def set_phase(self, phase: str, reason: str, message: str, **fields: Any) -> None:
        changed = phase != self.status.get("phase")
        await self.record({**fields, **job_status.with_phase(self.status, phase, reason, message, self.generation)})
        if changed:
            failed = phase in (job_status.FAILED, job_status.KILLED)
            self.notify("Warning" if failed else "Normal", phase, message)

    async def advance(self) -> None:
        """One pass: whatever step comes next, then the application's report if it was submitted."""
        if not self.application_id:
            await self._preflight()
            await self._new_application()
        if not self.status.get("staged"):
            await self._stage()
        if self.status.get("phase") in (job_status.PENDING, job_status.STAGING):
            await self._submit()
        await self._follow()

    async def _preflight(self) -> None:
        """Fail before creating an application when a source is known to be missing."""
        for planned in self._plan(home="/"):
            source = planned.source
            if source is None:
                continue
            if source.kind in ("configMap", "secret", "inline"):
                await read_small(source, self.namespace, core=self.clients.core)
            elif source.kind == "hdfs":
                await self._hdfs_status(hdfs_path(source.url or ""), source)

    async def _new_application(self) -> None:
        assert self.job.cluster is not None
        home = await self.clients.hdfs.home_directory()
        new = await self.clients.rm.new_application()
        directory = staging_directory(home, self.job.app_name, new.application_id)
        await self.record({"applicationId": new.application_id, "observedGeneration": self.generation,
                           "diagnostics": None,  # what the job waited for before, if anything
                           "startTime": conditions.now(), **placement.record(self.job.cluster, directory)})
        await self.set_phase(job_status.STAGING, "Staging", f"application {new.application_id} created; "
                             "staging its files")
        master = self.job.master
        if new.max_memory_mb and (master.memory_mb > new.max_memory_mb or master.vcores > new.max_vcores):
            raise JobRejected(f"spec.master asks for {master.memory_mb} MB / {master.vcores} vcores; the cluster "
                              f"allows at most {new.max_memory_mb} MB / {new.max_vcores} vcores")

    def _plan(self, home: str) -> list[PlannedFile]:
        return staging_plan(self.job, self.application_id or "pending", home)

    async def _stage(self) -> None:
        home = await self.clients.hdfs.home_directory()
        assert self.application_id
        directory = staging_directory(home, self.job.app_name, self.application_id)
        await self.clients.hdfs.mkdirs(directory, permission=STAGING_PERMISSION)
        staged = []
        for planned in self._plan(home):
            if not planned.in_place:
                await self._upload(planned, home)
            status = await self._hdfs_status(planned.path, planned.source)
            staged.append({"name": planned.name, "path": planned.uri(self.default_fs), "type": planned.type,
                           "size": status.length, "timestamp": status.modification_time})
        await self.record({"staged": staged})

    async def _hdfs_status(self, path: str, source: Source | None):
        try:
            return await self.clients.hdfs.get_file_status(path)
        except FileNotFound as error:
            raise SourceUnavailable(f"{source.describe() if source else path}: no such file in HDFS") from error

    async def _upload(self, planned: PlannedFile, home: str) -> None:
        """Write one staged file (overwriting a partial one left by an interrupted run)."""
        source = planned.source
        hdfs = self.clients.hdfs
        if source is None:
            data: Any = worker_script(self.job, f"{self.namespace}/{self.job.app_name}").encode()
        elif source.kind == "http":
            data = await first_chunk_checked(stream_http(self.clients.http, source.url or ""))
        elif source.kind == "hdfs":
            data = await hdfs.open(hdfs_path(source.url or ""))
        else:
            data = await read_small(source, self.namespace, core=self.clients.core)
        await hdfs.create(planned.path, data, overwrite=True)

    async def _submit(self) -> None:
        home = await self.clients.hdfs.home_directory()
        roles = {planned.name: planned.role for planned in self._plan(home)}
        staged = [StagedFile(item["name"], item["path"], item["type"], item["size"], item["timestamp"])
                  for item in self.status["staged"]]
        credentials = {HDFS_TOKEN_ALIAS: self.clients.hdfs_token} if self.clients.hdfs_token else None
        assert self.application_id
        context = submission_context(self.job, self.application_id, home, staged, roles, credentials)
        await self.clients.rm.submit(context)
        await self.set_phase(job_status.SUBMITTED, "Submitted",
                             f"application {self.application_id} submitted to queue {self.job.queue}")

    async def _follow(self) -> None:
        assert self.application_id
        try:
            report = await self.clients.rm.application(self.application_id)
        except ApplicationNotFound:
            await self.set_phase(job_status.FAILED, "ApplicationLost", f"the ResourceManager no longer knows "
                                 f"application {self.application_id}")
            return
        phase = job_status.phase_of(report.get("state", ""), report.get("finalStatus", ""))
        killed_for_time = phase not in job_status.TERMINAL and self._timed_out()
        if killed_for_time:
            await self.clients.rm.kill(self.application_id)
            report = await self.clients.rm.application(self.application_id)
            phase = job_status.phase_of(report.get("state", ""), report.get("finalStatus", ""))
        diagnostics = report.get("diagnostics") or ""
        if killed_for_time and phase == job_status.KILLED:
            diagnostics = f"killed after spec.timeoutSeconds ({self.job.timeout_seconds} s). {diagnostics}".strip()
        fields = {
            "trackingUrl": report.get("trackingUrl") or None,
            "amContainerLogs": report.get("amContainerLogs") or None,
            "diagnostics": diagnostics,
            "yarn": job_status.yarn_view(report),
        }
        fields = {key: value for key, value in fields.items() if self.status.get(key) != value}
        if phase != self.status.get("phase"):
            state = f"{report.get('state')}/{report.get('finalStatus')}"
            message = f"application {self.application_id} is {state}" + (f": {diagnostics}" if diagnostics else "")
            await self.set_phase(phase, phase, message, **fields)
        elif fields:
            await self.record(fields)

    def _timed_out(self) -> bool:
        if not self.job.timeout_seconds or not self.status.get("startTime"):
            return False
        started = calendar.timegm(time.strptime(self.status["startTime"], "%Y-%m-%dT%H:%M:%SZ"))
        return time.time() - started > self.job.timeout_seconds


async def remove_application(where: Placement, phase: str | None, clients: Clients) -> str:
    """Kill the application unless it ended, then delete its staging directory; says what was done.

    `clients` must be connected to `where.cluster`.
    """
    done = []
    application_id = where.application_id
    if phase not in job_status.TERMINAL:
        with contextlib.suppress(ApplicationNotFound):
            state = await clients.rm.kill(application_id)
            done.append(f"application {application_id} {state}")
    directory = where.staging_directory
    if directory is None:  # an older status: the spec's applicationName under the user's home
        directory = staging_directory(await clients.hdfs.home_directory(), where.app_name, application_id)
    if await clients.hdfs.delete(directory, recursive=True):
        done.append(f"{directory} deleted")
    return "; ".join(done) or f"nothing left of application {application_id}"
