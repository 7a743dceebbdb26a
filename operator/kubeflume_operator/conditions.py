"""Kubernetes-style status conditions (type, status, reason, message, lastTransitionTime).

`lastTransitionTime` changes only when a condition's status flips, so `kubectl wait
--for=condition=X` and dashboards see real transitions, not every reconciliation.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

TRUE = "True"
FALSE = "False"
UNKNOWN = "Unknown"


def now() -> str:
    """The current time as Kubernetes writes timestamps (RFC 3339, UTC, seconds)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_status(value: bool | str) -> str:
    if isinstance(value, bool):
        return TRUE if value else FALSE
    return value


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    condition = find(conditions, type_)
    return condition is not None and condition.get("status") == TRUE


def set_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str = "",
    *,
    observed_generation: int | None = None,
    timestamp: str | None = None,
) -> list[dict[str, Any]]:
    """A new condition list with `type_` set; other conditions keep their order and content."""
    status = as_status(status)
    previous = find(conditions, type_)
    transitioned = previous is None or previous.get("status") != status
    condition: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (timestamp or now()) if transitioned or previous is None
        else previous["lastTransitionTime"],
    }
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    updated = [dict(c) if c.get("type") != type_ else condition for c in conditions or ()]
    if previous is None:
        updated.append(condition)
    return updated
