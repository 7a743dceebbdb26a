"""Per-component counters with Flume's names, so dashboards built for Flume carry over.

Each counter is a declared integer field bumped once per batch on the hot path; its Flume name
(EventReceivedCount...) sits beside it, and `snapshot()` maps the fields to those names for
`/metrics` and Prometheus. A component with counters of its own subclasses one of these.
"""

from __future__ import annotations

import time
from dataclasses import Field, dataclass, field
from typing import Any, ClassVar

FLUME_NAME = "flume_name"


def flume(name: str) -> int:
    """A counter starting at 0 that Flume reports as `name`."""
    return field(default=0, init=False, metadata={FLUME_NAME: name})


@dataclass(eq=False)
class Counters:
    """Base: a component type (`SOURCE`, `CHANNEL`, `SINK`) and its start/stop times."""

    TYPE: ClassVar[str] = "OTHER"
    FLUME_NAMES: ClassVar[dict[str, str]] = {}  # field -> Flume name, gathered from the declarations

    start_time: int = field(default=0, init=False)
    stop_time: int = field(default=0, init=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = {name: value.metadata[FLUME_NAME] for name, value in vars(cls).items()
                    if isinstance(value, Field) and FLUME_NAME in value.metadata}
        cls.FLUME_NAMES = {**cls.FLUME_NAMES, **declared}

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


@dataclass(eq=False)
class SourceCounters(Counters):
    TYPE = "SOURCE"
    events_received: int = flume("EventReceivedCount")
    events_accepted: int = flume("EventAcceptedCount")
    append_received: int = flume("AppendReceivedCount")
    append_accepted: int = flume("AppendAcceptedCount")
    append_batch_received: int = flume("AppendBatchReceivedCount")
    append_batch_accepted: int = flume("AppendBatchAcceptedCount")
    open_connections: int = flume("OpenConnectionCount")
    event_read_fail: int = flume("EventReadFail")
    channel_write_fail: int = flume("ChannelWriteFail")
    generic_processing_fail: int = flume("GenericProcessingFail")
    read_timeouts: int = flume("ReadTimeoutCount")  # kubeflume's own: connections closed by readTimeout
    # kubeflume's own: connections closed or refused at maxConnections
    connection_limit: int = flume("ConnectionLimitCount")


@dataclass(eq=False)
class ChannelCounters(Counters):
    TYPE = "CHANNEL"
    capacity: int = 0
    size: int = field(default=0, init=False)
    put_attempt: int = flume("EventPutAttemptCount")
    put_success: int = flume("EventPutSuccessCount")
    take_attempt: int = flume("EventTakeAttemptCount")
    take_success: int = flume("EventTakeSuccessCount")
    put_error: int = flume("EventPutErrorCount")
    take_error: int = flume("EventTakeErrorCount")

    def snapshot(self) -> dict[str, int | float]:
        values = super().snapshot()
        values["ChannelSize"] = self.size
        values["ChannelCapacity"] = self.capacity
        values["ChannelFillPercentage"] = (
            self.size * 100.0 / self.capacity if self.capacity else 1.7976931348623157e308
        )
        return values


@dataclass(eq=False)
class SinkCounters(Counters):
    TYPE = "SINK"
    connections_created: int = flume("ConnectionCreatedCount")
    connections_closed: int = flume("ConnectionClosedCount")
    connections_failed: int = flume("ConnectionFailedCount")
    batch_empty: int = flume("BatchEmptyCount")
    batch_underflow: int = flume("BatchUnderflowCount")
    batch_complete: int = flume("BatchCompleteCount")
    drain_attempt: int = flume("EventDrainAttemptCount")
    drain_success: int = flume("EventDrainSuccessCount")
    event_write_fail: int = flume("EventWriteFail")
    channel_read_fail: int = flume("ChannelReadFail")
