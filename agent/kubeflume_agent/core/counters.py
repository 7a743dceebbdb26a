"""Per-component counters with Flume's names, so dashboards built for Flume carry over.

Counters are plain integer attributes bumped once per batch on the hot path; `snapshot()` maps
them to Flume's JSON attribute names (EventReceivedCount...) for `/metrics` and Prometheus.
"""

from __future__ import annotations

import time


class Counters:
    """Base: a component type (`SOURCE`, `CHANNEL`, `SINK`) and its start/stop times."""

    TYPE = "OTHER"
    FLUME_NAMES: dict[str, str] = {}

    def __init__(self) -> None:
        for attribute in self.FLUME_NAMES:
            setattr(self, attribute, 0)
        self.start_time = 0
        self.stop_time = 0

    def started(self) -> None:
        self.start_time = int(time.time() * 1000)
        self.stop_time = 0

    def stopped(self) -> None:
        self.stop_time = int(time.time() * 1000)

    def snapshot(self) -> dict[str, int | float]:
        """Flume attribute name -> value (numbers; the JSON endpoint turns them into strings)."""
        values: dict[str, int | float] = {name: getattr(self, attr) for attr, name in self.FLUME_NAMES.items()}
        values["StartTime"] = self.start_time
        values["StopTime"] = self.stop_time
        return values


class SourceCounters(Counters):
    TYPE = "SOURCE"
    FLUME_NAMES = {
        "events_received": "EventReceivedCount",
        "events_accepted": "EventAcceptedCount",
        "append_received": "AppendReceivedCount",
        "append_accepted": "AppendAcceptedCount",
        "append_batch_received": "AppendBatchReceivedCount",
        "append_batch_accepted": "AppendBatchAcceptedCount",
        "open_connections": "OpenConnectionCount",
        "event_read_fail": "EventReadFail",
        "channel_write_fail": "ChannelWriteFail",
        "generic_processing_fail": "GenericProcessingFail",
        "read_timeouts": "ReadTimeoutCount",  # kubeflume's own: connections closed by readTimeout
        "connection_limit": "ConnectionLimitCount",  # kubeflume's own: connections closed or refused at maxConnections
    }


class ChannelCounters(Counters):
    TYPE = "CHANNEL"
    FLUME_NAMES = {
        "put_attempt": "EventPutAttemptCount",
        "put_success": "EventPutSuccessCount",
        "take_attempt": "EventTakeAttemptCount",
        "take_success": "EventTakeSuccessCount",
        "put_error": "EventPutErrorCount",
        "take_error": "EventTakeErrorCount",
    }

    def __init__(self, capacity: int = 0) -> None:
        super().__init__()
        self.capacity = capacity
        self.size = 0

    def snapshot(self) -> dict[str, int | float]:
        values = super().snapshot()
        values["ChannelSize"] = self.size
        values["ChannelCapacity"] = self.capacity
        values["ChannelFillPercentage"] = (
            self.size * 100.0 / self.capacity if self.capacity else 1.7976931348623157e308
        )
        return values


class SinkCounters(Counters):
    TYPE = "SINK"
    FLUME_NAMES = {
        "connections_created": "ConnectionCreatedCount",
        "connections_closed": "ConnectionClosedCount",
        "connections_failed": "ConnectionFailedCount",
        "batch_empty": "BatchEmptyCount",
        "batch_underflow": "BatchUnderflowCount",
        "batch_complete": "BatchCompleteCount",
        "drain_attempt": "EventDrainAttemptCount",
        "drain_success": "EventDrainSuccessCount",
        "event_write_fail": "EventWriteFail",
        "channel_read_fail": "ChannelReadFail",
    }
