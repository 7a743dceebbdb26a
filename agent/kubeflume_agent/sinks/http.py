"""Flume's `http` sink (HttpSink): POSTs events to an HTTP endpoint.

As in Flume, each event is one request in its own transaction, and the answer's status decides
three things, each by the most specific rule (`rollback.503`, then `rollback.5XX`, then
`defaultRollback`): whether the event goes back to the channel (rollback), whether the sink
backs off, and whether EventDrainSuccessCount counts it (incrementMetrics). Events with an empty
body are taken without a request. A request that fails (refused, timed out) rolls back and backs off.
Flume's defaults roll back and back off on *every* status, 2XX included: set `rollback.2XX = false`
and `backoff.2XX = false` (and `incrementMetrics.2XX = true`) for a usual endpoint.

Beyond Flume: `jsonBatch = true` sends up to `batchSize` events in one request, as the JSON array
that Flume's HTTP source reads (`[{"headers": {...}, "body": "..."}]`, Content-Type
application/json), in one transaction decided by the answer's status the same way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import orjson

from kubeflume_agent.config.keys import boolean, key, positive_integer
from kubeflume_agent.core.channel import Channel, Transaction
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.status import Status
from kubeflume_agent.sinks.base import Sink, SinkKeys

log = logging.getLogger(__name__)

STATUS_RULE = re.compile(r"[1-5](\d\d|XX)")
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


class StatusRules:
    """Per-status decisions: exact code, then `NXX`, then the default (Flume's findOverrideValue)."""

    def __init__(self, default: bool, overrides: dict[str, bool]) -> None:
        self.default = default
        self.overrides = {code.upper(): value for code, value in overrides.items()}

    def decide(self, status: int) -> bool:
        code = str(status)
        exact = self.overrides.get(code)
        if exact is not None:
            return exact
        return self.overrides.get(code[0] + "XX", self.default)


@dataclass(frozen=True)
class HttpSinkConfig(SinkKeys):
    endpoint: str = key("endpoint", str, required=True, doc="URL the events are POSTed to")
    connect_timeout_ms: int = key("connectTimeout", positive_integer, 5000, doc="milliseconds to connect")
    request_timeout_ms: int = key("requestTimeout", positive_integer, 5000, doc="milliseconds to wait for the answer")
    content_type_header: str = key("contentTypeHeader", str, "text/plain", doc="Content-Type of single-event requests")
    accept_header: str = key("acceptHeader", str, "text/plain", doc="Accept header of every request")
    default_backoff: bool = key("defaultBackoff", boolean, True, doc="back off after a status without a backoff.* rule")
    default_rollback: bool = key("defaultRollback", boolean, True,
                                 doc="roll back after a status without a rollback.* rule")
    default_increment_metrics: bool = key("defaultIncrementMetrics", boolean, False,
                                          doc="count EventDrainSuccessCount after a status without an "
                                              "incrementMetrics.* rule")
    backoff_rules: dict[str, bool] = key("backoff.", boolean, prefix=True,
                                         doc="backoff.CODE or backoff.NXX: back off after that status")
    rollback_rules: dict[str, bool] = key("rollback.", boolean, prefix=True,
                                          doc="rollback.CODE or rollback.NXX: roll back after that status")
    increment_metrics_rules: dict[str, bool] = key("incrementMetrics.", boolean, prefix=True,
                                                   doc="incrementMetrics.CODE or incrementMetrics.NXX: count the event "
                                                       "as drained")
    batch_size: int = key("batchSize", positive_integer, 100,
                          doc="events handled per call: sent one request each, or as one request with jsonBatch "
                              "(Flume's http sink takes one event per call and has no such key)")
    json_batch: bool = key("jsonBatch", boolean, False,
                           doc="send up to batchSize events per request as a JSON array of {headers, body}; bodies "
                               "must be UTF-8 text")

    def destination(self) -> str:
        return self.endpoint

    def problems(self) -> list[tuple[str, str]]:
        problems = []
        endpoint = self.endpoint or ""
        if not endpoint.startswith(("http://", "https://")):
            problems.append(("endpoint", f"expected an http:// or https:// URL, got {endpoint!r}"))
        rules = {"backoff": self.backoff_rules, "rollback": self.rollback_rules,
                 "incrementMetrics": self.increment_metrics_rules}
        for family, codes in rules.items():
            for code in codes:
                if not STATUS_RULE.fullmatch(code.upper()):
                    problems.append((f"{family}.{code}", "expected a status code such as 503 or a class such as 5XX"))
        return problems


class HttpSink(Sink[HttpSinkConfig]):
    def __init__(self, name: str, config: HttpSinkConfig, channel: Channel) -> None:
        super().__init__(name, config, channel)
        self.endpoint: str = self.config.endpoint
        self.backoff = StatusRules(self.config.default_backoff, self.config.backoff_rules)
        self.rollback = StatusRules(self.config.default_rollback, self.config.rollback_rules)
        self.increment_metrics = StatusRules(self.config.default_increment_metrics, self.config.increment_metrics_rules)
        self.json_batch: bool = self.config.json_batch
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(
            sock_connect=self.config.connect_timeout_ms / 1000, sock_read=self.config.request_timeout_ms / 1000)
        self._session = aiohttp.ClientSession(timeout=timeout, headers={"Accept": self.config.accept_header})
        await super().start()

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().stop()

    async def process(self) -> Status:
        if self.json_batch:
            return await self._process_batch()
        taken = 0
        while taken < self.batch_size:
            tx = self.channel.transaction()
            events = self._take(tx, 1)
            if not events:
                break
            taken += 1
            status = await self._deliver(tx, events, events[0].body, self.config.content_type_header)
            if status is not None:
                return status
        return self._count_batch(taken)

    def _count_batch(self, taken: int) -> Status:
        if not taken:
            self.counters.batch_empty += 1
            return Status.BACKOFF
        if taken < self.batch_size:
            self.counters.batch_underflow += 1
        else:
            self.counters.batch_complete += 1
        return Status.READY

    async def _process_batch(self) -> Status:
        tx = self.channel.transaction()
        events = self._take(tx, self.batch_size)
        status = self._count_batch(len(events))
        if not events:
            return status
        events = [event for event in events if event.body]
        try:
            body = json_array(events) if events else b""
        except UnicodeDecodeError as error:
            tx.rollback()
            self.counters.event_write_fail += 1
            raise ValueError(f"sink {self.name}: jsonBatch needs UTF-8 bodies; an event's body is not "
                             f"({error}); it stays in the channel") from None
        return await self._deliver(tx, events, body, JSON_CONTENT_TYPE) or Status.READY

    def _take(self, tx: Transaction, count: int) -> list[Event]:
        try:
            events = tx.take(count)
        except Exception:
            tx.rollback()
            self.counters.channel_read_fail += 1
            raise
        if not events:
            tx.rollback()
        return events

    async def _deliver(self, tx: Transaction, events: Sequence[Event], body: bytes, content_type: str
                       ) -> Status | None:
        """Send one request and settle its transaction; a Status ends this process() call."""
        if not body:
            await tx.commit()
            return None
        self.counters.drain_attempt += len(events)
        try:
            status = await self._post(body, content_type)
        except (aiohttp.ClientError, TimeoutError) as error:
            tx.rollback()
            self.counters.event_write_fail += len(events)
            log.warning("sink %s: request to %s failed (%s); events rolled back", self.name, self.endpoint, error)
            return Status.BACKOFF
        rollback = self.rollback.decide(status)
        if rollback:
            tx.rollback()
        else:
            await tx.commit()
        if self.increment_metrics.decide(status):
            self.counters.drain_success += len(events)
        if self.backoff.decide(status):
            if rollback:
                log.info("sink %s: status %d from %s: rolled back and backing off", self.name, status, self.endpoint)
            return Status.BACKOFF
        return Status.READY if rollback else None

    async def _post(self, body: bytes, content_type: str) -> int:
        assert self._session is not None, "sink not started"
        async with self._session.post(self.endpoint, data=body, headers={"Content-Type": content_type}) as response:
            await response.read()
            return response.status


def json_array(events: Sequence[Event]) -> bytes:
    """Events as Flume's JSON event array (what the HTTP source's JSONHandler reads)."""
    return orjson.dumps([{"headers": event.headers, "body": event.body.decode()} for event in events])
