"""FlumeAgent reconciliation with kopf.

On create, update and operator start (resume): parse the spec with the agent's own config
model, validate it, and either report every problem (children untouched) or render and apply
the children. A timer keeps the status current from in-memory indexes of the agent workloads
and pods (no API calls) plus each ready pod's metrics endpoint. Deletion is the garbage
collector's job: every child carries an owner reference to its FlumeAgent; only the cluster-scoped
RBAC of an agent that reads pods (see resources.py) is deleted here, behind a finalizer that only
such agents get.

Conditions and the phase are written as patch functions: kopf applies them to the freshest
object with a resourceVersion check, so the reconciler and the timer never undo each other.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from kubeflume_agent.config.manifest import parse_manifest
from kubeflume_agent.config.model import ConfigError
from kubeflume_operator import GROUP, VERSION, conditions, kube
from kubeflume_operator.context import OperatorContext
from kubeflume_operator.flumeagent import drain, resources
from kubeflume_operator.flumeagent import status as agent_status
from kubeflume_operator.problems import describe, describe_all
from kubeflume_operator.validation import flumeagent_verdict

FLUMEAGENTS = (GROUP, VERSION, "flumeagents")
MANAGED: dict[str, Any] = {resources.MANAGED_BY_LABEL: resources.MANAGED_BY, resources.INSTANCE_LABEL: kopf.PRESENT}
WORKLOAD_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}


def register(registry: kopf.OperatorRegistry, *, context: OperatorContext) -> None:
    """The FlumeAgent handlers, each given the operator's context; the status timer runs at its interval."""
    kopf.index("pods", labels=MANAGED, registry=registry)(agent_pods)
    for kind, plural in WORKLOAD_PLURALS.items():
        kopf.index("apps", "v1", plural, id=f"agent_{plural}", param=kind, labels=MANAGED,
                   registry=registry)(index_rollout)
    with_context = functools.partial(reconcile, context=context)
    for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on(*FLUMEAGENTS, registry=registry)(with_context)
    kopf.on.delete(*FLUMEAGENTS, when=reads_pods, registry=registry)(
        functools.partial(remove_cluster_objects, context=context))
    kopf.timer(*FLUMEAGENTS, interval=context.settings.status_interval, registry=registry)(
        functools.partial(refresh_status, context=context))


def agent_pods(*, namespace: str | None, labels: Mapping[str, str], body: kopf.Body,
               **_: Any) -> dict[tuple[str | None, str], agent_status.PodView]:
    return {(namespace, labels[resources.INSTANCE_LABEL]): agent_status.PodView.of(body)}


def index_rollout(*, namespace: str | None, labels: Mapping[str, str], body: kopf.Body, param: str = "",
                  **_: Any) -> dict[tuple[str | None, str], agent_status.Rollout]:
    return {(namespace, labels[resources.INSTANCE_LABEL]): agent_status.Rollout.of(body, param)}


def reconcile(body: kopf.Body, meta: kopf.Meta, spec: kopf.Spec, patch: kopf.Patch, *,
              context: OperatorContext, **_: Any) -> None:
    verdict = flumeagent_verdict(body)
    generation = meta.get("generation")
    if verdict.errors:
        report_invalid(body, patch, verdict.errors, generation)
        return
    assert verdict.config is not None
    rendered = resources.render(body, verdict.config, image=context.settings.agent_image)
    try:
        if drain.has_claims(rendered):
            # a scale-up cancels drains before pods come back
            drain_pass(body, context=context).run(verdict.config, rendered)
        changes = apply_children(body, rendered, objects=context.objects)
    except (kube.NotOwned, ApiException) as error:
        message = error.body if isinstance(error, ApiException) else str(error)
        kopf.warn(body, reason="ApplyFailed", message=str(message))
        raise kopf.TemporaryError(f"cannot apply the agent's objects: {message}", delay=60) from error
    workload = rendered.workload
    patch.status.update(
        configHash=rendered.config_hash,
        observedGeneration=generation,
        workload=f"{workload['kind']}/{workload['metadata']['name']}",
        selector=",".join(f"{key}={value}" for key, value in resources.selector_labels(meta["name"]).items()),
        endpoints=resources.endpoints(body, rendered.ports),
    )
    warnings = [describe(problem) for problem in verdict.warnings]
    message = f"config {rendered.config_hash} is valid" + (f" ({'; '.join(warnings)})" if warnings else "")
    patch.fns.append(functools.partial(record_verdict, valid=True, reason="Valid", message=message,
                                       generation=generation))
    if changes:
        kopf.info(body, reason="Applied", message=f"config {rendered.config_hash}: {', '.join(changes)}")
    for note in rendered.notes + warnings:
        kopf.warn(body, reason="ConfigWarning", message=note)


def reads_pods(body: kopf.Body, **_: Any) -> bool:
    """Whether the agent uses the kubernetes interceptor (so it has cluster-scoped RBAC to remove)."""
    verdict = flumeagent_verdict(body)
    return verdict.config is not None and resources.reads_pods(verdict.config)


def remove_cluster_objects(name: str, namespace: str, *, context: OperatorContext, **_: Any) -> None:
    """The FlumeAgent is being deleted: its ClusterRole and binding go with it."""
    delete_cluster_objects(name, namespace, objects=context.objects)


def delete_cluster_objects(name: str, namespace: str, *, objects: kube.ObjectStore) -> list[str]:
    """Delete the agent's cluster-scoped objects, if there are any; what was deleted."""
    ours = {resources.INSTANCE_LABEL: name, resources.AGENT_NAMESPACE_LABEL: namespace}
    cluster_name = resources.cluster_object_name(namespace, name)
    return [f"{kind} {cluster_name} deleted" for kind in reversed(resources.CLUSTER_KINDS)
            if objects.delete_labelled(kind, cluster_name, ours)]


def report_invalid(body: kopf.Body, patch: kopf.Patch, errors: list[ConfigError], generation: int | None) -> None:
    """Every problem in the condition and in one Warning Event; the running agents stay as they are."""
    message = f"{len(errors)} problem(s): {describe_all(errors)}"
    patch.status["observedGeneration"] = generation
    patch.fns.append(functools.partial(record_verdict, valid=False, reason="InvalidConfig", message=message,
                                       generation=generation))
    kopf.warn(body, reason="InvalidConfig", message=f"{message} (running agents left unchanged)")


def apply_children(body: kopf.Body, rendered: resources.AgentResources, *, objects: kube.ObjectStore) -> list[str]:
    """Apply the rendered children and remove the ones this config no longer needs."""
    changes = []
    for child in rendered.children + rendered.cluster_objects:
        outcome = objects.apply(child)
        if outcome != kube.UNCHANGED:
            changes.append(f"{child['kind']} {child['metadata']['name']} {outcome}")
    name, namespace, uid = body["metadata"]["name"], body["metadata"]["namespace"], body["metadata"]["uid"]
    if not rendered.cluster_objects:
        changes += delete_cluster_objects(name, namespace, objects=objects)
    if rendered.service_account is None and objects.delete_owned("ServiceAccount", namespace, f"{name}-agent", uid):
        changes.append(f"ServiceAccount {name}-agent deleted")
    stale = [kind for kind in resources.WORKLOAD_KINDS if kind != rendered.workload["kind"]]
    if rendered.service is None:
        stale.append("Service")
    if rendered.disruption_budget is None:
        stale.append("PodDisruptionBudget")
    changes += [f"{kind} {name} deleted" for kind in stale if objects.delete_owned(kind, namespace, name, uid)]
    return changes


def record_verdict(body: dict[str, Any], *, valid: bool, reason: str, message: str,
                   generation: int | None) -> None:
    """Patch function: the ConfigValid condition, and the phase it implies."""
    status = body.setdefault("status", {})
    status["conditions"] = conditions.set_condition(
        status.get("conditions"), agent_status.CONFIG_VALID, valid, reason, message,
        observed_generation=generation,
    )
    if not valid:
        status["phase"] = agent_status.INVALID
    elif status.get("phase") in (None, agent_status.INVALID):
        status["phase"] = agent_status.PROGRESSING


async def refresh_status(
    body: kopf.Body, name: str, namespace: str, spec: kopf.Spec, status: kopf.Status, patch: kopf.Patch,
    agent_pods: kopf.Index, agent_deployments: kopf.Index, agent_statefulsets: kopf.Index,
    agent_daemonsets: kopf.Index, *, context: OperatorContext, **_: Any,
) -> None:
    key = (namespace, name)
    workload_indexes = {"Deployment": agent_deployments, "StatefulSet": agent_statefulsets,
                        "DaemonSet": agent_daemonsets}
    kind = str(status.get("workload", "")).partition("/")[0]
    rollout = next(iter(workload_indexes[kind].get(key, ())), None) if kind in workload_indexes else None
    if rollout is None and kind and conditions.is_true(status.get("conditions"), agent_status.CONFIG_VALID):
        await asyncio.to_thread(restore_children, body, context=context)
    counters, unreachable = await agent_status.scrape_pods(agent_pods.get(key, ()), resources.metrics_port(spec))
    observed = {
        "replicas": rollout.desired if rollout else 0,
        "readyReplicas": rollout.ready if rollout else 0,
        **counters.as_status(),
        "unreachablePods": unreachable,
    }
    for field, value in observed.items():
        if status.get(field) != value:
            patch.status[field] = value
    patch.fns.append(functools.partial(record_rollout, rollout=rollout))
    if kind == resources.STATEFULSET and conditions.is_true(status.get("conditions"), agent_status.CONFIG_VALID):
        entries = await asyncio.to_thread(run_drains, body, context=context)
        if entries is not None:
            if entries != (status.get("drains") or []):
                patch.status["drains"] = entries
            patch.fns.append(functools.partial(record_drains, entries=entries))


def run_drains(body: kopf.Body, *, context: OperatorContext) -> list[dict[str, Any]] | None:
    """The drains of a StatefulSet agent's removed claims (see drain.py), as status entries."""
    config = parse_manifest(body)
    rendered = resources.render(body, config, image=context.settings.agent_image)
    if not drain.has_claims(rendered):
        return None
    return drain_pass(body, context=context).run(config, rendered)


def drain_pass(body: kopf.Body, *, context: OperatorContext) -> drain.DrainPass:
    return drain.DrainPass(body, core=context.core, batch=context.batch)


def record_drains(body: dict[str, Any], *, entries: list[dict[str, Any]]) -> None:
    """Patch function: the Draining condition."""
    status = body.setdefault("status", {})
    status["conditions"] = drain.draining_condition(status.get("conditions"), entries)


def restore_children(body: kopf.Body, *, context: OperatorContext) -> None:
    """The workload went away behind our back (deleted by hand, say): apply the children again."""
    config = parse_manifest(body)
    rendered = resources.render(body, config, image=context.settings.agent_image)
    changes = apply_children(body, rendered, objects=context.objects)
    if changes:
        kopf.warn(body, reason="Restored", message=f"recreated what was missing: {', '.join(changes)}")


def record_rollout(body: dict[str, Any], *, rollout: agent_status.Rollout | None) -> None:
    """Patch function: Available, Progressing and the phase, from the workload controller's status."""
    status = body.setdefault("status", {})
    config_hash, generation = status.get("configHash"), status.get("observedGeneration")
    status["conditions"] = agent_status.rollout_conditions(status.get("conditions"), rollout,
                                                           config_hash=config_hash, generation=generation)
    valid = not conditions.find(status["conditions"], agent_status.CONFIG_VALID) or conditions.is_true(
        status["conditions"], agent_status.CONFIG_VALID)
    status["phase"] = agent_status.phase(valid, rollout, config_hash=config_hash,
                                         was_complete=agent_status.completed(status["conditions"], generation))
