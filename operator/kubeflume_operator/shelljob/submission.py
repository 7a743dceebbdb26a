"""ShellJob spec -> YARN submission: what the DistributedShell Client does, as pure functions.

`staging_plan` says where each resource will live in HDFS (and whether an hdfs:// source can be
used where it is); `submission_context` builds the body of `POST /ws/v1/cluster/apps` once the
staged files' sizes and timestamps are known. No I/O here: see application.py.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kubeflume_agent.config.model import ConfigError
from kubeflume_operator.problems import at
from kubeflume_operator.shelljob.spec import ShellJobSpec, Source
from kubeflume_operator.yarn import distributedshell as ds

APPLICATION_TYPE = "YARN"
AM_ROLE, SCRIPT_ROLE, WORKER_ROLE = "am", "script", "worker"


@dataclass(frozen=True)
class PlannedFile:
    """One file the submission needs: its link name, HDFS path, and where its bytes come from."""

    name: str
    type: str  # FILE | ARCHIVE
    role: str  # am (the AM's own jar), script (ExecScript), worker (localized into the worker)
    path: str  # absolute HDFS path
    source: Source | None  # None: generated (the worker script)
    in_place: bool  # an hdfs:// source used where it is, not copied

    def uri(self, default_fs: str) -> str:
        """The LocalResource URL: the source's own when used in place with an authority."""
        if self.in_place and self.source is not None and urlsplit(self.source.url or "").netloc:
            return self.source.url or ""
        return hdfs_uri(default_fs, self.path)


def staging_directory(home: str, app_name: str, application_id: str) -> str:
    """`<home>/<appName>/<appId>`: where the DistributedShell Client stages, and the stock AM looks."""
    return posixpath.join(home, app_name, application_id)


def staging_plan(job: ShellJobSpec, application_id: str, home: str) -> list[PlannedFile]:
    directory = staging_directory(home, job.app_name, application_id)
    kind = job.application_master.kind
    am_jar = job.application_master.jar
    assert am_jar is not None, "cluster_problems() rejects a job without an AM jar"
    plan = [
        _planned(ds.AM_JAR, "FILE", AM_ROLE, am_jar, directory, ds.AM_JAR, may_stay=True),
        PlannedFile(ds.EXEC_SCRIPT, "FILE", SCRIPT_ROLE, posixpath.join(directory, ds.EXEC_SCRIPT), None, False),
    ]
    for item in job.worker_resources:
        # The stock AM only localizes from the staging directory; dshell links a file under its
        # HDFS file name, so an hdfs:// source stays where it is only when that name is right.
        may_stay = kind.files_in_environment and item.source.file_name == item.staged_name
        plan.append(_planned(item.name, item.type, WORKER_ROLE, item.source, directory, item.staged_name, may_stay))
    return plan


def location_problems(job: ShellJobSpec) -> list[ConfigError]:
    """hdfs:// sources used in place whose URL cannot go into the AM's environment as it is."""
    assert job.cluster is not None
    problems = []
    for planned in staging_plan(job, "application_0_0000", "/"):
        if planned.in_place and planned.source is not None:
            try:
                ds.command_word(planned.uri(job.cluster.default_fs), "HDFS location")
            except ds.UnsafeValue as error:
                problems.append(at("spec", f"{planned.source.describe()}: {error}"))
    return problems


def _planned(name: str, type_: str, role: str, source: Source, directory: str, staged_name: str,
             may_stay: bool) -> PlannedFile:
    if source.kind == "hdfs" and may_stay:
        return PlannedFile(name, type_, role, urlsplit(source.url or "").path, source, True)
    return PlannedFile(name, type_, role, posixpath.join(directory, staged_name), source, False)


def hdfs_uri(default_fs: str, path: str) -> str:
    return default_fs.rstrip("/") + path


def submission_context(
    job: ShellJobSpec, application_id: str, home: str, staged: Sequence[ds.StagedFile],
    roles: Mapping[str, str], credentials: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The application-submission-context; `roles` maps each staged file's name to its role.

    `credentials`: alias -> delegation token (URL-safe encoded), handed to the ApplicationMaster.
    """
    by_role: dict[str, list[ds.StagedFile]] = {AM_ROLE: [], SCRIPT_ROLE: [], WORKER_ROLE: []}
    for item in staged:
        by_role[roles[item.name]].append(item)
    workers = by_role[WORKER_ROLE]
    launch = ds.WorkerLaunch(
        script=by_role[SCRIPT_ROLE][0],
        files=[item for item in workers if item.type == "FILE"],
        archives=[item for item in workers if item.type == "ARCHIVE"],
        memory_mb=job.resources.memory_mb,
        vcores=job.resources.vcores,
        containers=job.containers,
        priority=job.priority,
        app_name=job.app_name,
        home=home,
    )
    kind = job.application_master.kind
    am_spec: dict[str, Any] = {
        "local-resources": _entries({item.name: _local_resource(item) for item in by_role[AM_ROLE]}),
        "environment": _entries(ds.am_environment(kind, launch)),
        "commands": {"command": ds.am_command(kind, job.application_master.main_class, job.master.memory_mb,
                                              launch)},
    }
    if credentials:
        # CredentialsInfo's tokens and secrets are maps, sent like every map of the API.
        am_spec["credentials"] = {"tokens": _entries(credentials), "secrets": _entries({})}
    context: dict[str, Any] = {
        "application-id": application_id,
        "application-name": job.app_name,
        "application-type": APPLICATION_TYPE,
        "queue": job.queue,
        "priority": job.priority,
        "am-container-spec": am_spec,
        "unmanaged-AM": False,
        "max-app-attempts": job.max_app_attempts,
        "resource": {"memory": job.master.memory_mb, "vCores": job.master.vcores},
        "keep-containers-across-application-attempts": False,
    }
    if credentials:
        # The tokens come from the user's Secret and serve later jobs too: the RM must not cancel
        # them when this application ends (the REST default is true).
        context["cancel-tokens-when-complete"] = False
    if job.tags:
        context["application-tags"] = {"tag": list(job.tags)}
    if job.node_label_expression is not None:
        context["app-node-label-expression"] = job.node_label_expression
    return context


def _local_resource(item: ds.StagedFile) -> dict[str, Any]:
    return {"resource": item.uri, "type": item.type, "visibility": "APPLICATION",
            "size": item.size, "timestamp": item.timestamp}


def _entries(mapping: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {"entry": [{"key": key, "value": value} for key, value in mapping.items()]}
