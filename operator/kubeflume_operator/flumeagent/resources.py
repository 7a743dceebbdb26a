"""A FlumeAgent and its validated AgentConfig -> the Kubernetes objects that run it.

Pure functions: no API calls, so the rendering is unit-tested directly. The children are a
ConfigMap holding the rendered flume.conf, a Deployment, StatefulSet or DaemonSet running
`kubeflume-agent`, a Service when a source listens on the network, and a headless `<name>-metrics`
Service for every agent: the port Prometheus (a ServiceMonitor) scrapes, kept off the client
Service so a LoadBalancer never publishes the metrics. The pod template carries
the config hash, so a changed config rolls the pods and an unchanged one leaves them alone.

An agent whose config uses the `kubernetes` interceptor reads pods from the API: it gets a
ServiceAccount (unless the spec names one), a ClusterRole allowing only get/list/watch on pods
(and on namespaces when the interceptor is asked for namespace labels or annotations),
its ClusterRoleBinding, and NODE_NAME from the downward API. The ServiceAccount is owned like the
other children; cluster-scoped objects cannot be owned by a namespaced FlumeAgent, so the two RBAC
objects are labelled with the agent's namespace and name and deleted by the operator with it.

Nothing acknowledged may be lost when pods go away: a PodDisruptionBudget (2+ replicas) lets
evictions take one pod at a time, StatefulSets roll one pod at a time and keep their claims when
scaled down (the operator drains them, see drain.py), a Deployment with a network source surges
a new pod before an old one stops, and every pod gets a stop sized from its memory channels: a
preStop that stops the sources, then `--drain-timeout` for the sinks, inside the grace period.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from kubeflume_agent.config.keys import Config, resolve
from kubeflume_agent.config.model import AgentConfig, ConfigError, resolve_component
from kubeflume_agent.config.properties import fingerprint, flume_conf
from kubeflume_agent.core import registry
from kubeflume_agent.core.channel import Channel, ChannelKeys
from kubeflume_agent.interceptors import kubernetes as kubernetes_interceptor
from kubeflume_agent.sinks.base import Sink
from kubeflume_agent.sources.base import Source
from kubeflume_operator import GROUP

CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
CONFIG_DIR = "/etc/kubeflume"
CONFIG_FILE = "flume.conf"
CONFIG_VOLUME = "config"
DATA_VOLUME = "data"
CONTAINER = "agent"
DEFAULT_METRICS_PORT = 41414  # Flume's HTTP monitoring default
DEFAULT_STORAGE_SIZE = "1Gi"
HOST_STATE_ROOT = "/var/lib/kubeflume"  # DaemonSet pods keep their state on the node

DEPLOYMENT = "Deployment"
STATEFULSET = "StatefulSet"
DAEMONSET = "DaemonSet"
WORKLOAD_KINDS = (DEPLOYMENT, STATEFULSET, DAEMONSET)
STORAGE_SIZING_ONLY_FOR_CLAIMS = ("storage.size and storage.storageClassName size the claims of a StatefulSet; "
                                  "a Deployment keeps state in an emptyDir and a DaemonSet on the node")
DRAIN_ONLY_FOR_CLAIMS = "drain empties the claims of a scaled-down StatefulSet; other workloads have none"

INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubeflume-operator"
METRICS_SERVICE_LABEL = f"{GROUP}/metrics"  # on the headless metrics Services: what a ServiceMonitor selects
AGENT_NAMESPACE_LABEL = f"{GROUP}/agent-namespace"  # on cluster-scoped objects: whose they are
# What the kubernetes interceptor reads, granted to its agent's ServiceAccount by a ClusterRole.
POD_READER_RULES = ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},)
NAMESPACE_READER_RULES = ({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},)
RBAC_API = "rbac.authorization.k8s.io"
CLUSTER_KINDS = ("ClusterRole", "ClusterRoleBinding")

# Graceful stop. Sinks are assumed to deliver at least this many events/s when sizing the time a
# memory channel needs to drain; the grace period adds the preStop and a margin for checkpoints.
ASSUMED_SINK_RATE = 1000
MIN_STOP_DRAIN_SECONDS = 5
MAX_STOP_DRAIN_SECONDS = 600
PRESTOP_SECONDS = 5  # the preStop's wait after stopping the sources: endpoints forget the pod
STOP_MARGIN_SECONDS = 15
AGENT_PID = 1  # the agent is the container's command, so PID 1 of its namespace


@dataclass(frozen=True)
class ListeningPort:
    source: str
    port: int
    protocol: str  # "TCP" | "UDP"

    @property
    def name(self) -> str:
        """Unique per (protocol, port) and within the 15-character limit of port names."""
        return f"{self.protocol.lower()}-{self.port}"


@dataclass
class AgentResources:
    """Everything one FlumeAgent needs, ready to be applied."""

    config_map: dict[str, Any]
    workload: dict[str, Any]
    service: dict[str, Any] | None
    metrics_service: dict[str, Any]
    disruption_budget: dict[str, Any] | None
    config_hash: str
    ports: list[ListeningPort]
    notes: list[str] = field(default_factory=list)  # things the user should know (posted as Events)
    service_account: dict[str, Any] | None = None
    cluster_objects: list[dict[str, Any]] = field(default_factory=list)  # ClusterRole and its binding, if any

    @property
    def children(self) -> list[dict[str, Any]]:
        """The namespaced objects, owned by the FlumeAgent."""
        return [obj for obj in (self.service_account, self.config_map, self.workload, self.service,
                                self.metrics_service, self.disruption_budget) if obj is not None]


def labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubeflume-agent",
        INSTANCE_LABEL: name,
        "app.kubernetes.io/component": "agent",
        "app.kubernetes.io/part-of": "kubeflume",
        MANAGED_BY_LABEL: MANAGED_BY,
    }


def selector_labels(name: str) -> dict[str, str]:
    """The immutable subset used in selectors."""
    return {"app.kubernetes.io/name": "kubeflume-agent", INSTANCE_LABEL: name}


def metrics_port(spec: Mapping[str, Any]) -> int:
    return int(spec.get("metrics", {}).get("port", DEFAULT_METRICS_PORT))


Component = type[Source] | type[Channel] | type[Sink]


def _components(config: AgentConfig) -> Iterator[tuple[str, str, Component, Config]]:
    """(kind, name, class, typed config) of every component whose type is known."""
    for kind, components in (("source", config.sources), ("channel", config.channels), ("sink", config.sinks)):
        for name, component in components.items():
            try:
                component_class = registry.lookup(kind, component.type)
            except registry.UnknownType:
                continue  # validation reports it
            if not issubclass(component_class, (Source, Channel, Sink)):
                continue  # only sources, channels and sinks listen or keep state
            component_config, _ = resolve_component(component_class, component.params)
            yield kind, name, component_class, component_config


def _kubernetes_interceptors(config: AgentConfig) -> Iterator[kubernetes_interceptor.KubernetesConfig]:
    """The typed config of every kubernetes interceptor of `config`'s sources."""
    interceptor_class = kubernetes_interceptor.KubernetesInterceptor
    for source in config.sources.values():
        for interceptor in source.interceptors:
            try:
                if registry.lookup("interceptor", interceptor.type) is interceptor_class:
                    yield resolve(kubernetes_interceptor.KubernetesConfig, interceptor.params)[0]
            except registry.UnknownType:
                continue  # validation reports it


def reads_pods(config: AgentConfig) -> bool:
    """Whether a source of `config` uses the kubernetes interceptor (which watches pods)."""
    return any(True for _ in _kubernetes_interceptors(config))


def reads_namespaces(config: AgentConfig) -> bool:
    """Whether a kubernetes interceptor of `config` is asked for namespace labels or annotations."""
    return any(kubernetes_interceptor.reads_namespaces(interceptor) for interceptor in _kubernetes_interceptors(config))


def cluster_object_name(namespace: str, name: str) -> str:
    """The name of an agent's cluster-scoped objects: unique across namespaces."""
    return f"kubeflume-agent-{namespace}-{name}"


def pod_reader(name: str, namespace: str, service_account: str, *, namespaces: bool) -> list[dict[str, Any]]:
    """The ClusterRole letting `service_account` read pods (and `namespaces` if asked), and its binding."""
    cluster_name = cluster_object_name(namespace, name)
    metadata = {"name": cluster_name, "labels": {**labels(name), AGENT_NAMESPACE_LABEL: namespace}}
    rules = POD_READER_RULES + NAMESPACE_READER_RULES if namespaces else POD_READER_RULES
    role = {"apiVersion": f"{RBAC_API}/v1", "kind": "ClusterRole", "metadata": metadata,
            "rules": [dict(rule) for rule in rules]}
    binding = {"apiVersion": f"{RBAC_API}/v1", "kind": "ClusterRoleBinding", "metadata": dict(metadata),
               "roleRef": {"apiGroup": RBAC_API, "kind": "ClusterRole", "name": cluster_name},
               "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]}
    return [role, binding]


def listening_ports(config: AgentConfig) -> list[ListeningPort]:
    ports: dict[tuple[int, str], ListeningPort] = {}
    for _, name, component_class, component_config in _components(config):
        if issubclass(component_class, Source):
            for port, protocol in component_class.listening_ports(component_config):
                ports.setdefault((port, protocol), ListeningPort(name, port, protocol))
    return list(ports.values())


def storage_paths(config: AgentConfig) -> list[str]:
    """Directories the components keep state in, in declaration order, without duplicates."""
    paths: dict[str, None] = {}
    for _, _, _, component_config in _components(config):
        for path in component_config.storage_paths():
            paths[os.path.normpath(path)] = None
    return list(paths)


def spec_problems(spec: Mapping[str, Any], config: AgentConfig) -> list[ConfigError]:
    """Problems that only exist in Kubernetes (the agent alone would not see them)."""
    problems = []
    port = metrics_port(spec)
    for listening in listening_ports(config):
        if listening.port == port and listening.protocol == "TCP":
            problems.append(ConfigError(
                f"sources.{listening.source}", "port",
                f"port {port} is the agent's metrics port (spec.metrics.port); choose another",
            ))
    problems += workload_problems(spec)
    budget = spec.get("disruptionBudget", {})
    if "maxUnavailable" in budget and "minAvailable" in budget:
        problems.append(ConfigError("agent", "disruptionBudget",
                                    "give maxUnavailable or minAvailable, not both (a PodDisruptionBudget takes one)"))
    stop = shutdown(spec, config)
    if stop.grace_seconds < stop.prestop_seconds + stop.drain_seconds:
        problems.append(ConfigError(
            "agent", "shutdown.terminationGracePeriodSeconds",
            f"{stop.grace_seconds} s is shorter than the preStop ({stop.prestop_seconds} s) and the drain "
            f"({stop.drain_seconds} s): the pod would be killed while its memory channels still hold events"))
    return problems


def workload_problems(spec: Mapping[str, Any]) -> list[ConfigError]:
    """Fields that only one workload kind uses (the CRD's CEL rules say the same, for when we are down)."""
    problems = []
    asked = spec.get("workload")
    if asked == DAEMONSET and "replicas" in spec:
        problems.append(ConfigError("agent", "replicas", "a DaemonSet runs one pod per node; remove replicas"))
    if asked in (DEPLOYMENT, DAEMONSET):
        storage = spec.get("storage") or {}
        if isinstance(storage, Mapping) and ("size" in storage or "storageClassName" in storage):
            problems.append(ConfigError("agent", "storage", STORAGE_SIZING_ONLY_FOR_CLAIMS))
        if "drain" in spec:
            problems.append(ConfigError("agent", "drain", DRAIN_ONLY_FOR_CLAIMS))
    return problems


@dataclass(frozen=True)
class Shutdown:
    """How a pod stops: sources off in the preStop, then `drain_seconds` for the sinks."""

    prestop_seconds: int
    drain_seconds: int
    grace_seconds: int


def memory_capacity(config: AgentConfig) -> int:
    """Events the channels hold in memory at most: what dies with the process if not delivered."""
    total = 0
    for _, _, _, component_config in _components(config):
        if isinstance(component_config, ChannelKeys):
            total += component_config.events_in_memory()
    return total


def shutdown(spec: Mapping[str, Any], config: AgentConfig) -> Shutdown:
    """The stop timings: spec.shutdown where given, else sized from the memory channels."""
    asked = spec.get("shutdown", {})
    needed = math.ceil(memory_capacity(config) / ASSUMED_SINK_RATE)
    drain = int(asked.get("drainSeconds", min(max(needed, MIN_STOP_DRAIN_SECONDS), MAX_STOP_DRAIN_SECONDS)))
    prestop = int(asked.get("preStopSeconds", PRESTOP_SECONDS))
    grace = int(asked.get("terminationGracePeriodSeconds", prestop + drain + STOP_MARGIN_SECONDS))
    return Shutdown(prestop, drain, grace)


def workload_kind(spec: Mapping[str, Any], paths: list[str]) -> str:
    """The requested workload; without a request, a StatefulSet when state must survive restarts."""
    return spec.get("workload") or (STATEFULSET if paths else DEPLOYMENT)


def _covered(path: str, mounts: list[Mapping[str, Any]]) -> bool:
    """True when one of the user's own volumeMounts already holds `path`."""
    for mount in mounts:
        mount_path = mount["mountPath"].rstrip("/")
        if path == mount_path or path.startswith(mount_path + "/"):
            return True
    return False


def _sub_path(path: str) -> str:
    return path.strip("/").replace("/", "_") or "root"


def render(agent: Mapping[str, Any], config: AgentConfig, *, image: str) -> AgentResources:
    """The children of `agent` (a FlumeAgent object) running `config` (already validated)."""
    metadata_ = agent["metadata"]
    name, namespace = metadata_["name"], metadata_["namespace"]
    spec = agent.get("spec", {})
    conf = flume_conf(config)
    config_hash = fingerprint(config)
    ports = listening_ports(config)
    user_mounts = list(spec.get("volumeMounts", []))
    state_paths = [path for path in storage_paths(config) if not _covered(path, user_mounts)]
    kind = workload_kind(spec, state_paths)
    notes = []
    if state_paths and kind == DEPLOYMENT:
        notes.append(
            f"{', '.join(state_paths)} live in an emptyDir and are lost when a pod is replaced; "
            "use workload: StatefulSet to keep them"
        )

    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(f"{name}-config", namespace, name, {CONFIG_HASH_ANNOTATION: config_hash}),
        "data": {CONFIG_FILE: conf},
    }
    template = _pod_template(name, spec, config.name, config_hash, ports, state_paths, image=image,
                             stop=shutdown(spec, config))
    service_account, cluster_objects = None, []
    if reads_pods(config):
        account = spec.get("serviceAccountName") or f"{name}-agent"
        if not spec.get("serviceAccountName"):
            service_account = {"apiVersion": "v1", "kind": "ServiceAccount",
                               "metadata": _metadata(account, namespace, name)}
        cluster_objects = pod_reader(name, namespace, account, namespaces=reads_namespaces(config))
        _read_pods_as(template, account)
    storage_volume = _storage_volume(kind, name, namespace, spec) if state_paths else None
    if storage_volume is not None:
        template["spec"]["volumes"].append(storage_volume)
    workload = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": _metadata(name, namespace, name),
        "spec": _workload_spec(kind, name, spec, template, bool(state_paths), bool(ports)),
    }
    service = _service(name, namespace, spec, ports) if ports else None
    resources = AgentResources(config_map, workload, service, _metrics_service(name, namespace, spec),
                               disruption_budget(name, namespace, spec, kind), config_hash, ports, notes,
                               service_account, cluster_objects)
    kopf.append_owner_reference(resources.children, owner=cast(kopf.Body, agent))  # kopf reads its metadata
    return resources


def _read_pods_as(template: dict[str, Any], account: str) -> None:
    """The pod runs as `account`, and knows its node (the interceptor watches only that node's pods)."""
    template["spec"]["serviceAccountName"] = account
    container = template["spec"]["containers"][0]
    node = {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    container["env"] = [node, *(e for e in container.get("env", ()) if e.get("name") != "NODE_NAME")]


def endpoints(agent: Mapping[str, Any], ports: list[ListeningPort]) -> list[dict[str, Any]]:
    """Where clients send events: the Service's cluster DNS name and each source's port."""
    host = f"{agent['metadata']['name']}.{agent['metadata']['namespace']}.svc"
    return [{"source": p.source, "address": f"{host}:{p.port}", "protocol": p.protocol} for p in ports]


def _metadata(name: str, namespace: str, instance: str,
              annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels(instance)}
    if annotations:
        result["annotations"] = dict(annotations)
    return result


def _optional(spec: Mapping[str, Any], *keys: str, rename: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The keys of `spec` that are set, under their Kubernetes names."""
    rename = rename or {}
    return {rename.get(key, key): spec[key] for key in keys if spec.get(key) not in (None, "", [], {})}


def _container(spec: Mapping[str, Any], agent_name: str, ports: list[ListeningPort],
               state_paths: list[str], image: str, stop: Shutdown) -> dict[str, Any]:
    metrics = metrics_port(spec)
    probe = {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 10}
    mounts = [{"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True}]
    mounts += [{"name": DATA_VOLUME, "mountPath": path, "subPath": _sub_path(path)} for path in state_paths]
    mounts += list(spec.get("volumeMounts", []))
    return {
        "name": CONTAINER,
        "image": spec.get("image") or image,
        **_optional(spec, "imagePullPolicy"),
        "command": ["kubeflume-agent"],
        "args": ["-n", agent_name, "-f", f"{CONFIG_DIR}/{CONFIG_FILE}", "--metrics-port", str(metrics),
                 "--drain-timeout", str(stop.drain_seconds)],
        "ports": [{"name": "metrics", "containerPort": metrics, "protocol": "TCP"}]
        + [{"name": p.name, "containerPort": p.port, "protocol": p.protocol} for p in ports],
        **_optional(spec, "env", "resources", "securityContext"),
        "volumeMounts": mounts,
        "readinessProbe": probe,
        "livenessProbe": {**probe, "httpGet": {"path": "/healthz", "port": "metrics"}, "failureThreshold": 6},
        "lifecycle": {"preStop": {"exec": {"command": [
            "/bin/sh", "-c", f"kill -USR1 {AGENT_PID}; sleep {stop.prestop_seconds}"]}}},
    }


def _pod_template(name: str, spec: Mapping[str, Any], agent_name: str, config_hash: str,
                  ports: list[ListeningPort], state_paths: list[str], *, image: str,
                  stop: Shutdown) -> dict[str, Any]:
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(metrics_port(spec)),
        "prometheus.io/path": "/prometheus",
        **spec.get("podAnnotations", {}),
        CONFIG_HASH_ANNOTATION: config_hash,
    }
    volumes = [{"name": CONFIG_VOLUME, "configMap": {"name": f"{name}-config"}}, *spec.get("volumes", [])]
    return {
        "metadata": {"labels": {**spec.get("podLabels", {}), **labels(name)}, "annotations": annotations},
        "spec": {
            "containers": [_container(spec, agent_name, ports, state_paths, image, stop)],
            "volumes": volumes,
            "terminationGracePeriodSeconds": stop.grace_seconds,
            **_optional(spec, "serviceAccountName", "nodeSelector", "tolerations", "affinity",
                        "podSecurityContext", rename={"podSecurityContext": "securityContext"}),
        },
    }


def _storage_volume(kind: str, name: str, namespace: str, spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `data` volume; a StatefulSet gets a volumeClaimTemplate instead (None here)."""
    if kind == STATEFULSET:
        return None
    if kind == DAEMONSET:
        host_path = f"{HOST_STATE_ROOT}/{namespace}/{name}"
        return {"name": DATA_VOLUME, "hostPath": {"path": host_path, "type": "DirectoryOrCreate"}}
    return {"name": DATA_VOLUME, "emptyDir": {}}


def _volume_claim_template(spec: Mapping[str, Any]) -> dict[str, Any]:
    storage = spec.get("storage", {})
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.get("size", DEFAULT_STORAGE_SIZE)}},
    }
    if storage.get("storageClassName"):
        claim_spec["storageClassName"] = storage["storageClassName"]
    return {"metadata": {"name": DATA_VOLUME}, "spec": claim_spec}


def _workload_spec(kind: str, name: str, spec: Mapping[str, Any], template: dict[str, Any],
                   needs_storage: bool, listens: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"selector": {"matchLabels": selector_labels(name)}, "template": template}
    if kind != DAEMONSET:
        result["replicas"] = replicas(spec)
    if kind == STATEFULSET:
        result["serviceName"] = name
        result["podManagementPolicy"] = "Parallel"  # agents do not wait for each other to scale
        result["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
        # Claims outlive a scale-down (the operator drains them) and the FlumeAgent itself.
        result["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Retain", "whenScaled": "Retain"}
        if needs_storage:
            result["volumeClaimTemplates"] = [_volume_claim_template(spec)]
    if kind == DEPLOYMENT and listens:
        # A new pod is ready before an old one stops, so clients always find an endpoint.
        result["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    return result


def replicas(spec: Mapping[str, Any]) -> int:
    return int(spec.get("replicas", 1))


def disruption_budget(name: str, namespace: str, spec: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """A PodDisruptionBudget: by default for 2+ replicas, maxUnavailable 1; spec.disruptionBudget
    turns it on or off and sets maxUnavailable or minAvailable."""
    asked = spec.get("disruptionBudget", {})
    wanted = kind != DAEMONSET and replicas(spec) >= 2
    if not asked.get("enabled", wanted):
        return None
    limits = _optional(asked, "maxUnavailable", "minAvailable") or {"maxUnavailable": 1}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(name, namespace, name),
        "spec": {"selector": {"matchLabels": selector_labels(name)}, **limits},
    }


def _metrics_service(name: str, namespace: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Headless: it only lists the pods' metrics endpoints, for Prometheus' service discovery."""
    metadata = _metadata(f"{name}-metrics", namespace, name)
    metadata["labels"][METRICS_SERVICE_LABEL] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(name),
            "ports": [{"name": "metrics", "port": metrics_port(spec), "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


def _service(name: str, namespace: str, spec: Mapping[str, Any], ports: list[ListeningPort]) -> dict[str, Any]:
    service = spec.get("service", {})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, namespace, name, service.get("annotations")),
        "spec": {
            "type": service.get("type", "ClusterIP"),
            "selector": selector_labels(name),
            "ports": [{"name": p.name, "port": p.port, "targetPort": p.port, "protocol": p.protocol} for p in ports],
        },
    }
