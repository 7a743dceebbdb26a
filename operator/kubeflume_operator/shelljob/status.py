"""A ShellJob's status: the phase, YARN's own view beside it, and Kubernetes-style conditions.

Phases: Pending -> Staging -> Submitted -> Accepted -> Running -> Succeeded | Failed | Killed.
Succeeded means YARN said FINISHED with finalStatus SUCCEEDED and nothing else (what the
DistributedShell Client's monitorApplication counts as success).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubeflume_operator import conditions

PENDING = "Pending"
STAGING = "Staging"
SUBMITTED = "Submitted"
ACCEPTED = "Accepted"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
KILLED = "Killed"
TERMINAL = frozenset({SUCCEEDED, FAILED, KILLED})

# Conditions: Submitted (the ResourceManager has the application), Running, Complete, Failed.
SUBMITTED_CONDITION = "Submitted"
RUNNING_CONDITION = "Running"
COMPLETE_CONDITION = "Complete"
FAILED_CONDITION = "Failed"

_YARN_PHASES = {
    "NEW": SUBMITTED,
    "NEW_SAVING": SUBMITTED,
    "SUBMITTED": SUBMITTED,
    "ACCEPTED": ACCEPTED,
    "RUNNING": RUNNING,
    "FAILED": FAILED,
    "KILLED": KILLED,
}


def phase_of(state: str, final_status: str) -> str:
    """The phase for a YARN application state and final status."""
    if state == "FINISHED":
        return {"SUCCEEDED": SUCCEEDED, "KILLED": KILLED}.get(final_status, FAILED)
    return _YARN_PHASES.get(state, SUBMITTED)


def yarn_view(report: Mapping[str, Any]) -> dict[str, Any]:
    """The application report fields kept in status.yarn."""
    return {
        "state": report.get("state", ""),
        "finalStatus": report.get("finalStatus", ""),
        "progress": float(report.get("progress") or 0.0),
    }


def with_phase(
    status: Mapping[str, Any], phase: str, reason: str, message: str, generation: int | None,
    submitted: bool | None = None,
) -> dict[str, Any]:
    """The status fields that change with a phase: phase, conditions, completionTime."""
    found = status.get("conditions")
    if submitted is None:
        submitted = phase in (SUBMITTED, ACCEPTED, RUNNING) or conditions.is_true(found, SUBMITTED_CONDITION)
    states = {
        SUBMITTED_CONDITION: submitted,
        RUNNING_CONDITION: phase == RUNNING,
        COMPLETE_CONDITION: phase == SUCCEEDED,
        FAILED_CONDITION: phase in (FAILED, KILLED),
    }
    for type_, value in states.items():
        found = conditions.set_condition(found, type_, value, reason, message, observed_generation=generation)
    changed: dict[str, Any] = {"phase": phase, "conditions": found}
    if phase in TERMINAL and not status.get("completionTime"):
        changed["completionTime"] = conditions.now()
    return changed
