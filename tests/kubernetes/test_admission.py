"""Invalid FlumeAgents and ShellJobs refused at `kubectl apply`: the webhook and the CRDs' CEL rules.

The operator serves the webhook locally (`--webhook-listen 127.0.0.1:PORT`: a self-signed
certificate and a ValidatingWebhookConfiguration pointing at it, scoped to the test's namespace);
kubectl is the client, as for a user.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from kubeflume_operator import conditions
from kubeflume_operator.flumeagent import status as agent_status
from kubeflume_operator.main import local_configuration_name
from kubeflume_operator.webhook import certificates
from kubeflume_operator.webhook.serving import SecretStore
from tests.kubernetes.cluster import (
    DEPLOYMENTS,
    FLUMEAGENTS,
    SHELLJOBS,
    Cluster,
    OperatorProcess,
    free_port,
    start_chart_operator,
    wait_for,
)

pytestmark = pytest.mark.kubernetes

WEBHOOKS = "admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
VALID_SPEC = {
    "sources": {"r1": {"type": "netcat", "bind": "0.0.0.0", "port": 5140, "channels": ["c1"]}},
    "channels": {"c1": {"type": "memory"}},
    "sinks": {"k1": {"type": "logger", "channel": "c1"}},
}
UNKNOWN_SOURCE_TYPE = "spec.sources.r1.type: unknown source type 'nosuch'; expected one of "


def flume_agent(namespace: str, spec: dict[str, Any], name: str = "demo") -> dict[str, Any]:
    return {"apiVersion": "kubeflume.io/v1alpha1", "kind": "FlumeAgent",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def shell_job(namespace: str, spec: dict[str, Any], name: str = "job") -> dict[str, Any]:
    return {"apiVersion": "kubeflume.io/v1alpha1", "kind": "ShellJob",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def with_source(**source: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID_SPEC)
    spec["sources"]["r1"].update(source)
    return spec


def apply(cluster: Cluster, manifest: dict[str, Any], *extra: str) -> tuple[int, str]:
    """`kubectl apply -f -`: its exit code and everything it printed (warnings go to stderr)."""
    done = cluster.kubectl("apply", "-f", "-", *extra, stdin=yaml.safe_dump(manifest), check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def webhook_operator(crds: list[str], run_operator: Callable[..., OperatorProcess], cluster: Cluster,
                     namespace: str) -> Iterator[Callable[..., OperatorProcess]]:
    """`webhook_operator(failure_policy="Fail")`: the operator serving the webhook, once it is registered.

    The configuration is removed after the test even when the operator was killed.
    """
    name = local_configuration_name([namespace])

    def start(failure_policy: str = "Fail") -> OperatorProcess:
        operator = run_operator(args=["--webhook-listen", f"127.0.0.1:{free_port()}",
                                      "--webhook-failure-policy", failure_policy])
        wait_for(lambda: cluster.get(WEBHOOKS, None, name), f"the ValidatingWebhookConfiguration {name}",
                 operator=operator)
        return operator

    yield start
    cluster.delete(WEBHOOKS, None, name)


def test_an_unknown_source_type_is_refused_with_its_field_path_and_nothing_is_stored(
        cluster: Cluster, namespace: str, webhook_operator: Callable[..., OperatorProcess]) -> None:
    webhook_operator()
    code, output = apply(cluster, flume_agent(namespace, with_source(type="nosuch")))
    assert code != 0
    assert 'admission webhook "flumeagents.kubeflume.io" denied the request' in output
    assert UNKNOWN_SOURCE_TYPE in output and "netcat" in output
    assert cluster.get(FLUMEAGENTS, namespace, "demo") is None


def test_every_problem_is_listed_each_with_its_field_path(
        cluster: Cluster, namespace: str, webhook_operator: Callable[..., OperatorProcess]) -> None:
    webhook_operator()
    spec = with_source(type="nosuch")
    spec["sinks"]["k1"]["channel"] = "c9"
    code, output = apply(cluster, flume_agent(namespace, spec))
    assert code != 0
    assert "FlumeAgent demo has 2 problem(s):" in output
    assert f"error: {UNKNOWN_SOURCE_TYPE}" in output
    assert "error: spec.sinks.k1.channel: channel 'c9' is not defined in agent.channels" in output


def test_a_server_dry_run_is_refused_too_and_creates_nothing(
        cluster: Cluster, namespace: str, webhook_operator: Callable[..., OperatorProcess]) -> None:
    webhook_operator()
    code, output = apply(cluster, flume_agent(namespace, with_source(type="nosuch")), "--dry-run=server")
    assert code != 0 and UNKNOWN_SOURCE_TYPE in output
    assert cluster.get(FLUMEAGENTS, namespace, "demo") is None
    code, output = apply(cluster, flume_agent(namespace, VALID_SPEC), "--dry-run=server")
    assert code == 0, output
    assert "(server dry run)" in output
    assert cluster.get(FLUMEAGENTS, namespace, "demo") is None


def test_a_valid_agent_is_admitted_and_an_update_that_breaks_it_is_refused(
        cluster: Cluster, namespace: str, webhook_operator: Callable[..., OperatorProcess]) -> None:
    webhook_operator()
    code, output = apply(cluster, flume_agent(namespace, VALID_SPEC))
    assert code == 0, output
    stored = cluster.get(FLUMEAGENTS, namespace, "demo")
    assert stored is not None and stored["spec"]["sources"]["r1"]["type"] == "netcat"
    code, output = apply(cluster, flume_agent(namespace, with_source(type="nosuch")))
    assert code != 0 and UNKNOWN_SOURCE_TYPE in output
    after = cluster.get(FLUMEAGENTS, namespace, "demo")
    assert after["spec"] == stored["spec"]
    assert after["metadata"]["generation"] == stored["metadata"]["generation"]


def test_a_warning_only_config_is_admitted_and_kubectl_prints_the_warning(
        cluster: Cluster, namespace: str, webhook_operator: Callable[..., OperatorProcess]) -> None:
    webhook_operator()
    code, output = apply(cluster, flume_agent(namespace, with_source(colour="blue")))
    assert code == 0, output
    assert "Warning: spec.sources.r1.colour: unknown key (ignored, as Flume does)" in output
    assert cluster.get(FLUMEAGENTS, namespace, "demo") is not None


def test_a_shelljob_with_problems_is_refused_by_the_same_validator(
        cluster: Cluster, namespace: str, webhook_operator: Callable[..., OperatorProcess]) -> None:
    webhook_operator()
    job = shell_job(namespace, {"command": ["true"], "files": [{"url": "ftp://host/data.csv"}],
                                "env": [{"name": "BAD-NAME", "value": "x"}]})
    code, output = apply(cluster, job)
    assert code != 0
    assert 'admission webhook "shelljobs.kubeflume.io" denied the request' in output
    assert "error: spec.files[0].url: 'ftp://host/data.csv': expected an hdfs://, http:// or https:// URL" in output
    assert "error: spec.env[0].name: 'BAD-NAME' is not a valid environment variable name" in output
    assert cluster.get(SHELLJOBS, namespace, "job") is None
    code, output = apply(cluster, shell_job(namespace, {"command": ["true"]}))
    assert code == 0, output


CEL_CASES = {
    "shelljob-one-program": (
        shell_job("", {"command": ["true"], "script": "echo"}),
        "spec: Invalid value: give exactly one of command, script or jar"),
    "shelljob-no-program": (
        shell_job("", {"containers": 1}), "spec: Invalid value: give exactly one of command, script or jar"),
    "shelljob-archives-need-dshell": (
        shell_job("", {"command": ["true"], "archives": [{"inline": "x", "name": "a", "format": "zip"}]}),
        "spec.archives: Forbidden: archives need applicationMaster.kind dshell"),
    "shelljob-dshell-one-container": (
        shell_job("", {"command": ["true"], "containers": 2, "applicationMaster": {"kind": "dshell"}}),
        "spec.containers: Invalid value: the dshell ApplicationMaster runs exactly one container"),
    "flumeagent-workload-values": (
        flume_agent("", {**VALID_SPEC, "workload": "Job"}), 'spec.workload: Unsupported value: "Job"'),
    "flumeagent-config-or-pipeline": (
        flume_agent("", {**VALID_SPEC, "config": "a1.sources = r1"}),
        "spec.config: Forbidden: give the pipeline either as config (a flume.conf) or as sources/channels/sinks"),
    "flumeagent-daemonset-replicas": (
        flume_agent("", {**VALID_SPEC, "workload": "DaemonSet", "replicas": 2}),
        "spec.replicas: Forbidden: a DaemonSet runs one pod per node; remove replicas"),
    "flumeagent-storage-size-needs-statefulset": (
        flume_agent("", {**VALID_SPEC, "workload": "Deployment", "storage": {"size": "5Gi"}}),
        "spec.storage: Forbidden: storage.size and storage.storageClassName size the claims of a StatefulSet"),
    "flumeagent-drain-needs-statefulset": (
        flume_agent("", {**VALID_SPEC, "workload": "DaemonSet", "drain": {"deleteClaims": False}}),
        "spec.drain: Forbidden: drain empties the claims of a scaled-down StatefulSet"),
}


@pytest.mark.parametrize("case", sorted(CEL_CASES))
def test_each_cel_rule_refuses_what_it_names_with_no_operator_running(
        cluster: Cluster, namespace: str, crds: list[str], case: str) -> None:
    manifest, expected = copy.deepcopy(CEL_CASES[case])
    manifest["metadata"]["namespace"] = namespace
    code, output = apply(cluster, manifest)
    assert code != 0
    assert "is invalid" in output and expected in output, output
    resource = SHELLJOBS if manifest["kind"] == "ShellJob" else FLUMEAGENTS
    assert cluster.get(resource, namespace, manifest["metadata"]["name"]) is None


def test_the_cel_rules_admit_what_they_allow(cluster: Cluster, namespace: str, crds: list[str]) -> None:
    allowed = [
        shell_job(namespace, {"script": "echo", "containers": 1, "applicationMaster": {"kind": "dshell"},
                              "archives": [{"inline": "x", "name": "a", "format": "zip"}]}, name="dshell"),
        shell_job(namespace, {"command": ["true"], "containers": 3}, name="stock"),
        flume_agent(namespace, {**VALID_SPEC, "workload": "StatefulSet", "replicas": 2, "storage": {"size": "5Gi"},
                                "drain": {"deleteClaims": False}}, name="stateful"),
        flume_agent(namespace, {"config": "a1.sources = r1", "workload": "DaemonSet"}, name="conf"),
    ]
    for manifest in allowed:
        code, output = apply(cluster, manifest)
        assert code == 0, output


def test_with_the_webhook_down_ignore_admits_and_the_reconciler_marks_it_invalid(
        cluster: Cluster, namespace: str, webhook_operator: Callable[..., OperatorProcess],
        run_operator: Callable[..., OperatorProcess]) -> None:
    webhook_operator(failure_policy="Ignore").kill()
    code, output = apply(cluster, flume_agent(namespace, with_source(type="nosuch")))
    assert code == 0, output
    reconciler = run_operator()

    def invalid() -> dict[str, Any] | None:
        status = (cluster.get(FLUMEAGENTS, namespace, "demo") or {}).get("status") or {}
        condition = conditions.find(status.get("conditions"), agent_status.CONFIG_VALID)
        return condition if condition and condition["status"] == conditions.FALSE else None

    condition = wait_for(invalid, "ConfigValid=False", operator=reconciler)
    assert UNKNOWN_SOURCE_TYPE in condition["message"]


def test_with_the_webhook_down_fail_refuses(
        cluster: Cluster, namespace: str, webhook_operator: Callable[..., OperatorProcess]) -> None:
    webhook_operator(failure_policy="Fail").kill()
    code, output = apply(cluster, flume_agent(namespace, VALID_SPEC))
    assert code != 0
    assert 'failed calling webhook "flumeagents.kubeflume.io"' in output
    assert cluster.get(FLUMEAGENTS, namespace, "demo") is None


def test_the_operator_removes_its_configuration_when_it_stops(
        cluster: Cluster, namespace: str, webhook_operator: Callable[..., OperatorProcess]) -> None:
    operator = webhook_operator()
    name = local_configuration_name([namespace])
    registered = cluster.get(WEBHOOKS, None, name)
    assert [webhook["namespaceSelector"]["matchExpressions"][0]["values"] for webhook in registered["webhooks"]] == [
        [namespace], [namespace]]
    assert operator.stop() == 0
    assert cluster.get(WEBHOOKS, None, name) is None


def test_the_chart_operator_makes_its_certificate_injects_its_ca_and_serves_the_service_name(
        cluster: Cluster, namespace: str, namespaced_chart_operator: OperatorProcess, tmp_path: Path) -> None:
    """In a cluster the API server calls the chart's Service; the kit has no kube-proxy, so the test
    calls the operator as the API server would: HTTPS checked against the injected caBundle, for the
    Service's DNS name. The operator runs with the chart's RBAC, so a missing grant fails here."""
    configurations = [c for c in cluster.list(WEBHOOKS, None) if c["metadata"]["name"].endswith(
        f"-{namespace}.kubeflume.io")]
    assert len(configurations) == 1
    configuration = configurations[0]
    service = configuration["webhooks"][0]["clientConfig"]["service"]
    secret_name = f"{service['name']}-tls"
    secret = wait_for(lambda: cluster.get("v1/secrets", namespace, secret_name), f"the Secret {secret_name}",
                      operator=namespaced_chart_operator)
    ca = base64.b64decode(secret["data"]["ca.crt"])

    def injected() -> dict[str, Any] | None:
        current = cluster.get(WEBHOOKS, None, configuration["metadata"]["name"])
        bundles = {webhook["clientConfig"].get("caBundle") for webhook in current["webhooks"]}
        return current if bundles == {base64.b64encode(ca).decode()} else None

    wait_for(injected, "the CA in every caBundle", operator=namespaced_chart_operator)
    operator = namespaced_chart_operator
    port = next(arg for arg in operator.process.args if str(arg).startswith("--webhook-listen="))
    review = admission_review(flume_agent(namespace, with_source(type="nosuch")))
    answer = post_review(int(str(port).rsplit(":", 1)[1]), f"{service['name']}.{namespace}.svc", ca,
                         service["path"], review)
    assert answer["response"]["allowed"] is False
    assert UNKNOWN_SOURCE_TYPE in answer["response"]["status"]["message"]
    assert "Forbidden" not in namespaced_chart_operator.log()
    assert namespaced_chart_operator.stop() == 0
    deployment = next(d for d in cluster.list(DEPLOYMENTS, namespace) if d["metadata"]["name"].endswith("kubeflume"))
    restarted = start_chart_operator(cluster, deployment, tmp_path)
    try:
        # kopf logs this once the server runs, i.e. after the operator read (or remade) its certificate.
        wait_for(lambda: "Listening for webhooks at" in restarted.log(), "the restarted webhook server",
                 operator=restarted)
        assert cluster.get("v1/secrets", namespace, secret_name)["data"] == secret["data"]
        assert injected() is not None  # the same CA: nothing to re-inject, clients keep trusting it
    finally:
        restarted.stop()


def admission_review(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "6b3c1b4e-0000-4000-8000-000000000000", "operation": "CREATE", "dryRun": False,
        "kind": {"group": "kubeflume.io", "version": "v1alpha1", "kind": "FlumeAgent"},
        "resource": {"group": "kubeflume.io", "version": "v1alpha1", "resource": "flumeagents"},
        "namespace": obj["metadata"]["namespace"], "name": obj["metadata"]["name"], "object": obj,
        "oldObject": None, "userInfo": {"username": "test"}}}


def post_review(port: int, hostname: str, ca: bytes, path: str, review: dict[str, Any]) -> dict[str, Any]:
    """POST an AdmissionReview over HTTPS, trusting only `ca` and checking the certificate names `hostname`."""
    context = ssl.create_default_context(cadata=ca.decode())
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    connection.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30),
                                          server_hostname=hostname)
    connection.request("POST", path, body=json.dumps(review), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    return json.loads(response.read())


def test_the_certificate_store_keeps_its_ca_and_renews_what_no_longer_serves(cluster: Cluster,
                                                                              namespace: str) -> None:
    """SecretStore on the real API server: made once, reused, reissued under the same CA for new names."""
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))
    store = SecretStore(core, namespace, "hook-tls")
    first = store.certificates_for(["hook.ns.svc"])
    assert store.certificates_for(["hook.ns.svc"]) == first
    moved = store.certificates_for(["hook.other.svc"])
    assert moved.ca_cert == first.ca_cert and moved.cert != first.cert
    assert store.read() == moved
    assert cluster.get("v1/secrets", namespace, "hook-tls")["type"] == "kubernetes.io/tls"


def test_with_a_mounted_certificate_the_operator_serves_it(
        cluster: Cluster, namespace: str, crds: list[str], run_operator: Callable[..., OperatorProcess],
        tmp_path: Path) -> None:
    """cert-manager's mode: tls.crt/tls.key from a directory (its Secret, mounted), nothing registered."""
    certs = certificates.self_signed(["hook.example.svc"])
    folder = tmp_path / "webhook-certificate"
    folder.mkdir()
    (folder / "tls.crt").write_bytes(certs.cert)
    (folder / "tls.key").write_bytes(certs.key)
    port = free_port()
    operator = run_operator(args=["--webhook-listen", f"127.0.0.1:{port}", "--webhook-cert-dir", str(folder)])
    wait_for(lambda: "Listening for webhooks at" in operator.log(), "the webhook server", operator=operator)
    answer = post_review(port, "hook.example.svc", certs.ca_cert, "/validate-flumeagents",
                         admission_review(flume_agent(namespace, with_source(type="nosuch"))))
    assert answer["response"]["allowed"] is False
    assert UNKNOWN_SOURCE_TYPE in answer["response"]["status"]["message"]
    assert cluster.get(WEBHOOKS, None, local_configuration_name([namespace])) is None
