"""Create-or-update of owned Kubernetes objects, with the official (synchronous) client.

An object is written only when what we want differs from what we last wrote: the desired
object's hash travels in an annotation, so re-running a reconciliation (after an operator
restart, say) costs one GET per object and changes nothing. Updates are JSON patches that
replace `spec`/`data` wholesale (so a removed field really goes away) and set our own labels and
annotations key by key (so those added by others, e.g. Deployment revisions, stay).
PATCH rather than PUT: no resourceVersion juggling, and it is what the test emulator serves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from kubeflume_operator import GROUP

APPLIED_HASH_ANNOTATION = f"{GROUP}/applied-hash"
JSON_PATCH = "application/json-patch+json"
OWNED_SECTIONS = ("spec", "data", "rules", "subjects")

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"


class NotOwned(Exception):
    """An object with the name we need exists and belongs to someone else: we never take it over."""


@dataclass(frozen=True)
class Kind:
    """The typed client calls for one kind, as (name, namespace) calls."""

    read: Callable[..., Any]
    create: Callable[..., Any]
    patch: Callable[..., Any]
    delete: Callable[..., Any]


def desired_hash(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def update_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSON patch turning `current` into `desired` as far as we own it."""
    operations = []
    for section in ("labels", "annotations"):
        if not current["metadata"].get(section):
            operations.append({"op": "add", "path": f"/metadata/{section}", "value": {}})
        for key, value in desired["metadata"].get(section, {}).items():
            operations.append({"op": "add", "path": f"/metadata/{section}/{_pointer(key)}", "value": value})
    operations.append({"op": "add", "path": "/metadata/ownerReferences",
                       "value": desired["metadata"].get("ownerReferences", [])})
    for section in OWNED_SECTIONS:
        if section in desired:
            operations.append({"op": "add", "path": f"/{section}", "value": desired[section]})
    return operations


@dataclass(frozen=True)
class ObjectStore:
    """Reads and writes the kinds a FlumeAgent owns (and its cluster-scoped RBAC), through one API client."""

    kinds: Mapping[str, Kind]

    @classmethod
    def of(cls, api_client: kubernetes.client.ApiClient) -> ObjectStore:
        core = kubernetes.client.CoreV1Api(api_client)
        apps = kubernetes.client.AppsV1Api(api_client)
        policy = kubernetes.client.PolicyV1Api(api_client)
        rbac = kubernetes.client.RbacAuthorizationV1Api(api_client)
        return cls({
            "ServiceAccount": Kind(core.read_namespaced_service_account, core.create_namespaced_service_account,
                                   core.patch_namespaced_service_account, core.delete_namespaced_service_account),
            "ClusterRole": _cluster_kind(rbac.read_cluster_role, rbac.create_cluster_role, rbac.patch_cluster_role,
                                         rbac.delete_cluster_role),
            "ClusterRoleBinding": _cluster_kind(rbac.read_cluster_role_binding, rbac.create_cluster_role_binding,
                                                rbac.patch_cluster_role_binding, rbac.delete_cluster_role_binding),
            "ConfigMap": Kind(core.read_namespaced_config_map, core.create_namespaced_config_map,
                              core.patch_namespaced_config_map, core.delete_namespaced_config_map),
            "Service": Kind(core.read_namespaced_service, core.create_namespaced_service,
                            core.patch_namespaced_service, core.delete_namespaced_service),
            "Deployment": Kind(apps.read_namespaced_deployment, apps.create_namespaced_deployment,
                               apps.patch_namespaced_deployment, apps.delete_namespaced_deployment),
            "StatefulSet": Kind(apps.read_namespaced_stateful_set, apps.create_namespaced_stateful_set,
                                apps.patch_namespaced_stateful_set, apps.delete_namespaced_stateful_set),
            "DaemonSet": Kind(apps.read_namespaced_daemon_set, apps.create_namespaced_daemon_set,
                              apps.patch_namespaced_daemon_set, apps.delete_namespaced_daemon_set),
            "PodDisruptionBudget": Kind(policy.read_namespaced_pod_disruption_budget,
                                        policy.create_namespaced_pod_disruption_budget,
                                        policy.patch_namespaced_pod_disruption_budget,
                                        policy.delete_namespaced_pod_disruption_budget),
        })

    def read(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object as a plain dict, or None when it does not exist."""
        try:
            response = self.kinds[kind].read(name, namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return json.loads(response.data)

    def apply(self, obj: Mapping[str, Any]) -> str:
        """Make the cluster hold `obj` (created, updated or unchanged, returned as such)."""
        kind, metadata = obj["kind"], obj["metadata"]
        applied_hash = desired_hash(obj)
        annotated = {**obj, "metadata": {**metadata, "annotations": {
            **metadata.get("annotations", {}), APPLIED_HASH_ANNOTATION: applied_hash}}}
        current = self.read(kind, metadata.get("namespace"), metadata["name"])
        if current is None:
            self.kinds[kind].create(metadata.get("namespace"), annotated)
            return CREATED
        owner = controller_uid(obj)
        if owner is not None and not is_controlled_by(current, owner):
            raise NotOwned(f"{kind} {metadata['namespace']}/{metadata['name']} already exists and is not ours; "
                           "rename or delete it")
        current_annotations = current["metadata"].get("annotations") or {}
        if current_annotations.get(APPLIED_HASH_ANNOTATION) == applied_hash:
            return UNCHANGED
        self.kinds[kind].patch(metadata["name"], metadata.get("namespace"), update_patch(current, annotated),
                               _content_type=JSON_PATCH)
        return UPDATED

    def delete_labelled(self, kind: str, name: str, wanted: Mapping[str, str]) -> bool:
        """Delete a cluster-scoped object if it carries all of `wanted` labels (it is then ours)."""
        current = self.read(kind, None, name)
        found = (current or {}).get("metadata", {}).get("labels") or {}
        if current is None or any(found.get(key) != value for key, value in wanted.items()):
            return False
        return self._delete(kind, None, name)

    def delete_owned(self, kind: str, namespace: str, name: str, owner_uid: str) -> bool:
        """Delete the object if `owner_uid` controls it; an object we do not own is left alone."""
        current = self.read(kind, namespace, name)
        if current is None or not is_controlled_by(current, owner_uid):
            return False
        return self._delete(kind, namespace, name)

    def _delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete; one already gone is fine. True: it is gone."""
        try:
            self.kinds[kind].delete(name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
        return True


def _cluster_kind(read: Callable[..., Any], create: Callable[..., Any], patch: Callable[..., Any],
                  delete: Callable[..., Any]) -> Kind:
    """A cluster-scoped kind behind the namespaced calls' signatures (the namespace is ignored)."""
    return Kind(lambda name, _namespace, **options: read(name, **options),
                lambda _namespace, body, **options: create(body, **options),
                lambda name, _namespace, body, **options: patch(name, body, **options),
                lambda name, _namespace, **options: delete(name, **options))


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    return next((ref.get("uid") for ref in obj.get("metadata", {}).get("ownerReferences") or ()
                 if ref.get("controller")), None)


def is_controlled_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    return any(ref.get("uid") == owner_uid and ref.get("controller")
               for ref in obj.get("metadata", {}).get("ownerReferences") or ())


def _pointer(key: str) -> str:
    """A JSON-pointer path segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")
