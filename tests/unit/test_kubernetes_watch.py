"""PodWatch against a scripted API server on a real socket: what a real one cannot be made to do on
demand (expire a resourceVersion: 410 Gone; delete a pod while the watch is down)."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web
from kubernetes.client import Configuration

from kubeflume_agent.protocols.kubernetes_watch import PodWatch


def pod(name: str, version: str) -> dict:
    return {"metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}", "resourceVersion": version,
                         "labels": {"app": name}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "shop:1"}]},
            "status": {"containerStatuses": [{"name": "app", "containerID": f"containerd://id-{name}"}]}}


class ScriptedApi:
    """First list: pod a at version 10; a watch from 10 answers 410 Gone (as an ERROR event); the
    second list: only pod b at version 20 (a was deleted meanwhile); a watch from 20 stays open."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.lists = 0

    async def pods(self, request: web.Request) -> web.StreamResponse:
        self.requests.append({**request.query, "authorization": request.headers.get("Authorization", "")})
        if "watch" not in request.query:
            self.lists += 1
            items, version = ([pod("a", "10")], "10") if self.lists == 1 else ([pod("b", "20")], "20")
            return web.json_response({"metadata": {"resourceVersion": version}, "items": items})
        response = web.StreamResponse()
        await response.prepare(request)
        if request.query["resourceVersion"] == "10":
            gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
            await response.write(orjson.dumps(gone) + b"\n")
            return response
        await response.write(orjson.dumps({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "21"}}})
                             + b"\n")
        await asyncio.sleep(3600)
        return response


async def test_gone_means_a_new_list_and_pods_deleted_meanwhile_are_kept_for_their_late_lines():
    api = ScriptedApi()
    app = web.Application()
    app.router.add_get("/api/v1/pods", api.pods)
    runner = web.AppRunner(app, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    configuration = Configuration(host=f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")
    configuration.api_key = {"authorization": "Bearer s3cret"}
    now = [1000.0]
    watch = PodWatch(lambda: configuration, node="node-a", deleted_ttl=60, clock=lambda: now[0])
    await watch.start()
    try:
        for _ in range(500):
            if watch.lists == 2 and any(r.get("resourceVersion") == "20" for r in api.requests):
                break
            await asyncio.sleep(0.01)
        assert watch.lists == 2
        a, b = watch.lookup("shop", "a", ""), watch.lookup("shop", "b", "id-b")
        assert a.deleted_at == 1000.0 and a.labels == {"app": "a"}
        assert watch.lookup("other", "x", "id-a") is a  # by container id first
        assert b.deleted_at is None and b.images == {"app": "shop:1"}
        assert {r["fieldSelector"] for r in api.requests} == {"spec.nodeName=node-a"}
        assert {r["authorization"] for r in api.requests} == {"Bearer s3cret"}
        now[0] += 60
        watch._expire(now[0])
        assert watch.lookup("shop", "a", "id-a") is None
    finally:
        await watch.stop()
        await runner.cleanup()


def test_the_interceptor_leaves_events_that_are_no_container_logs_alone_and_counts_them():
    from kubeflume_agent.config.keys import resolve
    from kubeflume_agent.core.event import Event
    from kubeflume_agent.core.registry import lookup

    interceptor_class = lookup("interceptor", "kubernetes")
    settings, _ = resolve(interceptor_class.config_class, {"nodeName": "node-a"})
    interceptor = interceptor_class(settings, watch=PodWatch(Configuration, node="node-a", deleted_ttl=60))
    events = [Event(b"no file header"), Event(b"not a container log", {"file": "/var/log/syslog"}),
              Event(b"x", {"file": "/var/log/containers/web-1_shop_app-" + "ab" * 32 + ".log"})]
    kept = interceptor.intercept(events)
    assert [e.headers for e in kept[:2]] == [{}, {"file": "/var/log/syslog"}]
    assert kept[2].headers["kubernetes.pod"] == "web-1" and kept[2].headers["kubernetes.namespace"] == "shop"
    assert kept[2].headers["kubernetes.containerId"] == "ab" * 32
    assert (interceptor.counters.no_file, interceptor.counters.file_name_only) == (2, 1)


def test_a_batch_mixing_files_keeps_each_files_labels_and_drops_only_excluded_pods():
    from kubeflume_agent.config.keys import resolve
    from kubeflume_agent.core.event import Event
    from kubeflume_agent.core.registry import lookup
    from kubeflume_agent.protocols.kubernetes_watch import Pod

    watch = PodWatch(Configuration, node="node-a", deleted_ttl=60)
    watch._put(Pod("shop", "web-1", "uid-1", "node-a", {"app": "web"}, {}, {"app": "shop:1"}))
    watch._put(Pod("shop", "noisy", "uid-2", "node-a", {}, {"kubeflume.io/exclude": "true"}, {"app": "n:1"}))
    interceptor_class = lookup("interceptor", "kubernetes")
    settings, _ = resolve(interceptor_class.config_class, {"nodeName": "node-a"})
    interceptor = interceptor_class(settings, watch=watch)

    def line(pod: str, body: bytes) -> Event:
        return Event(body, {"file": f"/var/log/containers/{pod}_shop_app-{'ab' * 32}.log"})

    kept = interceptor.intercept([line("web-1", b"1"), line("noisy", b"x"), line("web-1", b"2"), line("noisy", b"y")])
    assert [(e.body, e.headers["kubernetes.labels.app"], e.headers["kubernetes.podUid"]) for e in kept] == [
        (b"1", "web", "uid-1"), (b"2", "web", "uid-1")]
    assert interceptor.counters.excluded == 2
    watch._put(Pod("shop", "web-1", "uid-1", "node-a", {"app": "web-v2"}, {}, {"app": "shop:1"}))
    assert interceptor.intercept([line("web-1", b"3")])[0].headers["kubernetes.labels.app"] == "web-v2"
