"""Running a ShellJob on this machine, the way a NodeManager would run its worker container.

`run_shelljob_locally` is what `kubeflume run shelljob.yaml` calls: the same spec checks, the same
generated `ExecScript.sh`, files linked into the working directory under their names and archives
unpacked (by the staged file's extension, as YARN does) under their link names, the command run
with the job's timeout, stdout/stderr kept, and the same status shape as the ShellJob resource.

`localize` and `run_container` are the NodeManager half on their own; the fake ResourceManager of
the test suite uses them to run the worker container of an application it was sent.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from kubeflume_agent.protocols.webhdfs import WebHDFSClient, WebHDFSError
from kubeflume_operator import conditions
from kubeflume_operator.problems import describe_all
from kubeflume_operator.shelljob import status as job_status
from kubeflume_operator.shelljob.launcher import worker_script
from kubeflume_operator.shelljob.sources import (
    SourceUnavailable,
    hdfs_path,
    read_small,
    stream_http,
)
from kubeflume_operator.shelljob.spec import (
    Localized,
    ShellJobSpec,
    SpecError,
    application_master_problems,
    parse_spec,
)
from kubeflume_operator.yarn.archives import ArchiveError, unpack
from kubeflume_operator.yarn.distributedshell import EXEC_SCRIPT

if TYPE_CHECKING:
    import kubernetes

SCRIPT_NAME = f"{EXEC_SCRIPT}.sh"
# SIGTERM -> SIGKILL delay: the NodeManager's yarn.nodemanager.sleep-delay-before-sigkill.ms default.
STOP_GRACE_SECONDS = 0.25
STOP_POLL_SECONDS = 0.02
STDERR_TAIL = 2000


@dataclass(frozen=True)
class ContainerFile:
    """A local copy of a resource, to appear as `key` in the container's working directory."""

    key: str
    type: str  # FILE | ARCHIVE
    file_name: str  # the name on its file system: it decides how an archive is unpacked
    path: pathlib.Path


@dataclass(frozen=True)
class ContainerResult:
    exit_code: int | None  # None when the container was stopped (timeout or cancellation)
    timed_out: bool
    stdout: pathlib.Path
    stderr: pathlib.Path

    def stderr_tail(self) -> str:
        return self.stderr.read_bytes()[-STDERR_TAIL:].decode(errors="replace").strip()


def localize(workdir: pathlib.Path, files: Sequence[ContainerFile]) -> None:
    """Link every resource into `workdir` under its key; archives are unpacked first."""
    cache = workdir / ".localized"
    for index, item in enumerate(files):
        link = workdir / item.key
        if item.type == "ARCHIVE":
            target = cache / str(index) / item.file_name
            unpack(item.path, item.file_name, target)
        else:
            target = item.path
        link.symlink_to(target.resolve())


async def run_container(
    workdir: pathlib.Path, command: Sequence[str], *, env: Mapping[str, str] | None = None,
    timeout: float | None = None, log_dir: pathlib.Path | None = None,
) -> ContainerResult:
    """Run `command` in `workdir` with stdout/stderr in `log_dir`; stop it on timeout or cancellation.

    The command gets its own process group, so whatever it started is stopped with it.
    """
    log_dir = log_dir or workdir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout, stderr = log_dir / "stdout", log_dir / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=workdir, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
    try:
        exit_code = await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        await _stop(process)
        return ContainerResult(None, True, stdout, stderr)
    except asyncio.CancelledError:
        await asyncio.shield(_stop(process))
        raise
    return ContainerResult(exit_code, False, stdout, stderr)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the process group, then SIGKILL to whatever is left of it after a grace period.

    The whole group, as the NodeManager does, not only its leader: a child that ignores SIGTERM
    or outlives the script is stopped too.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_GRACE_SECONDS
    _signal_group(process.pid, signal.SIGTERM)
    while _signal_group(process.pid, 0) and loop.time() < deadline:
        await asyncio.sleep(STOP_POLL_SECONDS)
    _signal_group(process.pid, signal.SIGKILL)
    await process.wait()


def _signal_group(group: int, sig: int) -> bool:
    """Send `sig` to a process group; False when nothing of it is left."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return False
    return True


async def run_shelljob_locally(manifest: dict, workdir: pathlib.Path | None = None) -> dict:
    """Run the ShellJob `manifest` here and return its status (same shape as the resource's)."""
    metadata = manifest.get("metadata") or {}
    name = metadata.get("name", "shelljob")
    status: dict[str, Any] = {"phase": job_status.PENDING, "startTime": conditions.now()}
    try:
        job = parse_spec(manifest.get("spec") or {}, name)
    except SpecError as error:
        return _finish(status, job_status.FAILED, "InvalidSpec", str(error))
    problems = application_master_problems(job)
    if problems:
        return _finish(status, job_status.FAILED, "Rejected", describe_all(problems))
    workdir = pathlib.Path(workdir) if workdir else pathlib.Path(tempfile.mkdtemp(prefix=f"kubeflume-{name}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    status["amContainerLogs"] = (workdir / "logs").as_uri()
    try:
        files = await _stage(job, workdir / ".staging", metadata.get("namespace"))
    except (SourceUnavailable, WebHDFSError, OSError) as error:
        return _finish(status, job_status.FAILED, "SourceUnavailable", str(error))
    status["staged"] = [_staged_entry(item) for item in files]
    script = workdir / SCRIPT_NAME
    script.write_text(worker_script(job, f"{metadata.get('namespace', '-')}/{name}"))
    try:
        localize(workdir, files)
    except (ArchiveError, OSError) as error:
        return _finish(status, job_status.FAILED, "LocalizationFailed", str(error))
    timeout = job.timeout_seconds or None
    result = await run_container(workdir, ["bash", SCRIPT_NAME], timeout=timeout)
    if result.timed_out:
        return _finish(status, job_status.KILLED, "Timeout", f"killed after the timeout of {timeout} s")
    if result.exit_code == 0:
        return _finish(status, job_status.SUCCEEDED, "Succeeded", "the command exited with code 0")
    return _finish(status, job_status.FAILED, "CommandFailed",
                   f"the command exited with code {result.exit_code}; stderr: {result.stderr_tail()}")


async def _stage(job: ShellJobSpec, staging: pathlib.Path, namespace: str | None) -> list[ContainerFile]:
    """Copy every worker resource into `staging` under the name YARN would see in HDFS."""
    staging.mkdir(parents=True, exist_ok=True)
    staged = []
    async with aiohttp.ClientSession() as session:
        for item in job.worker_resources:
            target = staging / item.staged_name
            await _fetch(item, target, session, job, namespace)
            staged.append(ContainerFile(item.name, item.type, item.staged_name, target))
    return staged


async def _fetch(item: Localized, target: pathlib.Path, session: aiohttp.ClientSession, job: ShellJobSpec,
                 namespace: str | None) -> None:
    source = item.source
    if source.kind == "http":
        with target.open("wb") as out:
            async for chunk in stream_http(session, source.url or ""):
                out.write(chunk)
    elif source.kind == "hdfs":
        if job.cluster is None or not job.cluster.webhdfs:
            raise SourceUnavailable(f"{source.url}: reading hdfs:// sources here needs spec.yarn.webhdfs")
        async with WebHDFSClient(list(job.cluster.webhdfs), user=job.cluster.user, session=session) as hdfs:
            target.write_bytes(await hdfs.open(hdfs_path(source.url or "")))
    else:
        core = _kubernetes_core() if source.kind in ("configMap", "secret") else None
        target.write_bytes(await read_small(source, namespace or "default", core=core))


def _kubernetes_core() -> kubernetes.client.CoreV1Api:
    """The local run's client for ConfigMap and Secret sources: this user's kubeconfig."""
    import kubernetes

    try:
        kubernetes.config.load_config()
    except kubernetes.config.ConfigException as error:
        raise SourceUnavailable(f"ConfigMap and Secret sources need a Kubernetes cluster: {error}") from error
    return kubernetes.client.CoreV1Api()


def _staged_entry(item: ContainerFile) -> dict[str, Any]:
    stat = item.path.stat()
    return {"name": item.key, "path": item.path.as_uri(), "type": item.type,
            "size": stat.st_size, "timestamp": int(stat.st_mtime * 1000)}


def _finish(status: dict[str, Any], phase: str, reason: str, message: str) -> dict[str, Any]:
    """The final status, with a YARN-like view of the outcome so it reads like the resource's."""
    final_status = {job_status.SUCCEEDED: "SUCCEEDED", job_status.KILLED: "KILLED"}.get(phase, "FAILED")
    status["yarn"] = {"state": "KILLED" if phase == job_status.KILLED else "FINISHED",
                      "finalStatus": final_status, "progress": 100.0}
    status["diagnostics"] = "" if phase == job_status.SUCCEEDED else message
    status.update(job_status.with_phase(status, phase, reason, message, generation=None,
                                        submitted=reason not in ("InvalidSpec", "Rejected", "SourceUnavailable")))
    return status
