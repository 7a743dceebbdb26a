"""The admission handler and the ValidatingWebhookConfiguration that sends requests to it.

The handler runs the operator's one validator (validation.problems_of, as `kubeflume validate`
and the reconcilers do): errors refuse the request with every problem at its field path;
warnings (keys Flume ignores) go back as admission warnings, which kubectl prints, and the object
is admitted. It reads nothing but the object, so it has no side effects and answers dry runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from kubeflume_operator import GROUP, VERSION
from kubeflume_operator.problems import describe
from kubeflume_operator.validation import problems_of, refusal

PLURALS = ("flumeagents", "shelljobs")
OPERATIONS: tuple[kopf.Operation, ...] = ("CREATE", "UPDATE")
FAILURE_POLICIES = ("Fail", "Ignore")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace
UNPROCESSABLE = 422


def handler_id(plural: str) -> str:
    """The handler's id, which is also its URL path on the webhook server (kopf routes by it)."""
    return f"validate-{plural}"


def review(body: kopf.Body, warnings: list[str], **_: Any) -> None:
    """Admit, with warnings, or refuse with every error."""
    verdict = problems_of(body)
    warnings.extend(describe(problem) for problem in verdict.warnings)
    if verdict.errors:
        name = body.get("metadata", {}).get("name") or body.get("metadata", {}).get("generateName", "")
        raise kopf.AdmissionError(refusal(str(body.get("kind")), str(name), verdict.errors), code=UNPROCESSABLE)


def register(registry: kopf.OperatorRegistry) -> None:
    for plural in PLURALS:
        kopf.on.validate(GROUP, VERSION, plural, id=handler_id(plural), operations=list(OPERATIONS),
                         side_effects=False, registry=registry)(review)


def webhooks(client_config: Mapping[str, Any], *, failure_policy: str, timeout_seconds: int,
             namespaces: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The `webhooks` of our ValidatingWebhookConfiguration: one per kind, on CREATE and UPDATE.

    `client_config` is a URL (local runs) or a Service reference (in a cluster), with its caBundle;
    each webhook's URL or path ends with its handler's id. `namespaces`: only these (else all).
    """
    selector = ({"matchExpressions": [{"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": list(namespaces)}]}
                if namespaces else {})
    return [{
        "name": f"{plural}.{GROUP}",
        "clientConfig": _with_path(client_config, handler_id(plural)),
        "rules": [{"apiGroups": [GROUP], "apiVersions": [VERSION], "resources": [plural],
                   "operations": list(OPERATIONS), "scope": "Namespaced"}],
        "failurePolicy": failure_policy,
        "matchPolicy": "Equivalent",
        "namespaceSelector": selector,
        "sideEffects": "None",
        "timeoutSeconds": timeout_seconds,
        "admissionReviewVersions": ["v1"],
    } for plural in PLURALS]


def _with_path(client_config: Mapping[str, Any], path: str) -> dict[str, Any]:
    config = dict(client_config)
    if "url" in config:
        config["url"] = f"{config['url'].rstrip('/')}/{path}"
    if "service" in config:
        config["service"] = {**config["service"], "path": f"/{path}"}
    return config
