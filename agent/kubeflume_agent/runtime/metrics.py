"""The agent's HTTP monitoring server: Flume's JSON at /metrics, Prometheus text, probes.

`/metrics` answers byte-for-byte in the shape of Flume's `HTTPMetricsServer` (every value a string,
printed the way Java prints the number), so dashboards and scripts written for Flume read it
unchanged; `/` and the 403 for TRACE/OPTIONS copy Flume too. `/prometheus` serves the same
counters for Kubernetes users, `/healthz` and `/readyz` serve the pod's probes.

It runs on the sources' HTTP server (sources.http_server), with its bounds: a request must be whole
within READ_TIMEOUT_SECONDS of its first byte, and past MAX_CONNECTIONS open connections the
longest-open idle one is closed.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator
from decimal import Decimal

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from kubeflume_agent.core.counters import Counters, SourceCounters
from kubeflume_agent.core.log_limit import RateLimitedWarnings
from kubeflume_agent.sources.http_server import HttpRequest, HttpResponse, HttpServer

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json;charset=utf-8"  # Flume's spelling, no space
HTML_CONTENT_TYPE = "text/html;charset=utf-8"
# generate_latest writes the 0.0.4 text format; every Prometheus version reads it.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INDEX_PAGE = 'For Flume metrics please click <a href = "./metrics"> here</a>.'  # Flume's own words
READ_TIMEOUT_SECONDS = 30.0  # a scrape's request is a few hundred bytes
MAX_CONNECTIONS = 100  # scrapers and probes hold one or two each
MAX_REQUEST_BYTES = 64 * 1024

# Flume attributes that go up and down; every other attribute only grows (a Prometheus counter).
GAUGES = frozenset({"ChannelSize", "ChannelCapacity", "ChannelFillPercentage", "OpenConnectionCount",
                    "StartTime", "StopTime"})


# --- Flume's JSON ----------------------------------------------------------------------------

def java_number(value: int | float) -> str:
    """`value` as Java's Long.toString / Double.toString prints it, which is what Flume serves."""
    if isinstance(value, float):
        return java_double(value)
    return str(int(value))


def java_double(value: float) -> str:
    """Double.toString: plain decimals in [1e-3, 1e7), else `d.dddE<n>`; always a fractional digit."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    magnitude = abs(value)
    if magnitude == 0.0:
        return sign + "0.0"
    digits, exponent = _java_digits(magnitude)
    if not 1e-3 <= magnitude < 1e7:
        return f"{sign}{digits[0]}.{digits[1:] or '0'}E{exponent}"
    if exponent < 0:
        return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
    return f"{sign}{digits[:exponent + 1].ljust(exponent + 1, '0')}.{digits[exponent + 1:] or '0'}"


def _java_digits(magnitude: float) -> tuple[str, int]:
    """Significant digits and decimal exponent (d.ddd x 10^e) the way Java (JDK 19+) picks them: the
    shortest that read back as the same double, but of two digits the closest when one would do
    (Double.MIN_VALUE is 4.9E-324, not 5.0E-324)."""
    _, digit_tuple, exponent = Decimal(repr(magnitude)).normalize().as_tuple()
    assert isinstance(exponent, int), "a finite double"  # 'n', 'N', 'F' are NaN and infinity
    digits = "".join(map(str, digit_tuple))
    if len(digits) == 1 and float(two := f"{magnitude:.1e}") == magnitude:
        mantissa, _, power = two.partition("e")
        return mantissa.replace(".", "").rstrip("0"), int(power)
    return digits, len(digits) + exponent - 1


def flume_report(counters: dict[str, Counters]) -> dict[str, dict[str, str]]:
    """{"SOURCE.r1": {"Type": "SOURCE", "EventReceivedCount": "12", ...}}, as Flume's JMX poll."""
    return {key: {"Type": component.TYPE, **{name: java_number(value) for name, value in component.snapshot().items()}}
            for key, component in counters.items()}


# --- Prometheus ------------------------------------------------------------------------------

def prometheus_name(component_type: str, attribute: str) -> str:
    """`flume_<type>_<snake_case attribute>`: SOURCE, EventReceivedCount -> flume_source_event_received_count.

    prometheus-client adds `_total` to counters when it writes them.
    """
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", attribute).lower()
    return f"flume_{component_type.lower()}_{snake}"


class FlumeCollector:
    """Reads the counters at every scrape, so /prometheus never disagrees with /metrics."""

    def __init__(self, counters: Callable[[], dict[str, Counters]], agent_name: str) -> None:
        self._counters = counters
        self._agent_name = agent_name

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for key, component in self._counters().items():
            component_name = key.partition(".")[2] or key
            for attribute, value in component.snapshot().items():
                name = prometheus_name(component.TYPE, attribute)
                family = families.get(name)
                if family is None:
                    kind = GaugeMetricFamily if attribute in GAUGES else CounterMetricFamily
                    family = families[name] = kind(name, f"Flume {component.TYPE} attribute {attribute}",
                                                   labels=("agent", "component"))
                family.add_metric((self._agent_name, component_name), value)
        yield from families.values()


# --- the server ------------------------------------------------------------------------------

class MetricsServer:
    """HTTP on `host:port` (port 0 picks a free one; `.port` is then the bound port)."""

    def __init__(self, counters: Callable[[], dict[str, Counters]], ready: Callable[[], bool], agent_name: str,
                 host: str, port: int, *, read_timeout: float = READ_TIMEOUT_SECONDS,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.counters = counters
        self.ready = ready
        self.agent_name = agent_name
        self.host = host
        self.port = port
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(FlumeCollector(counters, agent_name))
        self._routes: dict[str, Callable[[], HttpResponse]] = {
            "/": self._index, "/metrics": self._metrics, "/prometheus": self._prometheus,
            "/healthz": self._healthz, "/readyz": self._readyz}
        # its own counters: refusals and timeouts are logged, not reported as a component's
        self._server = HttpServer("metrics", self._handle, counters=SourceCounters(), warnings=RateLimitedWarnings(),
                                  read_timeout=read_timeout, max_connections=max_connections,
                                  max_body=MAX_REQUEST_BYTES)

    async def start(self) -> None:
        [self.port] = await self._server.start(self.host, [self.port])
        log.info("metrics for agent %s on http://%s:%d/metrics", self.agent_name, self.host, self.port)

    async def stop(self) -> None:
        await self._server.stop()

    async def _handle(self, request: HttpRequest) -> HttpResponse:
        if request.method in ("TRACE", "OPTIONS"):  # Flume refuses them on every path, before looking at it
            return HttpResponse(403)
        route = self._routes.get(request.path)
        if route is None:
            return HttpResponse.text(404, "Not Found")
        if request.method not in ("GET", "HEAD"):
            return HttpResponse(405, headers=[("Allow", "GET, HEAD")])
        return route()

    def _index(self) -> HttpResponse:
        return HttpResponse.text(200, INDEX_PAGE, HTML_CONTENT_TYPE)

    def _metrics(self) -> HttpResponse:
        return HttpResponse(200, orjson.dumps(flume_report(self.counters())), JSON_CONTENT_TYPE)

    def _prometheus(self) -> HttpResponse:
        return HttpResponse(200, generate_latest(self._registry), PROMETHEUS_CONTENT_TYPE)

    def _healthz(self) -> HttpResponse:
        return HttpResponse.text(200, "ok")  # answering at all proves the event loop runs

    def _readyz(self) -> HttpResponse:
        if self.ready():
            return HttpResponse.text(200, "ready")
        return HttpResponse.text(503, f"agent {self.agent_name} is not ready: starting, reloading or stopping")
