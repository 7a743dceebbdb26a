"""The http sink against a real aiohttp server: Flume's per-status rules, failures, JSON batches."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from kubeflume_agent.core.event import Event
from kubeflume_agent.core.registry import lookup
from kubeflume_agent.core.status import Status
from kubeflume_agent.sinks.http import HttpSink, StatusRules
from tests.integration.source_harness import config_for, memory_channel, put_all, running_sink

pytestmark = pytest.mark.timeout(60)

DELIVER_2XX = {"rollback.2XX": "false", "backoff.2XX": "false", "incrementMetrics.2XX": "true"}


class Endpoint:
    """A test HTTP server answering with scripted statuses and recording what it received."""

    def __init__(self) -> None:
        self.statuses: list[int] = []  # answered in order; 200 once exhausted
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.hang = False
        self._release = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hang:
            await self._release.wait()
        self.received.append((body, dict(request.headers)))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok")

    @property
    def bodies(self) -> list[bytes]:
        return [body for body, _ in self.received]

    def release(self) -> None:
        self._release.set()


@pytest.fixture
async def endpoint():
    server = Endpoint()
    app = web.Application()
    app.router.add_post("/events", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}/events"
    yield server
    server.release()
    await runner.cleanup()


def sink_settings(params: dict[str, str]):
    return config_for("sink", "http", params)[1]


def http_sink(url: str, **params: str):
    return running_sink("http", {"endpoint": url, **params}, channel=memory_channel(1000, 100))


def events(count: int) -> list[Event]:
    return [Event(f"e{n}".encode(), {"n": str(n)}) for n in range(count)]


def test_registered_under_flume_names():
    assert lookup("sink", "http") is HttpSink
    assert lookup("sink", "org.apache.flume.sink.http.HttpSink") is HttpSink


async def test_flume_defaults_roll_back_and_back_off_even_on_200(endpoint):
    async with http_sink(endpoint.url) as (sink, channel):
        await put_all(channel, events(1))
        assert await sink.process() is Status.BACKOFF
        assert channel.size == 1
        assert sink.counters.drain_success == 0
    assert endpoint.bodies == [b"e0"]


async def test_delivers_each_event_as_a_post_with_the_configured_headers(endpoint):
    params = {**DELIVER_2XX, "contentTypeHeader": "application/x-test", "acceptHeader": "text/x-reply",
              "batchSize": "10"}
    async with http_sink(endpoint.url, **params) as (sink, channel):
        await put_all(channel, events(15))
        assert await sink.process() is Status.READY
        assert await sink.process() is Status.READY
        assert await sink.process() is Status.BACKOFF
        assert channel.size == 0
        assert sink.counters.drain_success == 15
        assert (sink.counters.batch_complete, sink.counters.batch_underflow, sink.counters.batch_empty) == (1, 1, 1)
    assert endpoint.bodies == [f"e{n}".encode() for n in range(15)]
    _, headers = endpoint.received[0]
    assert headers["Content-Type"] == "application/x-test"
    assert headers["Accept"] == "text/x-reply"


async def test_status_rules_most_specific_wins(endpoint):
    params = {**DELIVER_2XX, "rollback.5XX": "true", "rollback.503": "false", "backoff.503": "false",
              "incrementMetrics.503": "false"}
    endpoint.statuses = [503, 500]
    async with http_sink(endpoint.url, **params) as (sink, channel):
        await put_all(channel, events(2))
        assert await sink.process() is Status.BACKOFF  # 503 committed (dropped on purpose), 500 rolled back
        assert channel.size == 1
        assert sink.counters.drain_success == 0
        assert await sink.process() is Status.READY  # e1 again, now 200
        assert channel.size == 0
        assert sink.counters.drain_success == 1
    assert endpoint.bodies == [b"e0", b"e1", b"e1"]


async def test_default_keys_decide_statuses_without_a_rule(endpoint):
    params = {"defaultRollback": "false", "defaultBackoff": "false", "defaultIncrementMetrics": "true",
              "rollback.4XX": "true", "backoff.4XX": "true", "incrementMetrics.4XX": "false"}
    endpoint.statuses = [404, 201]
    async with http_sink(endpoint.url, **params) as (sink, channel):
        await put_all(channel, events(1))
        assert await sink.process() is Status.BACKOFF
        assert (channel.size, sink.counters.drain_success) == (1, 0)
        await sink.process()
        assert (channel.size, sink.counters.drain_success) == (0, 1)
    assert endpoint.bodies == [b"e0", b"e0"]


async def test_rollback_without_backoff_retries_at_once(endpoint):
    params = {**DELIVER_2XX, "backoff.503": "false"}
    endpoint.statuses = [503]
    async with http_sink(endpoint.url, **params) as (sink, channel):
        await put_all(channel, events(1))
        assert await sink.process() is Status.READY
        assert channel.size == 1
        await sink.process()
        assert channel.size == 0
    assert endpoint.bodies == [b"e0", b"e0"]


async def test_server_errors_then_recovery_deliver_everything_once(endpoint):
    endpoint.statuses = [500, 500, 503]
    async with http_sink(endpoint.url, **DELIVER_2XX) as (sink, channel):
        await put_all(channel, events(5))
        while channel.size:
            await sink.process()
        assert sink.counters.drain_success == 5
    delivered = endpoint.bodies[3:]
    assert delivered == [b"e0", b"e1", b"e2", b"e3", b"e4"]


async def test_unreachable_endpoint_rolls_back(endpoint):
    async with http_sink("http://127.0.0.1:1/nothing", **DELIVER_2XX) as (sink, channel):
        await put_all(channel, events(2))
        assert await sink.process() is Status.BACKOFF
        assert channel.size == 2
        assert sink.counters.event_write_fail == 1


async def test_request_timeout_rolls_back(endpoint):
    endpoint.hang = True
    async with http_sink(endpoint.url, requestTimeout="200", **DELIVER_2XX) as (sink, channel):
        await put_all(channel, events(1))
        assert await sink.process() is Status.BACKOFF
        assert channel.size == 1


async def test_empty_bodies_are_taken_without_a_request(endpoint):
    async with http_sink(endpoint.url, **DELIVER_2XX) as (sink, channel):
        await put_all(channel, [Event(b""), Event(b"x")])
        await sink.process()
        assert channel.size == 0
    assert endpoint.bodies == [b"x"]


async def test_json_batch_sends_one_array_per_batch(endpoint):
    async with http_sink(endpoint.url, jsonBatch="true", batchSize="4", **DELIVER_2XX) as (sink, channel):
        await put_all(channel, events(6))
        assert await sink.process() is Status.READY
        assert await sink.process() is Status.READY
        assert channel.size == 0
        assert sink.counters.drain_success == 6
    first, second = (json.loads(body) for body in endpoint.bodies)
    assert first == [{"headers": {"n": str(n)}, "body": f"e{n}"} for n in range(4)]
    assert len(second) == 2
    assert endpoint.received[0][1]["Content-Type"].startswith("application/json")


async def test_json_batch_rolls_back_the_whole_batch(endpoint):
    endpoint.statuses = [500]
    async with http_sink(endpoint.url, jsonBatch="true", **DELIVER_2XX) as (sink, channel):
        await put_all(channel, events(3))
        assert await sink.process() is Status.BACKOFF
        assert channel.size == 3
        await sink.process()
        assert channel.size == 0
    assert json.loads(endpoint.bodies[0]) == json.loads(endpoint.bodies[1])


async def test_json_batch_refuses_binary_bodies_and_keeps_them(endpoint):
    async with http_sink(endpoint.url, jsonBatch="true", **DELIVER_2XX) as (sink, channel):
        await put_all(channel, [Event(b"\xff\xfe")])
        with pytest.raises(ValueError, match="UTF-8"):
            await sink.process()
        assert channel.size == 1
    assert endpoint.bodies == []


def test_status_rules():
    rules = StatusRules(True, {"5xx": False, "503": True, "200": False})
    assert rules.decide(503) is True
    assert rules.decide(500) is False
    assert rules.decide(200) is False
    assert rules.decide(201) is True


@pytest.mark.parametrize(("params", "key"), [
    ({"endpoint": "ftp://x"}, "endpoint"),
    ({"endpoint": "http://x", "backoff.600": "true"}, "backoff.600"),
    ({"endpoint": "http://x", "rollback.5X": "true"}, "rollback.5X"),
])
def test_config_problems(params, key):
    assert key in dict(HttpSink.config_problems(sink_settings(params)))
