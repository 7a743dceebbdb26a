"""Where a ShellJob's YARN application lives, recorded in the status when the application is created.

Killing an application and removing its staging directory must not depend on the spec: by then the
spec may name another cluster, user, token Secret or applicationName, or be invalid. So the same
status write that stores `applicationId` stores `cluster` (the ResourceManagers, WebHDFS, user and
token Secret it was created with) and `stagingDirectory`. A status written by an older operator
has neither; only then is the spec the guide (and it may give none).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeflume_operator.shelljob.spec import Cluster, SpecError, parse_spec

CLUSTER_FIELD = "cluster"
STAGING_FIELD = "stagingDirectory"


@dataclass(frozen=True)
class Placement:
    """One application's cluster and staging directory."""

    application_id: str
    cluster: Cluster
    # None (an older status): <home>/<app_name>/<application_id>, the home asked of WebHDFS.
    staging_directory: str | None
    app_name: str = ""


def record(cluster: Cluster, directory: str) -> dict[str, Any]:
    """The status fields written together with the application id."""
    fields = {"resourceManagers": list(cluster.resource_managers), "webhdfs": list(cluster.webhdfs),
              "defaultFS": cluster.default_fs, "user": cluster.user,
              "delegationTokenSecret": cluster.token_secret}
    return {CLUSTER_FIELD: {key: value for key, value in fields.items() if value is not None},
            STAGING_FIELD: directory}


def locate(status: Mapping[str, Any], spec: Mapping[str, Any], name: str) -> Placement | None:
    """Where the status's application is: as recorded, else as the spec says; None when neither tells."""
    application_id = status.get("applicationId")
    if not application_id:
        return None
    return _recorded(application_id, status) or _from_spec(application_id, spec, name)


def _recorded(application_id: str, status: Mapping[str, Any]) -> Placement | None:
    cluster, directory = status.get(CLUSTER_FIELD), status.get(STAGING_FIELD)
    if not isinstance(cluster, Mapping) or not isinstance(directory, str):
        return None
    # The directory is deleted recursively: it must be this application's, nothing above it.
    if posixpath.basename(directory) != application_id or posixpath.normpath(directory) != directory \
            or not directory.startswith("/"):
        return None
    resource_managers, webhdfs = _urls(cluster.get("resourceManagers")), _urls(cluster.get("webhdfs"))
    if not resource_managers or not webhdfs:
        return None
    return Placement(application_id, Cluster(
        resource_managers=resource_managers, webhdfs=webhdfs, default_fs=str(cluster.get("defaultFS") or ""),
        user=cluster.get("user"), token_secret=cluster.get("delegationTokenSecret"),
    ), directory)


def _from_spec(application_id: str, spec: Mapping[str, Any], name: str) -> Placement | None:
    try:
        job = parse_spec(spec, name)
    except SpecError:
        return None
    cluster = job.cluster
    if cluster is None or not cluster.resource_managers or not cluster.webhdfs:
        return None
    return Placement(application_id, cluster, None, job.app_name)


def _urls(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(url, str) and url for url in value):
        return ()
    return tuple(value)
