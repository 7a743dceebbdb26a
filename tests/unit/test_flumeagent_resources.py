"""FlumeAgent -> ConfigMap, workload and Service, rendered without a cluster."""

from __future__ import annotations

import copy

import jsonpatch
import pytest

from kubeflume_agent.config.manifest import parse_manifest
from kubeflume_agent.config.properties import fingerprint, flume_conf
from kubeflume_agent.config.validation import validate
from kubeflume_operator import kube
from kubeflume_operator.flumeagent import resources

IMAGE = "registry.example/kubeflume/agent:test"


def flume_agent(**spec_fields) -> dict:
    spec = {
        "agentName": "a1",
        "sources": {"r1": {"type": "syslogtcp", "channels": ["c1"], "host": "0.0.0.0", "port": 5140}},
        "channels": {"c1": {"type": "memory", "capacity": 1000, "transactionCapacity": 100}},
        "sinks": {"k1": {"type": "http", "channel": "c1", "endpoint": "http://collector:8080/"}},
    }
    spec.update(spec_fields)
    return {
        "apiVersion": "kubeflume.io/v1alpha1",
        "kind": "FlumeAgent",
        "metadata": {"name": "web-logs", "namespace": "logging", "uid": "6f1c-uid", "generation": 1},
        "spec": spec,
    }


def render(agent: dict) -> resources.AgentResources:
    config = parse_manifest(agent)
    assert [str(p) for p in validate(config) if p.is_error] == []
    return resources.render(agent, config, image=IMAGE)


def container(rendered: resources.AgentResources) -> dict:
    return rendered.workload["spec"]["template"]["spec"]["containers"][0]


def test_config_map_holds_the_agents_own_rendering_and_its_hash():
    agent = flume_agent()
    rendered = render(agent)
    config = parse_manifest(agent)
    assert rendered.config_map["metadata"]["name"] == "web-logs-config"
    assert rendered.config_map["data"] == {"flume.conf": flume_conf(config)}
    assert rendered.config_hash == fingerprint(config)
    assert rendered.config_map["metadata"]["annotations"][resources.CONFIG_HASH_ANNOTATION] == fingerprint(config)
    template = rendered.workload["spec"]["template"]
    assert template["metadata"]["annotations"][resources.CONFIG_HASH_ANNOTATION] == fingerprint(config)


def test_rendering_is_stable_and_only_a_config_change_changes_the_hash():
    first, second = render(flume_agent()), render(flume_agent())
    assert first.children == second.children
    assert kube.desired_hash(first.workload) == kube.desired_hash(second.workload)

    bigger = flume_agent()
    bigger["spec"]["channels"]["c1"]["capacity"] = 5000
    changed = render(bigger)
    assert changed.config_hash != first.config_hash
    old_template = copy.deepcopy(first.workload["spec"]["template"])
    new_template = copy.deepcopy(changed.workload["spec"]["template"])
    for template in (old_template, new_template):
        del template["metadata"]["annotations"][resources.CONFIG_HASH_ANNOTATION]
    assert old_template == new_template  # nothing but the hash rolls the pods


def test_agent_container_runs_the_rendered_file_with_probes_on_the_metrics_port():
    rendered = render(flume_agent(metrics={"port": 9100}))
    agent = container(rendered)
    assert agent["image"] == IMAGE
    assert agent["command"] == ["kubeflume-agent"]
    assert agent["args"] == ["-n", "a1", "-f", "/etc/kubeflume/flume.conf", "--metrics-port", "9100",
                             "--drain-timeout", "5"]
    assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in agent["ports"]
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert {"name": "config", "mountPath": "/etc/kubeflume", "readOnly": True} in agent["volumeMounts"]
    volumes = rendered.workload["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": "web-logs-config"}} in volumes


def test_network_sources_get_a_service_with_their_ports():
    agent = flume_agent(service={"type": "LoadBalancer", "annotations": {"lb.example/internal": "true"}})
    agent["spec"]["sources"]["r2"] = {"type": "syslogudp", "channels": "c1", "host": "0.0.0.0", "port": 5140}
    rendered = render(agent)
    service = rendered.service
    assert service["metadata"]["name"] == "web-logs"
    assert service["metadata"]["annotations"] == {"lb.example/internal": "true"}
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["selector"] == resources.selector_labels("web-logs")
    assert service["spec"]["ports"] == [
        {"name": "tcp-5140", "port": 5140, "targetPort": 5140, "protocol": "TCP"},
        {"name": "udp-5140", "port": 5140, "targetPort": 5140, "protocol": "UDP"},
    ]
    assert resources.endpoints(agent, rendered.ports) == [
        {"source": "r1", "address": "web-logs.logging.svc:5140", "protocol": "TCP"},
        {"source": "r2", "address": "web-logs.logging.svc:5140", "protocol": "UDP"},
    ]


def test_no_network_source_no_service_for_clients():
    agent = flume_agent()
    agent["spec"]["sources"] = {"r1": {"type": "seq", "channels": ["c1"]}}
    rendered = render(agent)
    assert rendered.service is None
    assert [(obj["kind"], obj["metadata"]["name"]) for obj in rendered.children] == [
        ("ConfigMap", "web-logs-config"), ("Deployment", "web-logs"), ("Service", "web-logs-metrics")]


def test_every_agent_gets_a_headless_metrics_service_apart_from_its_client_service():
    """What a ServiceMonitor scrapes; never the LoadBalancer clients reach."""
    agent = flume_agent(service={"type": "LoadBalancer"}, metrics={"port": 9100})
    rendered = render(agent)
    metrics = rendered.metrics_service
    assert metrics["metadata"]["labels"][resources.METRICS_SERVICE_LABEL] == "true"
    assert resources.METRICS_SERVICE_LABEL not in rendered.service["metadata"]["labels"]
    assert metrics["spec"] == {
        "clusterIP": "None",
        "selector": resources.selector_labels("web-logs"),
        "ports": [{"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}],
    }
    assert all(p["name"] != "metrics" for p in rendered.service["spec"]["ports"])
    assert metrics["metadata"]["ownerReferences"][0]["kind"] == "FlumeAgent"


def test_file_channel_makes_a_statefulset_with_a_claim_for_its_directories():
    agent = flume_agent(storage={"size": "20Gi", "storageClassName": "fast"})
    agent["spec"]["channels"]["c1"] = {"type": "file", "checkpointDir": "/var/lib/flume/checkpoint",
                                       "dataDirs": "/var/lib/flume/data"}
    rendered = render(agent)
    workload = rendered.workload
    assert workload["kind"] == "StatefulSet"
    assert workload["spec"]["serviceName"] == "web-logs"
    assert workload["spec"]["volumeClaimTemplates"] == [{
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}},
                 "storageClassName": "fast"},
    }]
    mounts = container(rendered)["volumeMounts"]
    assert {"name": "data", "mountPath": "/var/lib/flume/checkpoint", "subPath": "var_lib_flume_checkpoint"} in mounts
    assert {"name": "data", "mountPath": "/var/lib/flume/data", "subPath": "var_lib_flume_data"} in mounts
    assert rendered.notes == []


def test_daemonset_keeps_state_on_the_node():
    agent = flume_agent(workload="DaemonSet")
    agent["spec"]["channels"]["c1"] = {"type": "file", "checkpointDir": "/state/cp", "dataDirs": "/state/data"}
    rendered = render(agent)
    assert rendered.workload["kind"] == "DaemonSet"
    assert "replicas" not in rendered.workload["spec"]
    volumes = rendered.workload["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "hostPath": {"path": "/var/lib/kubeflume/logging/web-logs",
                                         "type": "DirectoryOrCreate"}} in volumes


def test_a_deployment_asked_for_despite_state_gets_an_emptydir_and_a_note():
    agent = flume_agent(workload="Deployment", replicas=3)
    agent["spec"]["channels"]["c1"] = {"type": "file", "checkpointDir": "/state/cp", "dataDirs": "/state/data"}
    rendered = render(agent)
    assert rendered.workload["kind"] == "Deployment"
    assert rendered.workload["spec"]["replicas"] == 3
    assert {"name": "data", "emptyDir": {}} in rendered.workload["spec"]["template"]["spec"]["volumes"]
    assert len(rendered.notes) == 1 and "/state/cp" in rendered.notes[0]


def test_state_under_a_users_own_mount_needs_no_operator_storage():
    agent = flume_agent(
        volumes=[{"name": "state", "hostPath": {"path": "/srv/flume"}}],
        volumeMounts=[{"name": "state", "mountPath": "/state"}],
    )
    agent["spec"]["channels"]["c1"] = {"type": "file", "checkpointDir": "/state/cp", "dataDirs": "/state/data"}
    rendered = render(agent)
    assert rendered.workload["kind"] == "Deployment"
    pod = rendered.workload["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["config", "state"]
    assert [m["name"] for m in pod["containers"][0]["volumeMounts"]] == ["config", "state"]


def test_every_child_is_owned_by_the_flumeagent_and_labelled():
    rendered = render(flume_agent())
    for child in rendered.children:
        assert child["metadata"]["namespace"] == "logging"
        assert child["metadata"]["ownerReferences"] == [{
            "apiVersion": "kubeflume.io/v1alpha1", "kind": "FlumeAgent", "name": "web-logs",
            "uid": "6f1c-uid", "controller": True, "blockOwnerDeletion": True,
        }]
        extra = {resources.METRICS_SERVICE_LABEL: "true"} if child is rendered.metrics_service else {}
        assert child["metadata"]["labels"] == {**resources.labels("web-logs"), **extra}


def test_pod_settings_pass_through():
    agent = flume_agent(
        image="mirror.example/agent:1", imagePullPolicy="Always",
        env=[{"name": "JAVA_OPTS", "value": "-Xmx1g"}],
        resources={"limits": {"memory": "512Mi"}},
        nodeSelector={"disk": "ssd"},
        tolerations=[{"key": "logs", "operator": "Exists"}],
        affinity={"nodeAffinity": {}},
        serviceAccountName="flume",
        podAnnotations={"team": "obs"},
        podLabels={"tier": "ingest", "app.kubernetes.io/instance": "hijack"},
        securityContext={"runAsNonRoot": True},
        podSecurityContext={"fsGroup": 1000},
    )
    rendered = render(agent)
    template = rendered.workload["spec"]["template"]
    pod = template["spec"]
    agent_container = pod["containers"][0]
    assert agent_container["image"] == "mirror.example/agent:1"
    assert agent_container["imagePullPolicy"] == "Always"
    assert agent_container["env"] == [{"name": "JAVA_OPTS", "value": "-Xmx1g"}]
    assert agent_container["resources"] == {"limits": {"memory": "512Mi"}}
    assert agent_container["securityContext"] == {"runAsNonRoot": True}
    assert pod["securityContext"] == {"fsGroup": 1000}
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["tolerations"] == [{"key": "logs", "operator": "Exists"}]
    assert pod["affinity"] == {"nodeAffinity": {}}
    assert pod["serviceAccountName"] == "flume"
    assert template["metadata"]["annotations"]["team"] == "obs"
    assert template["metadata"]["labels"]["tier"] == "ingest"
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "web-logs"  # ours win


@pytest.mark.parametrize(("spec_fields", "where"), [
    ({"metrics": {"port": 5140}}, "sources.r1.port"),
    ({"workload": "DaemonSet", "replicas": 2}, "agent.replicas"),
])
def test_kubernetes_only_problems_are_reported(spec_fields, where):
    agent = flume_agent(**spec_fields)
    problems = resources.spec_problems(agent["spec"], parse_manifest(agent))
    assert [f"{p.component}.{p.key}" for p in problems] == [where]


def test_update_patch_replaces_spec_and_keeps_labels_and_annotations_of_others():
    desired = render(flume_agent()).workload
    current = copy.deepcopy(desired)
    current["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "4"}
    current["spec"]["template"]["spec"]["nodeSelector"] = {"stale": "yes"}
    current["spec"]["replicas"] = 7
    patched = jsonpatch.apply_patch(current, kube.update_patch(current, desired))
    assert patched["spec"] == desired["spec"]
    assert patched["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    assert patched["metadata"]["labels"] == desired["metadata"]["labels"]
    assert patched["metadata"]["ownerReferences"] == desired["metadata"]["ownerReferences"]


# --- graceful stop, rollouts, disruption budget -------------------------------------------------

def pod_spec(rendered: resources.AgentResources) -> dict:
    return rendered.workload["spec"]["template"]["spec"]


def test_the_stop_is_sized_from_the_memory_channels():
    small = render(flume_agent())  # 1,000 events in memory: the 5 s minimum
    assert container(small)["args"][-2:] == ["--drain-timeout", "5"]
    assert pod_spec(small)["terminationGracePeriodSeconds"] == 5 + 5 + 15
    assert container(small)["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/sh", "-c", "kill -USR1 1; sleep 5"]

    big = render(flume_agent(channels={"c1": {"type": "memory", "capacity": 40000, "transactionCapacity": 100}}))
    assert container(big)["args"][-2:] == ["--drain-timeout", "40"]
    assert pod_spec(big)["terminationGracePeriodSeconds"] == 5 + 40 + 15


def test_events_on_disk_need_no_drain_time_and_the_timings_can_be_set():
    on_disk = render(flume_agent(channels={"c1": {"type": "file", "capacity": 1000000, "transactionCapacity": 100,
                                                  "checkpointDir": "/data/cp", "dataDirs": "/data/d"}}))
    assert container(on_disk)["args"][-1] == "5"
    chosen = render(flume_agent(shutdown={"drainSeconds": 30, "preStopSeconds": 2,
                                          "terminationGracePeriodSeconds": 90}))
    assert container(chosen)["args"][-1] == "30"
    assert container(chosen)["lifecycle"]["preStop"]["exec"]["command"][-1].endswith("sleep 2")
    assert pod_spec(chosen)["terminationGracePeriodSeconds"] == 90


def test_a_grace_period_shorter_than_the_stop_is_a_problem():
    agent = flume_agent(shutdown={"drainSeconds": 30, "terminationGracePeriodSeconds": 20})
    problems = resources.spec_problems(agent["spec"], parse_manifest(agent))
    assert [p.key for p in problems] == ["shutdown.terminationGracePeriodSeconds"]


def test_rollouts_keep_an_endpoint_and_statefulsets_keep_their_claims():
    deployment = render(flume_agent()).workload
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    stateful = render(flume_agent(workload="StatefulSet")).workload["spec"]
    assert stateful["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert stateful["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, None),
    ({"replicas": 2}, {"maxUnavailable": 1}),
    ({"replicas": 3, "disruptionBudget": {"minAvailable": 2}}, {"minAvailable": 2}),
    ({"replicas": 3, "disruptionBudget": {"enabled": False}}, None),
    ({"replicas": 1, "disruptionBudget": {"enabled": True, "maxUnavailable": "50%"}}, {"maxUnavailable": "50%"}),
])
def test_a_disruption_budget_for_two_or_more_replicas_unless_asked_otherwise(fields, expected):
    budget = render(flume_agent(**fields)).disruption_budget
    if expected is None:
        assert budget is None
        return
    assert budget["kind"] == "PodDisruptionBudget" and budget["metadata"]["name"] == "web-logs"
    assert budget["spec"] == {"selector": {"matchLabels": resources.selector_labels("web-logs")}, **expected}
    assert budget["metadata"]["ownerReferences"][0]["uid"] == "6f1c-uid"


def test_a_budget_with_both_limits_is_a_problem():
    agent = flume_agent(replicas=3, disruptionBudget={"maxUnavailable": 1, "minAvailable": 2})
    problems = resources.spec_problems(agent["spec"], parse_manifest(agent))
    assert [p.key for p in problems] == ["disruptionBudget"]


def container_logs_agent(**spec_fields) -> dict:
    return flume_agent(sources={"r1": {
        "type": "TAILDIR", "channels": ["c1"], "filegroups": "c", "filegroups.c": "/var/log/containers/.*\\.log",
        "fileHeader": True, "lineFormat": "cri", "interceptors": [{"name": "k8s", "type": "kubernetes"}]}},
        workload="DaemonSet", **spec_fields)


def test_an_agent_reading_pods_gets_a_service_account_a_pod_reader_role_and_its_node():
    rendered = render(container_logs_agent())
    account = rendered.service_account
    assert (account["kind"], account["metadata"]["name"], account["metadata"]["namespace"]) == (
        "ServiceAccount", "web-logs-agent", "logging")
    assert account in rendered.children and account["metadata"]["ownerReferences"][0]["uid"] == "6f1c-uid"
    role, binding = rendered.cluster_objects
    assert role["kind"] == "ClusterRole" and role["metadata"]["name"] == "kubeflume-agent-logging-web-logs"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "kubeflume-agent-logging-web-logs"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "web-logs-agent", "namespace": "logging"}]
    for obj in rendered.cluster_objects:  # cluster-scoped: no owner reference (it would be invalid)
        assert "ownerReferences" not in obj["metadata"]
        assert obj["metadata"]["labels"][resources.AGENT_NAMESPACE_LABEL] == "logging"
    pod = rendered.workload["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "web-logs-agent"
    node_name = {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    assert node_name in container(rendered)["env"]


def test_a_named_service_account_is_bound_not_created_and_other_agents_get_no_rbac():
    rendered = render(container_logs_agent(serviceAccountName="log-shipper"))
    assert rendered.service_account is None
    assert rendered.cluster_objects[1]["subjects"][0]["name"] == "log-shipper"
    assert rendered.workload["spec"]["template"]["spec"]["serviceAccountName"] == "log-shipper"
    plain = render(flume_agent())
    assert plain.service_account is None and plain.cluster_objects == []
    assert "env" not in container(plain)
