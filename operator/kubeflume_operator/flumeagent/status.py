"""What a FlumeAgent's status says: phase, replicas, conditions and event counters.

Replica counts come from the workload's own status; event counters are scraped from each ready
pod's metrics endpoint (Flume's JSON, values as strings) and summed. The counters are those of the
pods running now: they restart from zero with a pod, exactly like Flume's. A pod that does not
answer is listed in `unreachablePods`; it never fails the status update.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from kubeflume_operator import conditions
from kubeflume_operator.flumeagent.resources import CONFIG_HASH_ANNOTATION

PENDING = "Pending"
PROGRESSING = "Progressing"
RUNNING = "Running"
DEGRADED = "Degraded"
INVALID = "Invalid"

CONFIG_VALID = "ConfigValid"
AVAILABLE = "Available"
PROGRESSING_CONDITION = "Progressing"

SCRAPE_TIMEOUT = 5.0


@dataclass(frozen=True)
class PodView:
    """The little the status needs to know about one agent pod."""

    name: str
    ip: str | None
    ready: bool

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodView:
        status = pod.get("status") or {}
        ready = conditions.is_true(status.get("conditions"), "Ready")
        deleting = bool(pod.get("metadata", {}).get("deletionTimestamp"))
        return cls(pod["metadata"]["name"], status.get("podIP"), ready and not deleting)


@dataclass(frozen=True)
class Rollout:
    """A workload's progress as its controller reports it, the same way for the three kinds.

    Only the controller's status counts: pods a Deployment created but that never ran are
    `updated` and not `ready`, so such a rollout is not complete.
    """

    kind: str
    desired: int
    ready: int
    available: int
    updated: int
    current: bool  # the workload controller has seen the latest spec (observedGeneration)
    surplus: bool  # pods of an older template are still around
    config_hash: str | None = None  # the config hash on the workload's pod template

    @classmethod
    def of(cls, workload: Mapping[str, Any], kind: str) -> Rollout:
        status = workload.get("status") or {}
        generation = workload.get("metadata", {}).get("generation")
        observed = status.get("observedGeneration")
        current = generation is None or (observed is not None and observed >= generation)
        template = ((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}
        config_hash = (template.get("annotations") or {}).get(CONFIG_HASH_ANNOTATION)
        if kind == "DaemonSet":
            desired = status.get("desiredNumberScheduled", 0)
            return cls(kind, desired, status.get("numberReady", 0), status.get("numberAvailable", 0),
                       status.get("updatedNumberScheduled", 0), current,
                       status.get("currentNumberScheduled", 0) > desired, config_hash)
        desired = (workload.get("spec") or {}).get("replicas", 1)
        return cls(kind, desired, status.get("readyReplicas", 0), status.get("availableReplicas", 0),
                   status.get("updatedReplicas", 0), current, status.get("replicas", 0) > desired, config_hash)

    def runs(self, config_hash: str | None) -> bool:
        """Every wanted pod has the pod template of `config_hash`, and no older pod is left."""
        same_config = config_hash is None or self.config_hash == config_hash
        return same_config and self.current and self.updated >= self.desired and not self.surplus

    @property
    def all_ready(self) -> bool:
        return self.ready >= self.desired and self.available >= self.desired

    def complete(self, config_hash: str | None) -> bool:
        """Updated, ready and available pods all number the desired count, at the current spec."""
        return self.runs(config_hash) and self.all_ready


def completed(existing: Iterable[Mapping[str, Any]] | None, generation: int | None) -> bool:
    """The rollout of this generation was complete once (Progressing=False, RolloutComplete)."""
    found = conditions.find(existing, PROGRESSING_CONDITION)
    return (found is not None and found.get("status") == conditions.FALSE
            and found.get("reason") == "RolloutComplete" and found.get("observedGeneration") == generation)


def phase(config_valid: bool, rollout: Rollout | None, *, config_hash: str | None = None,
          was_complete: bool = False) -> str:
    if not config_valid:
        return INVALID
    if rollout is None:
        return PENDING
    if not rollout.runs(config_hash):
        return PROGRESSING
    if rollout.all_ready:
        return RUNNING
    if was_complete:
        return DEGRADED  # the rollout had completed; pods have lost readiness since
    return PENDING if rollout.ready == 0 else PROGRESSING  # never came up (image pull, scheduling...)


def rollout_conditions(existing: Iterable[Mapping[str, Any]] | None, rollout: Rollout | None, *,
                       config_hash: str | None = None, generation: int | None = None) -> list[dict[str, Any]]:
    """`existing` with Available and Progressing set from the workload controller's status."""
    if rollout is None:
        updated = conditions.set_condition(existing, AVAILABLE, False, "WorkloadMissing",
                                           "the agent workload does not exist yet")
        return conditions.set_condition(updated, PROGRESSING_CONDITION, True, "Creating",
                                        "waiting for the agent workload")
    ready = f"{rollout.ready}/{rollout.desired} agent pods ready"
    updated = conditions.set_condition(existing, AVAILABLE, rollout.all_ready,
                                       "AllReplicasReady" if rollout.all_ready else "ReplicasNotReady", ready)
    if rollout.complete(config_hash):
        return conditions.set_condition(updated, PROGRESSING_CONDITION, False, "RolloutComplete",
                                        f"all {rollout.desired} agent pods run the current config and are ready",
                                        observed_generation=generation)
    if rollout.runs(config_hash) and completed(existing, generation):
        return updated  # complete before: losing readiness since is Available's (and Degraded's) news
    if not rollout.current or (config_hash is not None and rollout.config_hash != config_hash):
        message = f"the {rollout.kind} controller has not taken the current spec yet"
    else:
        message = f"{rollout.updated}/{rollout.desired} agent pods updated, {ready}"
    return conditions.set_condition(updated, PROGRESSING_CONDITION, True, "RollingOut", message)


@dataclass(frozen=True)
class Counters:
    received: int = 0
    accepted: int = 0
    delivered: int = 0
    channel_fill_percent: float = 0.0

    @classmethod
    def of(cls, reports: Iterable[Mapping[str, Mapping[str, str]]]) -> Counters:
        """Sums over pods and components of Flume's JSON reports; fill is the fullest channel."""
        received = accepted = delivered = 0
        fill = 0.0
        for report in reports:
            for component, values in report.items():
                kind = component.partition(".")[0]
                if kind == "SOURCE":
                    received += int(_number(values.get("EventReceivedCount")))
                    accepted += int(_number(values.get("EventAcceptedCount")))
                elif kind == "SINK":
                    delivered += int(_number(values.get("EventDrainSuccessCount")))
                elif kind == "CHANNEL":
                    fill = max(fill, _number(values.get("ChannelFillPercentage")))
        return cls(received, accepted, delivered, round(fill, 2))

    def as_status(self) -> dict[str, Any]:
        return {
            "eventsReceived": self.received,
            "eventsAccepted": self.accepted,
            "eventsDelivered": self.delivered,
            "channelFillPercent": self.channel_fill_percent,
        }


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


async def scrape(session: aiohttp.ClientSession, pod: PodView, port: int) -> Mapping[str, Mapping[str, str]]:
    host = f"[{pod.ip}]" if ":" in (pod.ip or "") else pod.ip  # IPv6 pod IPs
    async with session.get(f"http://{host}:{port}/metrics") as response:
        response.raise_for_status()
        report = await response.json(content_type=None)
    if not isinstance(report, Mapping):
        raise ValueError("the metrics endpoint did not answer with a JSON object")
    return report


async def scrape_pods(pods: Iterable[PodView], port: int,
                      timeout: float = SCRAPE_TIMEOUT) -> tuple[Counters, list[str]]:
    """Counters over the ready pods, and "pod: reason" for each pod that did not answer."""
    ready = [pod for pod in pods if pod.ready and pod.ip]
    if not ready:
        return Counters(), []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        results = await asyncio.gather(*(scrape(session, pod, port) for pod in ready), return_exceptions=True)
    reports = [result for result in results if not isinstance(result, BaseException)]
    unreachable = [f"{pod.name}: {_reason(result)}" for pod, result in zip(ready, results, strict=True)
                   if isinstance(result, BaseException)]
    return Counters.of(reports), sorted(unreachable)


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__
