"""The `kubernetes` interceptor: container log events labelled with the pod they came from.

What the log file's name tells (`/var/log/containers/<pod>_<namespace>_<container>-<id>.log`, read
from the taildir `file` header) is joined with what the API says of that pod (uid, node, image,
labels, annotations), from a local copy kept by a watch (protocols/kubernetes_watch.py): an event
never waits for the API. While the API cannot be read, or before the watch has seen a pod, events
go on with the file name's metadata alone, counted in EventFileNameOnlyCount. Pods annotated
`kubeflume.io/exclude: "true"` are dropped (EventExcludedCount). Namespace labels and annotations
come from a second copy, of the namespaces, kept only when `namespaceLabels` or
`namespaceAnnotations` names some. The headers of one file are built once per version of the
copies, so labelling an event is one dict update.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from kubeflume_agent.config.keys import Config, comma_list, key, non_negative_integer
from kubeflume_agent.core.counters import Counters, flume
from kubeflume_agent.core.event import Event
from kubeflume_agent.interceptors.base import Interceptor
from kubeflume_agent.protocols.kubernetes_watch import NamespaceWatch, Pod, PodWatch, client_configuration

PREFIX = "kubernetes."
EXCLUDE_ANNOTATION = "kubeflume.io/exclude"
# the kubelet's name for a container's log: pod names and namespaces hold no "_"; the id comes last
LOG_NAME = re.compile(r"(?P<pod>[^_]+)_(?P<namespace>[^_]+)_(?P<container>.+)-(?P<id>[0-9a-z]+)\.log")


@dataclass(eq=False)
class KubernetesCounters(Counters):
    TYPE = "INTERCEPTOR"
    file_name_only: int = flume("EventFileNameOnlyCount")  # the API had nothing (yet) for the pod
    excluded: int = flume("EventExcludedCount")  # dropped: kubeflume.io/exclude
    no_file: int = flume("EventNoFileHeaderCount")  # no file header, or a name that is not a container log's


def selection(text: str) -> tuple[str, ...]:
    """Which labels or annotations: `*` (all of them) or a comma list of keys."""
    return tuple(comma_list(text))


@dataclass(frozen=True)
class KubernetesConfig(Config):
    kubeconfig: str = key("kubeconfig", str, "", doc="kubeconfig file; empty: the pod's service account (in-cluster)")
    node_name: str = key("nodeName", str, "",
                         doc="watch only the pods of this node; empty: env NODE_NAME (else all pods)")
    labels: tuple[str, ...] = key("labels", selection, ("*",), doc="labels to add as headers: comma list, or *")
    annotations: tuple[str, ...] = key("annotations", selection, (),
                                       doc="annotations to add as headers: comma list, or *")
    namespace_labels: tuple[str, ...] = key("namespaceLabels", selection, (),
                                            doc="labels of the pod's namespace to add as headers: comma list, or *;"
                                                " empty: namespaces are not watched")
    namespace_annotations: tuple[str, ...] = key("namespaceAnnotations", selection, (),
                                                 doc="annotations of the pod's namespace to add as headers:"
                                                     " comma list, or *")
    cache_ttl: int = key("cacheTtl", non_negative_integer, 300000,
                         doc="ms a deleted pod is remembered, for its late lines")
    file_header: str = key("fileHeaderKey", str, "file",
                           doc="the header holding the log file's path (taildir fileHeader = true)")


class KubernetesInterceptor(Interceptor[KubernetesConfig]):
    """Adds kubernetes.namespace, .pod, .container, .containerId, .node, .podUid, .containerImage,
    .labels.<key>, .annotations.<key>, .namespaceLabels.<key>, .namespaceAnnotations.<key> from the
    log file's name and the Kubernetes API."""

    counters: KubernetesCounters

    def __init__(self, config: KubernetesConfig, *, watch: PodWatch | None = None,
                 namespace_watch: NamespaceWatch | None = None) -> None:
        super().__init__(config)
        self.node = self.config.node_name or os.environ.get("NODE_NAME", "")
        kubeconfig = self.config.kubeconfig or None
        ttl = self.config.cache_ttl / 1000
        self.watch = watch or PodWatch(lambda: client_configuration(kubeconfig), node=self.node, deleted_ttl=ttl)
        if namespace_watch is None and reads_namespaces(self.config):
            namespace_watch = NamespaceWatch(lambda: client_configuration(kubeconfig), deleted_ttl=ttl)
        self.namespace_watch = namespace_watch
        self.counters = KubernetesCounters()
        # file path -> (watch generation, headers or None to drop), for files whose pod is known
        self._files: dict[str | None, tuple[int, dict[str, str] | None]] = {}

    async def start(self) -> None:
        for watch in self._watches():
            await watch.start()
        self.counters.started()

    async def stop(self) -> None:
        for watch in self._watches():
            await watch.stop()
        self.counters.stopped()

    def _watches(self) -> list[PodWatch | NamespaceWatch]:
        return [self.watch] if self.namespace_watch is None else [self.watch, self.namespace_watch]

    def _generation(self) -> int:
        """Grows with every change of the copies the headers come from."""
        namespaces = self.namespace_watch.generation if self.namespace_watch is not None else 0
        return self.watch.generation + namespaces

    def intercept(self, events: list[Event]) -> list[Event]:
        header, files, generation = self.config.file_header, self._files, self._generation()
        last_path: object = files  # no path is this: the first event looks its file up
        headers: dict[str, str] | None = None
        dropped: list[Event] = []
        for event in events:
            path = event.headers.get(header)
            if path is not last_path:  # a batch of taildir holds lines of one file: looked up once
                known = files.get(path)
                headers = known[1] if known is not None and known[0] == generation else self._headers_of(path)
                last_path = path
            if headers is None:
                dropped.append(event)
            else:
                event.headers.update(headers)
        if not dropped:
            return events
        self.counters.excluded += len(dropped)
        gone = {id(event) for event in dropped}
        return [event for event in events if id(event) not in gone]

    def _headers_of(self, path: str | None) -> dict[str, str] | None:
        """The headers of an event from `path` (None: drop it); kept while the pods do not change."""
        name = LOG_NAME.fullmatch(os.path.basename(path or ""))
        if name is None:
            self.counters.no_file += 1
            return {}
        pod = self.watch.lookup(name["namespace"], name["pod"], name["id"])
        if pod is None:
            self.counters.file_name_only += 1
            return self._from_name(name)
        headers = None if pod.annotations.get(EXCLUDE_ANNOTATION) == "true" else self._from_pod(name, pod)
        if len(self._files) > 10_000:  # files of long-gone containers
            self._files.clear()
        self._files[path] = (self._generation(), headers)
        return headers

    def _from_name(self, name: re.Match) -> dict[str, str]:
        headers = {PREFIX + "namespace": name["namespace"], PREFIX + "pod": name["pod"],
                   PREFIX + "container": name["container"], PREFIX + "containerId": name["id"]}
        if self.node:
            headers[PREFIX + "node"] = self.node
        headers.update(self._from_namespace(name["namespace"]))
        return headers

    def _from_namespace(self, name: str) -> dict[str, str]:
        """The namespace's selected labels and annotations: none while its copy does not have it."""
        namespace = self.namespace_watch.lookup(name) if self.namespace_watch is not None else None
        if namespace is None:
            return {}
        return {**_selected(PREFIX + "namespaceLabels.", namespace.labels, self.config.namespace_labels),
                **_selected(PREFIX + "namespaceAnnotations.", namespace.annotations,
                            self.config.namespace_annotations)}

    def _from_pod(self, name: re.Match, pod: Pod) -> dict[str, str]:
        headers = self._from_name(name)
        headers[PREFIX + "node"] = pod.node or self.node
        headers[PREFIX + "podUid"] = pod.uid
        image = pod.images.get(name["container"])
        if image:
            headers[PREFIX + "containerImage"] = image
        headers.update(_selected(PREFIX + "labels.", pod.labels, self.config.labels))
        headers.update(_selected(PREFIX + "annotations.", pod.annotations, self.config.annotations))
        return headers


def reads_namespaces(config: KubernetesConfig) -> bool:
    """Whether namespaces are watched: only when some of their labels or annotations are asked for."""
    return bool(config.namespace_labels or config.namespace_annotations)


def _selected(prefix: str, values: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    every = names == ("*",)
    return {prefix + key: value for key, value in values.items() if every or key in names}
