"""The metrics server over real sockets: Flume's JSON at /metrics, Prometheus text, the probes, and
a whole agent serving its own counters to the operator's scraper."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubeflume_agent.config.properties import parse_properties
from kubeflume_agent.core.counters import ChannelCounters, Counters, SinkCounters, SourceCounters
from kubeflume_agent.core.event import Event
from kubeflume_agent.runtime.agent import Agent
from kubeflume_agent.runtime.metrics import MetricsServer, java_double, prometheus_name
from kubeflume_operator.flumeagent.status import Counters as StatusCounters
from kubeflume_operator.flumeagent.status import PodView, scrape
from tests.integration.source_harness import memory_channel, wait_for

pytestmark = pytest.mark.timeout(60)


class Flag:
    """A ready() callable the test can flip."""

    def __init__(self, value: bool = True) -> None:
        self.value = value

    def __call__(self) -> bool:
        return self.value


@pytest.fixture
async def channel():
    """A real memory channel of capacity 8 holding 2 events (25% full)."""
    channel = memory_channel(capacity=8, transaction_capacity=8)
    await channel.start()
    tx = channel.transaction()
    tx.put_all([Event(b"one"), Event(b"two")])
    await tx.commit()
    yield channel
    await channel.stop()


@pytest.fixture
def components(channel) -> dict[str, Counters]:
    source = SourceCounters()
    source.started()
    source.events_received, source.events_accepted, source.append_batch_received = 12, 10, 3
    source.open_connections = 2
    sink = SinkCounters()
    sink.started()
    sink.drain_attempt, sink.drain_success = 7, 5
    sink.stopped()
    return {"SOURCE.r1": source, "CHANNEL.c1": channel.counters, "SINK.k1": sink}


@pytest.fixture
async def served(components):
    """(base URL, server, ready flag, client session) for a server on 127.0.0.1, port 0."""
    ready = Flag(True)
    server = MetricsServer(lambda: components, ready, "a1", "127.0.0.1", 0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield f"http://127.0.0.1:{server.port}", server, ready, session
    finally:
        await server.stop()


async def get(session: aiohttp.ClientSession, url: str, method: str = "GET") -> tuple[int, str, str]:
    async with session.request(method, url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_port_zero_binds_a_free_port_and_reports_it(served):
    base, server, _, session = served
    assert server.host == "127.0.0.1" and server.port > 0
    assert (await get(session, base + "/healthz"))[0] == 200


async def test_metrics_is_flumes_json_with_every_value_a_string(served, components):
    base, _, _, session = served
    async with session.get(base + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json;charset=utf-8"
        report = await response.json()
    assert list(report) == ["SOURCE.r1", "CHANNEL.c1", "SINK.k1"]
    assert all(isinstance(value, str) for values in report.values() for value in values.values())
    source, channel, sink = report["SOURCE.r1"], report["CHANNEL.c1"], report["SINK.k1"]
    assert [source["Type"], channel["Type"], sink["Type"]] == ["SOURCE", "CHANNEL", "SINK"]
    assert source["EventReceivedCount"] == "12" and source["EventAcceptedCount"] == "10"
    assert source["AppendBatchReceivedCount"] == "3" and source["OpenConnectionCount"] == "2"
    assert source["ChannelWriteFail"] == "0"
    assert channel["ChannelSize"] == "2" and channel["ChannelCapacity"] == "8"
    assert channel["ChannelFillPercentage"] == "25.0"
    assert channel["EventPutAttemptCount"] == "2" and channel["EventPutSuccessCount"] == "2"
    assert sink["EventDrainAttemptCount"] == "7" and sink["EventDrainSuccessCount"] == "5"
    for values in report.values():
        assert int(values["StartTime"]) > 0
    assert source["StopTime"] == "0" and int(sink["StopTime"]) >= int(sink["StartTime"])
    expected = {"Type", "StartTime", "StopTime", *SourceCounters.FLUME_NAMES.values()}
    assert set(source) == expected


async def test_fill_percentage_prints_like_a_java_double(served, components):
    base, _, _, session = served
    components["CHANNEL.c2"] = ChannelCounters(capacity=0)  # Flume's answer for no capacity
    components["CHANNEL.c3"] = ChannelCounters(capacity=3)
    components["CHANNEL.c3"].size = 1
    async with session.get(base + "/metrics") as response:
        report = await response.json()
    assert report["CHANNEL.c2"]["ChannelFillPercentage"] == "1.7976931348623157E308"
    assert report["CHANNEL.c3"]["ChannelFillPercentage"] == "33.333333333333336"


@pytest.mark.parametrize(("value", "java"), [
    (0.0, "0.0"), (12.5, "12.5"), (100.0, "100.0"), (0.001, "0.001"), (1.0e-4, "1.0E-4"),
    (9999999.0, "9999999.0"), (1.0e7, "1.0E7"), (123456789.0, "1.23456789E8"),
    (1.7976931348623157e308, "1.7976931348623157E308"), (5e-324, "4.9E-324"), (-2.5, "-2.5"),
    (float("nan"), "NaN"), (float("inf"), "Infinity"),
])
def test_java_double_formatting(value, java):
    assert java_double(value) == java


async def test_index_links_to_metrics_like_flume(served):
    base, _, _, session = served
    status, content_type, text = await get(session, base + "/")
    assert status == 200 and content_type == "text/html;charset=utf-8"
    assert 'href = "./metrics"' in text


@pytest.mark.parametrize("method", ["TRACE", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/metrics", "/nowhere"])
async def test_trace_and_options_are_forbidden(served, method, path):
    base, _, _, session = served
    assert (await get(session, base + path, method))[0] == 403


async def test_unknown_paths_are_404(served):
    base, _, _, session = served
    for path in ("/nowhere", "/metrics/extra", "/favicon.ico"):
        assert (await get(session, base + path))[0] == 404


async def test_prometheus_text_parses_with_names_types_labels_and_values(served):
    base, _, _, session = served
    status, content_type, text = await get(session, base + "/prometheus")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    samples = {(sample.name, sample.labels["component"]): sample.value
               for family in families.values() for sample in family.samples}
    assert {sample.labels["agent"] for family in families.values() for sample in family.samples} == {"a1"}

    assert families["flume_source_event_received_count"].type == "counter"
    assert samples["flume_source_event_received_count_total", "r1"] == 12
    assert samples["flume_source_event_accepted_count_total", "r1"] == 10
    assert families["flume_source_open_connection_count"].type == "gauge"
    assert samples["flume_source_open_connection_count", "r1"] == 2
    assert families["flume_channel_channel_fill_percentage"].type == "gauge"
    assert samples["flume_channel_channel_fill_percentage", "c1"] == 25.0
    assert samples["flume_channel_channel_size", "c1"] == 2
    assert samples["flume_channel_channel_capacity", "c1"] == 8
    assert samples["flume_channel_event_put_success_count_total", "c1"] == 2
    assert samples["flume_sink_event_drain_success_count_total", "k1"] == 5
    assert families["flume_sink_start_time"].type == "gauge"
    assert samples["flume_sink_start_time", "k1"] > 0
    assert families["flume_source_stop_time"].type == "gauge"


def test_prometheus_names_are_snake_case_flume_names():
    assert prometheus_name("SOURCE", "EventReceivedCount") == "flume_source_event_received_count"
    assert prometheus_name("CHANNEL", "ChannelFillPercentage") == "flume_channel_channel_fill_percentage"
    assert prometheus_name("SINK", "EventWriteFail") == "flume_sink_event_write_fail"


async def test_healthz_and_readyz_follow_the_ready_callable(served):
    base, _, ready, session = served
    assert await get(session, base + "/healthz") == (200, "text/plain; charset=utf-8", "ok")
    assert (await get(session, base + "/readyz"))[0] == 200
    ready.value = False
    status, _, reason = await get(session, base + "/readyz")
    assert status == 503 and "not ready" in reason
    assert (await get(session, base + "/healthz"))[0] == 200
    ready.value = True
    assert (await get(session, base + "/readyz"))[0] == 200


async def test_an_agent_serves_its_counters_to_the_operator(tmp_path):
    """exec source -> memory channel -> a sink loaded by Python path, metrics on port 0; the
    operator's own scraper reads the report."""
    record = tmp_path / "delivered.txt"
    config = parse_properties(f"""
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = exec
a1.sources.r1.command = seq 1 50
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 200
a1.sinks.k1.type = tests.integration.recording_sink:RecordingSink
a1.sinks.k1.path = {record}
a1.sinks.k1.channel = c1
""", "a1")
    agent = Agent(config, metrics_host="127.0.0.1", metrics_port=0)
    await agent.start()
    try:
        port = agent.metrics_server.port
        assert port > 0
        await wait_for(lambda: agent.sinks["k1"].counters.drain_success == 50, what="50 events delivered")
        async with aiohttp.ClientSession() as session:
            report = await scrape(session, PodView("pod-0", "127.0.0.1", True), port)
            assert (await get(session, f"http://127.0.0.1:{port}/readyz"))[0] == 200
            _, _, text = await get(session, f"http://127.0.0.1:{port}/prometheus")
    finally:
        await agent.stop()
    assert set(report) == {"SOURCE.r1", "CHANNEL.c1", "SINK.k1"}
    assert report["SOURCE.r1"]["EventAcceptedCount"] == "50"
    assert report["CHANNEL.c1"]["ChannelFillPercentage"] == "0.0"
    assert report["SINK.k1"]["EventDrainSuccessCount"] == "50"
    assert StatusCounters.of([report]).as_status() == {
        "eventsReceived": 50, "eventsAccepted": 50, "eventsDelivered": 50, "channelFillPercent": 0.0}
    assert 'flume_sink_event_drain_success_count_total{agent="a1",component="k1"} 50.0' in text
    delivered = [line for line in record.read_text().split() if not line.startswith("+")]  # "+": take committed
    assert delivered == [str(n) for n in range(1, 51)]
