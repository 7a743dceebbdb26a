"""The Helm chart, checked with Helm's own engine and the Kubernetes API schemas."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from operator_api import operator_cli_flags, required_rules, webhook_certificate_rules
from repo_paths import CHART, CHART_CRDS, REPO

HelmRun = Callable[..., dict[str, Any]]

KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
# Kinds from other projects' CRDs, which kubernetes-validate has no schema for.
FOREIGN_KINDS = {("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "ServiceMonitor"),
                 ("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}
RENDERED: dict[str, list[dict[str, Any]]] = {}  # values as JSON -> objects; Helm runs once per values
SCENARIOS = {
    "defaults": {},
    "webhook-off": {"webhook": {"enabled": False}},
    "webhook-cert-manager": {"webhook": {"certManager": {"enabled": True}}, "watchNamespaces": ["team-a"]},
    "namespaced-with-peering": {"watchNamespaces": ["team-a", "team-b"], "peering": {"enabled": True}},
    "cluster-wide-with-peering": {"peering": {"enabled": True}},
    "pod-monitor": {"podMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                        "watchNamespaces": ["team-a"]},
    "bring-your-own-account": {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops"}},
    "scheduling": {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        "imagePullSecrets": [{"name": "registry"}],
    },
}


def render(helm: HelmRun, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The chart's objects for `values`, which must also pass `helm lint --strict`."""
    key = json.dumps(values or {}, sort_keys=True)
    if key not in RENDERED:
        answer = helm(values=values)
        assert answer["render_error"] is None, answer["render_error"]
        assert not answer["lint"]["failed"], answer["lint"]["errors"]
        RENDERED[key] = [doc for path, text in sorted(answer["manifests"].items()) if not path.endswith(".txt")
                         for doc in yaml.safe_load_all(text) if doc]
    return copy.deepcopy(RENDERED[key])


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def test_chart_passes_helm_lint(helm: HelmRun) -> None:
    lint = helm()["lint"]
    assert not lint["failed"], lint["errors"]
    assert [m for m in lint["messages"] if m["severity"] >= 2] == []


def test_lint_fails_on_a_broken_template(helm: HelmRun, tmp_path: Path) -> None:
    broken = tmp_path / "kubeflume"
    shutil.copytree(CHART, broken)
    deployment = broken / "templates" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("{{ .Values.image.pullPolicy }}",
                                                         "{{ .Values.image.pullPolicy | nosuchfunction }}"))
    answer = helm(chart=broken)
    assert answer["lint"]["failed"]
    assert "nosuchfunction" in answer["render_error"]


def test_values_schema_rejects_a_writable_root_filesystem(helm: HelmRun) -> None:
    answer = helm(values={"securityContext": {"readOnlyRootFilesystem": False, "allowPrivilegeEscalation": False}})
    assert answer["render_error"] is not None
    assert "readOnlyRootFilesystem" in answer["render_error"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_objects_match_the_kubernetes_schemas(helm: HelmRun, scenario: str) -> None:
    objects = render(helm, SCENARIOS[scenario])
    assert objects
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in FOREIGN_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_pod_monitor_scrapes_the_agent_pods(helm: HelmRun) -> None:
    from kubeflume_operator.flumeagent import resources

    monitor = only(render(helm, SCENARIOS["pod-monitor"]), "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= resources.labels("any-agent").items()
    assert [(e["port"], e["path"]) for e in monitor["spec"]["podMetricsEndpoints"]] == [("metrics", "/prometheus")]
    assert all(o["kind"] != "PodMonitor" for o in render(helm))


def test_service_monitor_scrapes_only_the_agents_headless_metrics_services(helm: HelmRun) -> None:
    from kubeflume_operator.flumeagent import resources

    monitor = only(render(helm, SCENARIOS["service-monitor"]), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}
    agent = {"apiVersion": "kubeflume.io/v1alpha1", "kind": "FlumeAgent",
             "metadata": {"name": "a", "namespace": "team-a", "uid": "u"},
             "spec": {"sources": {"r1": {"type": "netcat", "channels": ["c1"], "bind": "0.0.0.0", "port": 4444}},
                      "channels": {"c1": {"type": "memory"}}, "sinks": {"k1": {"type": "null", "channel": "c1"}}}}
    from kubeflume_agent.config.manifest import parse_manifest

    rendered = resources.render(agent, parse_manifest(agent), image="agent:test")
    selected = [child for child in rendered.children if child["kind"] == "Service"
                and monitor["spec"]["selector"]["matchLabels"].items() <= child["metadata"]["labels"].items()]
    assert selected == [rendered.metrics_service]  # never the client Service
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in selected[0]["spec"]["ports"]]
    assert all(o["kind"] != "ServiceMonitor" for o in render(helm))


def test_operator_deployment_runs_one_replica_with_a_liveness_probe(helm: HelmRun) -> None:
    deployment = only(render(helm), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = only_container(deployment)
    liveness = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--liveness="))
    url = urlsplit(liveness)
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == url.path == "/healthz"
    port = next(p for p in container["ports"] if p["name"] == probe["port"])
    assert port["containerPort"] == url.port


def test_operator_gets_the_default_agent_image_and_its_intervals(helm: HelmRun) -> None:
    """The operator's settings, read at startup from the rendered environment, say what the values say."""
    values = {"agentImage": {"repository": "r/agent", "tag": "v9"}, "statusInterval": 30,
              "shellJobPollInterval": 2.5}
    environ = {e["name"]: e["value"] for e in only_container(only(render(helm, values), "Deployment"))["env"]}
    done = subprocess.run(
        [sys.executable, "-c",
         "from kubeflume_operator.context import Settings; s = Settings.from_environ(); "
         "print(s.agent_image, s.status_interval, s.shelljob_poll_interval)"],
        env={**os.environ, **environ}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["r/agent:v9", "30.0", "2.5"]


def test_values_schema_declares_every_value() -> None:
    """Each key of values.yaml is declared in values.schema.json, down to the free-form objects
    (resources, affinity...) whose content is Kubernetes' to check."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    undeclared = list(undeclared_keys(values, schema, schema, "values"))
    assert undeclared == [], f"not in values.schema.json: {undeclared}"


def undeclared_keys(value: Any, node: dict[str, Any], schema: dict[str, Any], path: str) -> Iterator[str]:
    if "$ref" in node:
        node = schema["definitions"][node["$ref"].rpartition("/")[2]]
    if not isinstance(value, dict) or "properties" not in node:
        return
    for key, item in value.items():
        if key not in node["properties"]:
            yield f"{path}.{key}"
        else:
            yield from undeclared_keys(item, node["properties"][key], schema, f"{path}.{key}")


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a"], "crds": {"install": False},
                                         "podMonitor": {"enabled": True}, "serviceMonitor": {"enabled": True}}],
                         ids=["defaults", "everything"])
def test_notes_tell_what_was_installed_and_what_to_do_next(helm: HelmRun, values: dict[str, Any]) -> None:
    answer = helm(values=values)
    assert answer["render_error"] is None, answer["render_error"]
    notes = next(text for path, text in answer["manifests"].items() if path.endswith("NOTES.txt"))
    for command in ("rollout status deployment/kubeflume", "kubectl get flumeagents", "kubectl get shelljobs",
                    "docs/troubleshooting.md"):
        assert command in notes
    for example in re.findall(r"kubectl apply (?:--server-side )?-f (\S+)", notes):
        assert (REPO / example).exists(), f"NOTES.txt names {example}, which is not in the repository"
    assert ("the namespaces team-a" in notes) == bool(values.get("watchNamespaces"))
    assert ("install the FlumeAgent and ShellJob CRDs yourself" in notes) == (values.get("crds") is not None)
    assert ("PodMonitor kubeflume-agents" in notes) == bool(values.get("podMonitor"))
    assert ("ServiceMonitor kubeflume-agents" in notes) == bool(values.get("serviceMonitor"))


def test_operator_runs_as_non_root_on_a_read_only_root_filesystem(helm: HelmRun) -> None:
    pod = only(render(helm), "Deployment")["spec"]["template"]["spec"]
    container = only_container(only(render(helm), "Deployment"))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context.get("privileged", False) is False
    assert context["capabilities"]["drop"] == ["ALL"]


def test_scheduling_values_reach_the_pod(helm: HelmRun) -> None:
    pod = only(render(helm, SCENARIOS["scheduling"]), "Deployment")["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        assert pod[key] == SCENARIOS["scheduling"][key]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_operator_arguments_are_flags_the_operator_accepts(helm: HelmRun, scenario: str) -> None:
    container = only_container(only(render(helm, SCENARIOS[scenario]), "Deployment"))
    accepted = operator_cli_flags()
    for argument in container["args"]:
        assert argument.split("=", 1)[0] in accepted, f"kubeflume-operator does not accept {argument}"


def test_namespaces_to_watch_become_flags_and_roles(helm: HelmRun) -> None:
    objects = render(helm, SCENARIOS["namespaced-with-peering"])
    args = only_container(only(objects, "Deployment"))["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args
    for kind in ("Role", "RoleBinding"):
        watched = [o for o in objects if o["kind"] == kind and not o["metadata"]["name"].endswith("-webhook")]
        assert sorted(o["metadata"]["namespace"] for o in watched) == ["team-a", "team-b"]
    assert "--all-namespaces" in only_container(only(render(helm), "Deployment"))["args"]


@pytest.mark.parametrize("scenario", ["defaults", "namespaced-with-peering", "cluster-wide-with-peering"])
def test_rbac_grants_exactly_what_the_operator_uses(helm: HelmRun, scenario: str) -> None:
    values = SCENARIOS[scenario]
    objects = render(helm, values)
    cluster_wide = not values.get("watchNamespaces")
    peering = values.get("peering", {}).get("enabled", False)
    webhook = values.get("webhook", {})
    own_certificate = webhook.get("enabled", True) and not webhook.get("certManager", {}).get("enabled", False)
    certificate_cluster, certificate_own = webhook_certificate_rules() if own_certificate else (set(), set())
    granted_cluster = grants(only(objects, "ClusterRole"))
    want_cluster, want_namespaced = required_rules(cluster_wide=cluster_wide, peering=peering)
    roles = [o for o in objects if o["kind"] == "Role"]
    certificate_roles = [role for role in roles if role["metadata"]["name"].endswith("-webhook")]
    assert len(certificate_roles) == (1 if own_certificate else 0)
    for role in certificate_roles:
        assert role["metadata"]["namespace"] == only(objects, "Deployment")["metadata"]["namespace"]
        assert_same_rules(grants(role), set(certificate_own), "the webhook certificate's Role")
    roles = [role for role in roles if role not in certificate_roles]
    if cluster_wide:
        assert_same_rules(granted_cluster, want_cluster | want_namespaced | certificate_cluster, "ClusterRole")
        assert not roles
    else:
        assert_same_rules(granted_cluster, want_cluster | certificate_cluster, "ClusterRole")
        for role in roles:
            assert_same_rules(grants(role), want_namespaced, f"Role in {role['metadata']['namespace']}")


def assert_same_rules(granted: set[tuple[str, str, str]], wanted: set[tuple[str, str, str]], where: str) -> None:
    missing, extra = sorted(wanted - granted), sorted(granted - wanted)
    assert not missing and not extra, f"{where}: the operator uses but is not granted {missing}; " \
                                      f"granted but never used {extra}"


def test_rbac_and_service_account_can_be_left_out(helm: HelmRun) -> None:
    objects = render(helm, SCENARIOS["bring-your-own-account"])
    kinds = {o["kind"] for o in objects}
    assert kinds.isdisjoint({"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"})
    assert only(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def test_chart_crds_are_the_repository_crds() -> None:
    top = {p.name: p.read_bytes() for p in sorted((REPO / "crds").glob("*.yaml"))}
    in_chart = {p.name: p.read_bytes() for p in sorted(CHART_CRDS.glob("*.yaml"))}
    assert top, "crds/ holds no CRD"
    assert in_chart == top, "charts/kubeflume/charts/crds/crds/ differs from crds/: copy crds/*.yaml there"


def test_crds_install_switches_the_crd_subchart() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert {"name": "crds", "version": "0.1.0", "condition": "crds.install"} in chart["dependencies"]
    assert yaml.safe_load((CHART / "values.yaml").read_text())["crds"]["install"] is True


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """A role's rules flattened to (apiGroup, resource, verb); wildcards are refused outright."""
    flat = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    flat.add((group, resource, verb))
    return flat


def test_the_webhook_configuration_is_the_one_the_operator_would_make_and_the_values_reach_it(helm: HelmRun) -> None:
    """The chart's configuration routes each kind to the handler the operator registers, on its Service."""
    from kubeflume_operator.webhook.admission import webhooks

    values = {"watchNamespaces": ["team-a"], "webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 5}}
    objects = render(helm, values)
    service = only(objects, "Service")
    namespace = service["metadata"]["namespace"]
    client_config = {"service": {"name": service["metadata"]["name"], "namespace": namespace, "port": 443}}
    configuration = only(objects, "ValidatingWebhookConfiguration")
    assert configuration["webhooks"] == webhooks(client_config, failure_policy="Ignore", timeout_seconds=5,
                                                 namespaces=["team-a"])
    container = only_container(only(objects, "Deployment"))
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in container["ports"]
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    assert f"--webhook-service={namespace}/{service['metadata']['name']}" in container["args"]
    assert f"--webhook-configuration={configuration['metadata']['name']}" in container["args"]
    selector = {"matchLabels": {"team": "logs"}}
    chosen = only(render(helm, {"webhook": {"namespaceSelector": selector}}), "ValidatingWebhookConfiguration")
    assert all(webhook["namespaceSelector"] == selector for webhook in chosen["webhooks"])


def test_with_cert_manager_the_operator_serves_its_certificate_and_the_injector_fills_the_ca(helm: HelmRun) -> None:
    objects = render(helm, {"webhook": {"certManager": {"enabled": True}}})
    configuration = only(objects, "ValidatingWebhookConfiguration")
    certificate = only(objects, "Certificate")
    service = only(objects, "Service")
    namespace = service["metadata"]["namespace"]
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"{namespace}/{certificate['metadata']['name']}"
    assert certificate["spec"]["dnsNames"][0] == f"{service['metadata']['name']}.{namespace}.svc"
    assert certificate["spec"]["issuerRef"]["name"] == only(objects, "Issuer")["metadata"]["name"]
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    container = only_container(only(objects, "Deployment"))
    assert "--webhook-cert-dir=/etc/kubeflume/webhook" in container["args"]
    assert not [arg for arg in container["args"] if arg.startswith("--webhook-service")]
    mounted = next(v for v in pod["volumes"] if v["name"] == "webhook-certificate")
    assert mounted["secret"]["secretName"] == certificate["spec"]["secretName"]
    issuer = {"name": "corp-ca", "kind": "ClusterIssuer"}
    objects = render(helm, {"webhook": {"certManager": {"enabled": True, "issuerRef": issuer}}})
    assert only(objects, "Certificate")["spec"]["issuerRef"] == issuer
    assert not [o for o in objects if o["kind"] == "Issuer"]
