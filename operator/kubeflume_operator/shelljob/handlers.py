"""ShellJob reconciliation with kopf: a timer drives each job's YARN application; deletion kills it.

The timer runs for every ShellJob whose current generation has not ended yet. Each tick moves
the application one or more steps forward (see application.py) and writes the status straight
through the status subresource as each step completes, so that the application id is stored
before anything else happens. What this process wrote is also kept in the object's memo: the
next tick may start before the watch has delivered our own write, and must not act on stale
status (that is how a second application would be created).

A spec change (a new generation) first retires the previous generation's application, whatever
the new spec says or whether it is valid at all. Retiring and deleting (kopf's finalizer) kill a
running application, then remove its staging directory (a finished one is just cleaned up), on
the cluster recorded in the status with its id (placement.py), not the one the spec names now.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf
import kubernetes

from kubeflume_agent.protocols.webhdfs import WebHDFSError
from kubeflume_operator import GROUP, VERSION
from kubeflume_operator.context import OperatorContext
from kubeflume_operator.shelljob import placement
from kubeflume_operator.shelljob import status as job_status
from kubeflume_operator.shelljob.application import (
    ApplicationRun,
    JobRejected,
    Notify,
    check_runnable,
    connect,
    remove_application,
)
from kubeflume_operator.shelljob.sources import SourceUnavailable
from kubeflume_operator.shelljob.spec import SpecError, parse_spec
from kubeflume_operator.yarn.distributedshell import UnsafeValue
from kubeflume_operator.yarn.resourcemanager import ResourceManagerError

PLURAL = "shelljobs"
SHELLJOBS = (GROUP, VERSION, PLURAL)
MERGE_PATCH = "application/merge-patch+json"
EVENT_MESSAGE_LIMIT = 1000
CLUSTER_ERRORS = (ResourceManagerError, WebHDFSError, aiohttp.ClientError, TimeoutError)
PREVIOUS_GENERATION_FIELDS = ("applicationId", "trackingUrl", "amContainerLogs", "diagnostics", "yarn", "startTime",
                              "completionTime", "staged", placement.CLUSTER_FIELD, placement.STAGING_FIELD)
MEMO_KEY = "shelljob_status"
WARNING_MEMO_KEY = "shelljob_last_warning"


def register(registry: kopf.OperatorRegistry, *, context: OperatorContext) -> None:
    """The ShellJob handlers, each given the operator's context; the timer runs at the poll interval."""
    kopf.timer(*SHELLJOBS, interval=context.settings.shelljob_poll_interval, when=unfinished, registry=registry)(
        functools.partial(drive_application, context=context))
    kopf.on.delete(*SHELLJOBS, registry=registry)(functools.partial(remove, context=context))


def unfinished(meta: Mapping[str, Any], status: Mapping[str, Any], **_: Any) -> bool:
    """The current generation has no final phase yet."""
    return not (status.get("phase") in job_status.TERMINAL
                and status.get("observedGeneration") == meta.get("generation"))


class StatusWriter:
    """Merge-patches the status subresource at once, and remembers what it wrote."""

    def __init__(self, namespace: str, name: str, uid: str, memo: kopf.Memo, *,
                 api: kubernetes.client.CustomObjectsApi) -> None:
        self.namespace, self.name, self.uid = namespace, name, uid
        self.memo = memo
        self.api = api

    def current(self, status: Mapping[str, Any]) -> dict[str, Any]:
        """The status as the watch shows it, overlaid with this process's own later writes."""
        written = self.memo.get(MEMO_KEY)
        merged = dict(status)
        if written and written["uid"] == self.uid:
            merged.update(written["fields"])
        return {key: value for key, value in merged.items() if value is not None}

    async def record(self, fields: dict[str, Any]) -> None:
        await asyncio.to_thread(self.api.patch_namespaced_custom_object_status, GROUP, VERSION, self.namespace, PLURAL,
                                self.name, {"status": fields}, _content_type=MERGE_PATCH)
        written = self.memo.get(MEMO_KEY)
        if not written or written["uid"] != self.uid:
            written = self.memo[MEMO_KEY] = {"uid": self.uid, "fields": {}}
        written["fields"].update(fields)


def poster(body: kopf.Body) -> Notify:
    """Kubernetes Events about the ShellJob, through kopf's event queue."""

    def notify(event_type: str, reason: str, message: str) -> None:
        post = kopf.warn if event_type == "Warning" else kopf.info
        post(body, reason=reason, message=message[:EVENT_MESSAGE_LIMIT])
    return notify


async def drive_application(
    body: kopf.Body, name: str, namespace: str, uid: str, meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status,
    memo: kopf.Memo, *, context: OperatorContext, **_: Any,
) -> None:
    writer = StatusWriter(namespace, name, uid, memo, api=context.custom_objects)
    current = writer.current(status)
    generation = meta.get("generation")
    notify = poster(body)
    if current.get("phase") in job_status.TERMINAL and current.get("observedGeneration") == generation:
        return  # our own final write, not yet seen by the watch
    try:
        if current.get("applicationId") and current.get("observedGeneration") != generation:
            current = await retire_previous(spec, name, namespace, current, writer, notify, generation,
                                            core=context.core)
        job = parse_spec(spec, name)
        check_runnable(job)
        assert job.cluster is not None
        async with connect(job.cluster, namespace, core=context.core) as clients:
            run = ApplicationRun(job, namespace, generation, current, clients, writer.record, notify)
            await run.advance()
    except SpecError as error:
        await reject(writer, current, generation, "InvalidSpec", str(error), notify)
    except (JobRejected, UnsafeValue) as error:
        await reject(writer, current, generation, "Rejected", str(error), notify)
    except SourceUnavailable as error:
        await report_waiting(writer, current, generation, "SourceUnavailable", str(error), notify)
    except CLUSTER_ERRORS as error:
        await report_waiting(writer, current, generation, "ClusterUnavailable", describe_error(error), notify)


def describe_error(error: BaseException) -> str:
    """`Type: message`, the type named once (a Hadoop error's text may already start with it)."""
    text, kind = str(error), type(error).__name__
    return text if text.startswith(f"{kind}:") else f"{kind}: {text}"


async def reject(writer: StatusWriter, current: dict[str, Any], generation: int | None, reason: str,
                 message: str, notify: Notify) -> None:
    """The job cannot run as specified: Failed for this generation; a spec change tries again."""
    fields = {"observedGeneration": generation, "diagnostics": message,
              **job_status.with_phase(current, job_status.FAILED, reason, message, generation)}
    await writer.record(fields)
    notify("Warning", reason, message)


async def report_waiting(writer: StatusWriter, current: dict[str, Any], generation: int | None, reason: str,
                         message: str, notify: Notify) -> None:
    """Something needed is missing or unreachable: say so (once) and try again at the next tick.

    Before submission the status says it too (phase, conditions, diagnostics, and the generation
    it is about); afterwards the application keeps its phase. While a previous generation's
    application still waits to be retired, observedGeneration stays that application's.
    """
    phase = current.get("phase") or job_status.PENDING
    if current.get("observedGeneration") != generation:
        phase = job_status.PENDING
    changed = {"diagnostics": message, **job_status.with_phase(current, phase, reason, message, generation)}
    if not (current.get("applicationId") and current.get("observedGeneration") != generation):
        changed["observedGeneration"] = generation
    if phase in (job_status.PENDING, job_status.STAGING) and any(current.get(k) != v for k, v in changed.items()):
        await writer.record(changed)
    if writer.memo.get(WARNING_MEMO_KEY) != message:
        writer.memo[WARNING_MEMO_KEY] = message
        notify("Warning", reason, message)


async def retire_previous(spec: kopf.Spec, name: str, namespace: str, current: dict[str, Any],
                          writer: StatusWriter, notify: Notify, generation: int | None, *,
                          core: kubernetes.client.CoreV1Api) -> dict[str, Any]:
    """The spec changed: the previous generation's application is killed (if running) and cleaned up.

    Where it runs comes from the status, so this does not depend on the new spec. Only a status
    written by an older operator, with a spec that names no usable cluster, leaves it in place
    (and in the status, where a later spec or the deletion can still find it).
    """
    where = placement.locate(current, spec, name)
    if where is None:
        return current
    async with connect(where.cluster, namespace, core=core) as clients:
        done = await remove_application(where, current.get("phase"), clients)
    reset: dict[str, Any] = dict.fromkeys(PREVIOUS_GENERATION_FIELDS)
    reset.update(job_status.with_phase(current, job_status.PENDING, "SpecChanged",
                                       f"generation {generation}: {done}", generation, submitted=False))
    await writer.record(reset)
    notify("Normal", "SpecChanged", f"the spec changed (generation {generation}): {done}")
    return {key: value for key, value in {**current, **reset}.items() if value is not None}


async def remove(body: kopf.Body, name: str, namespace: str, uid: str, spec: kopf.Spec, status: kopf.Status,
                 memo: kopf.Memo, *, context: OperatorContext, **_: Any) -> None:
    current = StatusWriter(namespace, name, uid, memo, api=context.custom_objects).current(status)
    application_id = current.get("applicationId")
    if not application_id:
        return
    where = placement.locate(current, spec, name)
    if where is None:
        kopf.warn(body, reason="CleanupSkipped", message=f"the status records no cluster for application "
                  f"{application_id} (written by an older operator) and the spec is invalid or names none: "
                  "the application and its staging directory are left as they are")
        return
    try:
        async with connect(where.cluster, namespace, core=context.core) as clients:
            done = await remove_application(where, current.get("phase"), clients)
    except (*CLUSTER_ERRORS, SourceUnavailable) as error:
        kopf.warn(body, reason="CleanupFailed", message=describe_error(error))
        raise kopf.TemporaryError(f"cannot clean up application {application_id}: {error}", delay=10) from error
    kopf.info(body, reason="CleanedUp", message=done)
