"""Drain on scale-down: the claims of a StatefulSet's removed pods are emptied before they go.

A StatefulSet scaled down keeps the claims of its removed ordinals (the operator renders it with
`whenScaled: Retain`), and what their file channels hold would never be sent. For each such
claim, once its pod is gone, the operator creates a Job (owned by the FlumeAgent) that runs the
same config with `kubeflume-agent --drain` on that claim. When the Job succeeds (exit 0: every
channel empty) the claim is deleted, or kept with `spec.drain.deleteClaims: false`; a claim
whose drain failed is always kept. Scaling up again before a drain ends deletes its Job, and the
ordinal's pod gets its claim back, events and all.

The drain agent writes its JSON report (what the channels held, what the sinks delivered) to its
termination message; the operator copies it onto the Job (an annotation, so it outlives the pod)
and into `status.drains`. `plan()` and `render_job()` are pure; `DrainPass` does the API calls.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException

from kubeflume_agent.config.model import AgentConfig
from kubeflume_operator import GROUP, conditions
from kubeflume_operator.flumeagent import resources

DRAIN_OF_LABEL = f"{GROUP}/drain-of"  # on drain Jobs and their pods: the FlumeAgent they drain
ORDINAL_ANNOTATION = f"{GROUP}/drain-ordinal"
CLAIM_ANNOTATION = f"{GROUP}/drain-claim"
REPORT_ANNOTATION = f"{GROUP}/drain-report"
CLAIM_DELETED_ANNOTATION = f"{GROUP}/claim-deleted"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods
TERMINATION_LOG = "/dev/termination-log"
DEFAULT_TIMEOUT_SECONDS = 300
DEFAULT_BACKOFF_LIMIT = 2
DRAINING = "Draining"

WAITING, RUNNING, SUCCEEDED, FAILED = "Waiting", "Running", "Succeeded", "Failed"


def claim_name(agent: str, ordinal: int) -> str:
    """The claim a StatefulSet made for `ordinal` from the `data` volumeClaimTemplate."""
    return f"{resources.DATA_VOLUME}-{agent}-{ordinal}"


def job_name(agent: str, ordinal: int) -> str:
    return f"{agent}-drain-{ordinal}"


def claim_ordinal(agent: str, claim: str) -> int | None:
    found = re.fullmatch(rf"{re.escape(resources.DATA_VOLUME)}-{re.escape(agent)}-(\d+)", claim)
    return int(found.group(1)) if found else None


def pod_ordinal(agent: str, pod: str) -> int | None:
    found = re.fullmatch(rf"{re.escape(agent)}-(\d+)", pod)
    return int(found.group(1)) if found else None


def has_claims(rendered: resources.AgentResources) -> bool:
    """A StatefulSet whose pods keep their state on claims: the only workload drains are for."""
    return "volumeClaimTemplates" in rendered.workload["spec"]


def drain_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    asked = spec.get("drain", {})
    return {
        "enabled": asked.get("enabled", True),
        "delete_claims": asked.get("deleteClaims", True),
        "timeout": int(asked.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)),
        "backoff_limit": int(asked.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)),
    }


@dataclass(frozen=True)
class DrainJob:
    """What the operator needs to know about one drain Job."""

    name: str
    ordinal: int
    claim: str
    phase: str  # RUNNING, SUCCEEDED or FAILED
    report: Mapping[str, Any] | None
    claim_deleted: bool

    @classmethod
    def of(cls, job: Mapping[str, Any]) -> DrainJob:
        annotations = job["metadata"].get("annotations") or {}
        finished = {c.get("type") for c in (job.get("status") or {}).get("conditions") or ()
                    if c.get("status") == conditions.TRUE}
        phase = SUCCEEDED if "Complete" in finished else FAILED if "Failed" in finished else RUNNING
        report = json.loads(annotations[REPORT_ANNOTATION]) if REPORT_ANNOTATION in annotations else None
        return cls(job["metadata"]["name"], int(annotations[ORDINAL_ANNOTATION]), annotations[CLAIM_ANNOTATION],
                   phase, report, annotations.get(CLAIM_DELETED_ANNOTATION) == "true")


@dataclass(frozen=True)
class Observed:
    replicas: int
    claims: dict[int, str]  # ordinal -> claim name, claims not being deleted
    pods: set[int]  # ordinals that still have a pod
    jobs: dict[int, DrainJob]


@dataclass
class Plan:
    start: list[int] = field(default_factory=list)  # ordinals whose claim gets a drain Job now
    waiting: list[int] = field(default_factory=list)  # removed ordinals whose pod still stops
    cancel: list[DrainJob] = field(default_factory=list)  # ordinals back in service
    delete_claims: list[DrainJob] = field(default_factory=list)  # drained: the claim may go


def plan(observed: Observed, *, delete_claims: bool) -> Plan:
    """What to do now. A claim is only ever deleted after its Job succeeded, for an ordinal that is
    still removed and has no pod."""
    result = Plan()
    for ordinal, existing in observed.jobs.items():
        if ordinal < observed.replicas:
            result.cancel.append(existing)
    for ordinal in sorted(observed.claims):
        if ordinal < observed.replicas:
            continue
        job = observed.jobs.get(ordinal)
        if job is None:
            (result.waiting if ordinal in observed.pods else result.start).append(ordinal)
        elif job.phase == SUCCEEDED and delete_claims and ordinal not in observed.pods:
            result.delete_claims.append(job)
    return result


def render_job(agent: Mapping[str, Any], config: AgentConfig, rendered: resources.AgentResources, ordinal: int,
               *, timeout: int, backoff_limit: int) -> dict[str, Any]:
    """The Job draining `ordinal`'s claim: the agent pod's template, the claim as its `data` volume,
    `--drain` instead of serving, and labels no Service or budget of the agent selects."""
    name, namespace = agent["metadata"]["name"], agent["metadata"]["namespace"]
    template = copy.deepcopy(rendered.workload["spec"]["template"])
    pod = template["spec"]
    container = pod["containers"][0]
    for serving_only in ("ports", "readinessProbe", "livenessProbe", "lifecycle"):
        container.pop(serving_only, None)
    container["args"] = ["-n", config.name, "-f", f"{resources.CONFIG_DIR}/{resources.CONFIG_FILE}", "--drain",
                         "--drain-timeout", str(timeout), "--drain-report", TERMINATION_LOG, "--no-metrics"]
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    claim = claim_name(name, ordinal)
    pod["volumes"].append({"name": resources.DATA_VOLUME, "persistentVolumeClaim": {"claimName": claim}})
    pod["restartPolicy"] = "Never"
    labels = drain_labels(name)
    template["metadata"] = {"labels": {**template["metadata"].get("labels", {}), **labels},
                            "annotations": {resources.CONFIG_HASH_ANNOTATION: rendered.config_hash}}
    for selected in resources.selector_labels(name):  # keep the pod out of the agent's Services and budget
        template["metadata"]["labels"].pop(selected, None)
    template["metadata"]["labels"].update(labels)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(name, ordinal), "namespace": namespace, "labels": labels,
                     "annotations": {ORDINAL_ANNOTATION: str(ordinal), CLAIM_ANNOTATION: claim}},
        "spec": {"backoffLimit": backoff_limit, "template": template},
    }
    kopf.append_owner_reference(job, owner=cast(kopf.Body, agent))  # kopf reads its metadata
    return job


def drain_labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "kubeflume-drain", "app.kubernetes.io/component": "drain",
            "app.kubernetes.io/part-of": "kubeflume", resources.MANAGED_BY_LABEL: resources.MANAGED_BY,
            DRAIN_OF_LABEL: name}


def status_entries(observed: Observed, planned: Plan, started: Mapping[int, str]) -> list[dict[str, Any]]:
    """`status.drains`: one entry per removed claim or drain Job, by ordinal."""
    entries = {ordinal: {"ordinal": ordinal, "claim": observed.claims[ordinal], "job": "", "phase": WAITING}
               for ordinal in planned.waiting}
    entries |= {ordinal: {"ordinal": ordinal, "claim": claim_name_of(observed, ordinal), "job": job,
                          "phase": RUNNING} for ordinal, job in started.items()}
    cancelled = {job.ordinal for job in planned.cancel}
    deleted = {job.ordinal for job in planned.delete_claims}
    for ordinal, job in observed.jobs.items():
        if ordinal in cancelled:
            continue
        entry = {"ordinal": ordinal, "claim": job.claim, "job": job.name, "phase": job.phase,
                 "claimDeleted": job.claim_deleted or ordinal in deleted}
        report = job.report or {}
        entry |= {key: report[key] for key in ("held", "delivered", "left") if key in report}
        if job.phase == FAILED:
            entry["reason"] = report.get("reason") or "the drain Job failed"
        entries[ordinal] = entry
    return [entries[ordinal] for ordinal in sorted(entries)]


def claim_name_of(observed: Observed, ordinal: int) -> str:
    return observed.claims.get(ordinal) or observed.jobs[ordinal].claim


def draining_condition(existing: list[dict[str, Any]] | None, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Draining condition: True while a claim waits for or runs its drain."""
    busy = [e for e in entries if e["phase"] in (WAITING, RUNNING)]
    failed = [e for e in entries if e["phase"] == FAILED]
    if busy:
        message = ", ".join(f"{e['claim']} ({e['phase'].lower()})" for e in busy)
        return conditions.set_condition(existing, DRAINING, True, "Draining", f"draining {message}")
    if failed:
        message = "; ".join(f"{e['claim']}: {e['reason']}" for e in failed)
        return conditions.set_condition(existing, DRAINING, False, "DrainFailed",
                                        f"claims kept, delete the Job to try again: {message}")
    return conditions.set_condition(existing, DRAINING, False, "Idle", "no claim waits for a drain")


class DrainPass:
    """One look at a FlumeAgent's claims and drain Jobs, and the API calls the plan asks for."""

    def __init__(self, agent: Mapping[str, Any], *, core: kubernetes.client.CoreV1Api,
                 batch: kubernetes.client.BatchV1Api) -> None:
        self.agent = agent
        self.name, self.namespace = agent["metadata"]["name"], agent["metadata"]["namespace"]
        self.core = core
        self.batch = batch

    def run(self, config: AgentConfig, rendered: resources.AgentResources) -> list[dict[str, Any]] | None:
        """Do what is due; the `status.drains` entries (None when draining is off)."""
        settings = drain_settings(self.agent.get("spec", {}))
        if not settings["enabled"]:
            return None
        observed = self.observe()
        planned = plan(observed, delete_claims=settings["delete_claims"])
        for job in planned.cancel:
            self.cancel(job)
        started = {ordinal: self.start(render_job(self.agent, config, rendered, ordinal, timeout=settings["timeout"],
                                                  backoff_limit=settings["backoff_limit"]))
                   for ordinal in planned.start}
        for job in planned.delete_claims:
            self.delete_claim(job)
        return status_entries(observed, planned, started)

    def observe(self) -> Observed:
        replicas = resources.replicas(self.agent.get("spec", {}))
        jobs = {job.ordinal: job for job in map(DrainJob.of, self._list_jobs())}
        claims = self._claims()
        removed = any(ordinal >= replicas for ordinal in claims)
        pods = self._pod_ordinals() if removed else set()
        jobs = {ordinal: self._with_report(job) for ordinal, job in jobs.items()}
        return Observed(replicas, claims, pods, jobs)

    def start(self, job: Mapping[str, Any]) -> str:
        name = job["metadata"]["name"]
        try:
            self.batch.create_namespaced_job(self.namespace, cast(Any, job))  # the client sends a dict as it is
        except ApiException as error:
            if error.status != 409:  # already there: a pass that raced this one made it
                raise
            return name
        self._event(reason="DrainStarted",
                    message=f"Job {name} drains claim {job['metadata']['annotations'][CLAIM_ANNOTATION]}")
        return name

    def cancel(self, job: DrainJob) -> None:
        """The ordinal is back: its pod gets the claim, with whatever the drain did not deliver."""
        self._ignore_missing(self.batch.delete_namespaced_job, job.name, self.namespace,
                             propagation_policy="Background")
        if job.phase == RUNNING:
            self._event(reason="DrainCancelled",
                        message=f"ordinal {job.ordinal} is back: Job {job.name} deleted, claim {job.claim} kept")

    def delete_claim(self, job: DrainJob) -> None:
        self._ignore_missing(self.core.delete_namespaced_persistent_volume_claim, job.claim, self.namespace)
        self._annotate(job.name, {CLAIM_DELETED_ANNOTATION: "true"})
        self._event(reason="ClaimDeleted", message=f"claim {job.claim} deleted: Job {job.name} drained it")

    def _event(self, reason: str, message: str) -> None:
        kopf.info(cast(kopf.Body, self.agent), reason=reason, message=message)  # kopf reads its metadata

    def _event_warning(self, reason: str, message: str) -> None:
        kopf.warn(cast(kopf.Body, self.agent), reason=reason, message=message)

    # --- reads ---------------------------------------------------------------------------------

    def _list_jobs(self) -> list[dict[str, Any]]:
        response = self.batch.list_namespaced_job(self.namespace, label_selector=f"{DRAIN_OF_LABEL}={self.name}",
                                                  _preload_content=False)
        return _items(response)

    def _claims(self) -> dict[int, str]:
        selector = ",".join(f"{k}={v}" for k, v in resources.selector_labels(self.name).items())
        response = self.core.list_namespaced_persistent_volume_claim(self.namespace, label_selector=selector,
                                                                     _preload_content=False)
        claims = {}
        for claim in _items(response):
            ordinal = claim_ordinal(self.name, claim["metadata"]["name"])
            if ordinal is not None and not claim["metadata"].get("deletionTimestamp"):
                claims[ordinal] = claim["metadata"]["name"]
        return claims

    def _pod_ordinals(self) -> set[int]:
        selector = ",".join(f"{k}={v}" for k, v in resources.selector_labels(self.name).items())
        response = self.core.list_namespaced_pod(self.namespace, label_selector=selector, _preload_content=False)
        names = (pod["metadata"]["name"] for pod in _items(response))
        return {ordinal for ordinal in (pod_ordinal(self.name, n) for n in names) if ordinal is not None}

    def _with_report(self, job: DrainJob) -> DrainJob:
        """A finished Job's report, read once from its pod's termination message and kept on the Job."""
        if job.phase == RUNNING or job.report is not None:
            return job
        report = self._pod_report(job.name)
        self._annotate(job.name, {REPORT_ANNOTATION: json.dumps(report, separators=(",", ":"))})
        if job.phase == FAILED:
            self._event_warning(reason="DrainFailed",
                                message=f"Job {job.name}: {report.get('reason') or 'failed'}; claim {job.claim} kept")
        else:
            self._event(reason="DrainSucceeded",
                        message=f"Job {job.name}: {report.get('delivered', '?')} events delivered from {job.claim}")
        return DrainJob(job.name, job.ordinal, job.claim, job.phase, report, job.claim_deleted)

    def _pod_report(self, job: str) -> dict[str, Any]:
        response = self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_NAME_LABEL}={job}",
                                                 _preload_content=False)
        pods = sorted(_items(response), key=lambda p: p["metadata"].get("creationTimestamp", ""))
        for pod in reversed(pods):
            for status in (pod.get("status") or {}).get("containerStatuses") or ():
                message = ((status.get("state") or {}).get("terminated") or {}).get("message")
                report = _parse_report(message)
                if report is not None:
                    return report
        return {}

    # --- writes --------------------------------------------------------------------------------

    def _annotate(self, job: str, annotations: Mapping[str, str]) -> None:
        self._ignore_missing(self.batch.patch_namespaced_job, job, self.namespace,
                             {"metadata": {"annotations": dict(annotations)}})

    @staticmethod
    def _ignore_missing(call, *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except ApiException as error:
            if error.status != 404:
                raise


def _parse_report(message: str | None) -> dict[str, Any] | None:
    """The drain agent's JSON report: the message itself, or its last line (logs as a fallback)."""
    if not message:
        return None
    try:
        report = json.loads(message.strip().splitlines()[-1])
    except ValueError:
        return None
    return report if isinstance(report, dict) and "drained" in report else None


def _items(response: Any) -> list[dict[str, Any]]:
    """The items of a list call made with _preload_content=False (the raw JSON, no model objects)."""
    return json.loads(response.data)["items"]
