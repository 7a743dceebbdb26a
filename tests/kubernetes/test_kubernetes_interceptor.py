"""The kubernetes interceptor behind a taildir source on a kubelet-written log tree, against a real
API server: pods exist there with labels, uid and spec.nodeName (they stay Pending: no kubelet)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from tests.integration.kubelet_logs import KubeletLogs
from tests.integration.source_harness import config_for, running_source, take_all, wait_for
from tests.kubernetes.cluster import PODS, Cluster

NAMESPACES = "v1/namespaces"

pytestmark = pytest.mark.kubernetes

NODE = "node-a"
IMAGE = "registry.test/shop/web:1.2"


def create_pod(cluster: Cluster, namespace: str, name: str, *, node: str = NODE, labels=None,
               annotations=None) -> dict:
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": {"nodeName": node, "automountServiceAccountToken": False,
                     "containers": [{"name": "app", "image": IMAGE}]}}
    return cluster.create(PODS, body)


class ApiProxy:
    """A TCP forwarder in front of the API server that the test can take down and bring back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _forward(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {client_writer, server_writer}
        await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer))

    async def _pipe(self, reader, writer) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
        self._writers.discard(writer)


def kubeconfig_through(cluster: Cluster, port: int, folder: Path) -> Path:
    """The cluster's kubeconfig, with the server's address changed to 127.0.0.1:`port`."""
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = folder / "proxied.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def api_port(cluster: Cluster) -> int:
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    return int(config["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def pipeline(tmp_path: Path, kubeconfig: Path, **interceptor_params: str) -> AsyncIterator:
    """taildir (lineFormat cri) -> kubernetes interceptor -> memory channel: (source, channel, interceptor)."""
    interceptor_class, settings = config_for("interceptor", "kubernetes", {
        "kubeconfig": str(kubeconfig), "nodeName": NODE, **interceptor_params})
    interceptor = interceptor_class(settings)
    params = {"filegroups": "containers", "filegroups.containers": str(tmp_path / "containers" / r".*\.log"),
              "positionFile": str(tmp_path / "state" / "positions.json"), "lineFormat": "cri",
              "fileHeader": "true", "backoffSleepIncrement": "1", "maxBackoffSleep": "2"}
    async with running_source("TAILDIR", params, interceptors=[interceptor]) as (source, channel):
        yield source, channel, interceptor


async def next_events(source, channel, count: int) -> list:
    """Poll the source until `count` events arrived."""
    events = []

    async def arrived() -> bool:
        await source.process()
        events.extend(await take_all(channel))
        return len(events) >= count

    await wait_for(arrived, what=f"{count} events")
    return events


async def until_header(source, channel, log, header: str, value: str, what: str) -> None:
    """Write lines until one arrives with `header` = `value`: the watch's news reaches events in time."""
    async def arrived() -> bool:
        log.write("after")
        events = await next_events(source, channel, 1)
        return events[-1].headers.get(header) == value

    await wait_for(arrived, what=what)


async def wait_until_watched(interceptor, namespace: str, name: str) -> None:
    await wait_for(lambda: (namespace, name) in interceptor.watch.pods, what=f"the watch to see pod {name}")


async def wait_until_namespace_watched(interceptor, namespace: str) -> None:
    await wait_for(lambda: interceptor.namespace_watch.lookup(namespace) is not None,
                   what=f"the watch to see namespace {namespace}")


async def test_labels_annotations_uid_node_and_image_arrive(cluster, namespace, tmp_path):
    pod = create_pod(cluster, namespace, "web-1", labels={"app": "shop", "tier": "web"},
                     annotations={"team": "pay", "other": "x"})
    create_pod(cluster, namespace, "elsewhere", node="node-b")
    node = KubeletLogs(tmp_path)
    log = node.container(namespace, "web-1", pod["metadata"]["uid"], "app", "c0ffee" * 10 + "beef")
    async with pipeline(tmp_path, cluster.kubeconfig, labels="*", annotations="team") as (source, channel, k8s):
        await wait_until_watched(k8s, namespace, "web-1")
        assert (namespace, "elsewhere") not in k8s.watch.pods  # another node's pod is not watched
        log.write("hello")
        [event] = await next_events(source, channel, 1)
    assert event.body == b"hello"
    assert event.headers == {
        "stream": "stdout", "timestamp": event.headers["timestamp"], "file": str(log.link),
        "kubernetes.namespace": namespace, "kubernetes.pod": "web-1", "kubernetes.container": "app",
        "kubernetes.containerId": "c0ffee" * 10 + "beef", "kubernetes.node": NODE,
        "kubernetes.podUid": pod["metadata"]["uid"], "kubernetes.containerImage": IMAGE,
        "kubernetes.labels.app": "shop", "kubernetes.labels.tier": "web", "kubernetes.annotations.team": "pay",
    }
    assert k8s.counters.file_name_only == 0
    assert k8s.namespace_watch is None  # not asked for namespace metadata: namespaces are not watched


async def test_namespace_labels_and_annotations_arrive_when_asked(cluster, namespace, tmp_path):
    cluster.patch(NAMESPACES, None, namespace, {"metadata": {"labels": {"tenant": "blue", "other": "x"},
                                                             "annotations": {"owner": "pay"}}})
    pod = create_pod(cluster, namespace, "web-1", labels={"app": "shop"})
    log = KubeletLogs(tmp_path).container(namespace, "web-1", pod["metadata"]["uid"], "app", "f6" * 32)
    async with pipeline(tmp_path, cluster.kubeconfig, labels="app", namespaceLabels="tenant",
                        namespaceAnnotations="*") as (source, channel, k8s):
        await wait_until_watched(k8s, namespace, "web-1")
        await wait_until_namespace_watched(k8s, namespace)
        log.write("hello")
        [event] = await next_events(source, channel, 1)
    namespaced = {name: value for name, value in event.headers.items() if name.startswith("kubernetes.namespace")}
    assert namespaced == {"kubernetes.namespace": namespace, "kubernetes.namespaceLabels.tenant": "blue",
                          "kubernetes.namespaceAnnotations.owner": "pay"}
    assert event.headers["kubernetes.labels.app"] == "shop"


async def test_a_namespace_label_change_reaches_events_through_the_watch(cluster, namespace, tmp_path):
    cluster.patch(NAMESPACES, None, namespace, {"metadata": {"labels": {"tenant": "blue"}}})
    pod = create_pod(cluster, namespace, "web-1")
    log = KubeletLogs(tmp_path).container(namespace, "web-1", pod["metadata"]["uid"], "app", "a7" * 32)
    async with pipeline(tmp_path, cluster.kubeconfig, namespaceLabels="tenant") as (source, channel, k8s):
        await wait_until_watched(k8s, namespace, "web-1")
        await wait_until_namespace_watched(k8s, namespace)
        log.write("before")
        [before] = await next_events(source, channel, 1)
        lists = k8s.namespace_watch.lists
        cluster.patch(NAMESPACES, None, namespace, {"metadata": {"labels": {"tenant": "green"}}})
        await until_header(source, channel, log, "kubernetes.namespaceLabels.tenant", "green",
                           "the new namespace label on events")
        assert k8s.namespace_watch.lists == lists  # a watch event, not a new list
    assert before.headers["kubernetes.namespaceLabels.tenant"] == "blue"


async def test_a_label_change_reaches_events_through_the_watch(cluster, namespace, tmp_path):
    pod = create_pod(cluster, namespace, "web-1", labels={"version": "1"})
    log = KubeletLogs(tmp_path).container(namespace, "web-1", pod["metadata"]["uid"], "app", "a1" * 32)
    async with pipeline(tmp_path, cluster.kubeconfig) as (source, channel, k8s):
        await wait_until_watched(k8s, namespace, "web-1")
        log.write("before")
        [before] = await next_events(source, channel, 1)
        cluster.patch(PODS, namespace, "web-1", {"metadata": {"labels": {"version": "2"}}})
        lists = k8s.watch.lists
        await until_header(source, channel, log, "kubernetes.labels.version", "2", "the new label on events")
        assert k8s.watch.lists == lists  # a watch event, not a new list
    assert before.headers["kubernetes.labels.version"] == "1"


async def test_late_lines_of_a_deleted_pod_are_still_labelled(cluster, namespace, tmp_path):
    pod = create_pod(cluster, namespace, "job-1", labels={"app": "batch"})
    log = KubeletLogs(tmp_path).container(namespace, "job-1", pod["metadata"]["uid"], "app", "b2" * 32)
    async with pipeline(tmp_path, cluster.kubeconfig) as (source, channel, k8s):
        await wait_until_watched(k8s, namespace, "job-1")
        cluster.delete(PODS, namespace, "job-1", gracePeriodSeconds=0)
        await wait_for(lambda: k8s.watch.pods[(namespace, "job-1")].deleted_at is not None,
                       what="the watch to see the deletion")
        log.write("last words")
        [event] = await next_events(source, channel, 1)
    assert event.headers["kubernetes.labels.app"] == "batch"
    assert event.headers["kubernetes.podUid"] == pod["metadata"]["uid"]


async def test_excluded_pods_are_dropped_and_counted(cluster, namespace, tmp_path):
    quiet = create_pod(cluster, namespace, "noisy", annotations={"kubeflume.io/exclude": "true"})
    kept = create_pod(cluster, namespace, "web-1")
    node = KubeletLogs(tmp_path)
    noisy_log = node.container(namespace, "noisy", quiet["metadata"]["uid"], "app", "c3" * 32)
    web_log = node.container(namespace, "web-1", kept["metadata"]["uid"], "app", "d4" * 32)
    async with pipeline(tmp_path, cluster.kubeconfig) as (source, channel, k8s):
        await wait_until_watched(k8s, namespace, "noisy")
        await wait_until_watched(k8s, namespace, "web-1")
        noisy_log.write("spam")
        noisy_log.write("spam")
        web_log.write("kept")
        events = await next_events(source, channel, 1)
        await source.process()
        events += await take_all(channel)
    assert [e.body for e in events] == [b"kept"]
    assert k8s.counters.excluded == 2


async def test_with_the_api_down_events_flow_with_file_name_metadata(cluster, namespace, tmp_path):
    pod = create_pod(cluster, namespace, "web-1", labels={"app": "shop"})
    log = KubeletLogs(tmp_path).container(namespace, "web-1", pod["metadata"]["uid"], "app", "e5" * 32)
    proxy = ApiProxy(api_port(cluster))
    await proxy.up()
    await proxy.down()  # the API cannot be reached when the agent starts
    kubeconfig = kubeconfig_through(cluster, proxy.port, tmp_path)
    async with pipeline(tmp_path, kubeconfig) as (source, channel, k8s):
        log.write("while the API is down")
        [down] = await next_events(source, channel, 1)
        assert k8s.counters.file_name_only == 1
        await proxy.up()
        await wait_until_watched(k8s, namespace, "web-1")
        log.write("once it is back")
        [back] = await next_events(source, channel, 1)
        await proxy.down()
    assert down.headers == {"stream": "stdout", "timestamp": down.headers["timestamp"], "file": str(log.link),
                            "kubernetes.namespace": namespace, "kubernetes.pod": "web-1",
                            "kubernetes.container": "app", "kubernetes.containerId": "e5" * 32,
                            "kubernetes.node": NODE}
    assert back.headers["kubernetes.labels.app"] == "shop"
    assert k8s.counters.file_name_only == 1


async def test_with_the_api_down_namespace_metadata_is_left_out_and_events_flow(cluster, namespace, tmp_path):
    cluster.patch(NAMESPACES, None, namespace, {"metadata": {"labels": {"tenant": "blue"}}})
    pod = create_pod(cluster, namespace, "web-1", labels={"app": "shop"})
    log = KubeletLogs(tmp_path).container(namespace, "web-1", pod["metadata"]["uid"], "app", "b8" * 32)
    proxy = ApiProxy(api_port(cluster))
    await proxy.up()
    await proxy.down()
    kubeconfig = kubeconfig_through(cluster, proxy.port, tmp_path)
    async with pipeline(tmp_path, kubeconfig, namespaceLabels="*") as (source, channel, k8s):
        log.write("while the API is down")
        [down] = await next_events(source, channel, 1)
        await proxy.up()
        await wait_until_watched(k8s, namespace, "web-1")
        await wait_until_namespace_watched(k8s, namespace)
        log.write("once it is back")
        [back] = await next_events(source, channel, 1)
        await proxy.down()
    assert not any(name.startswith("kubernetes.namespaceLabels.") for name in down.headers)
    assert back.headers["kubernetes.namespaceLabels.tenant"] == "blue"


