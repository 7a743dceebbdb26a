"""Sink processors: how a sink group shares work among its sinks (Flume's a.5/c.8)."""

from __future__ import annotations

import logging
import pkgutil
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kubeflume_agent.config.keys import Config, Configurable, boolean, integer, key, non_negative_integer
from kubeflume_agent.core.errors import EventDeliveryError
from kubeflume_agent.core.status import Status
from kubeflume_agent.sinks.base import Sink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessorKeys(Config):
    """Base of a sink processor's config: its checks may need the group's sinks."""

    def group_problems(self, sink_names: Sequence[str]) -> list[tuple[str, str]]:
        """Problems of this config for a group of these sinks (none named: the group is unknown)."""
        return []


ProcessorConfigT = TypeVar("ProcessorConfigT", bound=ProcessorKeys)


class SinkProcessor(Configurable[ProcessorConfigT]):
    """Runs one `process()` step over a group of sinks. Raises EventDeliveryError when every sink failed."""

    def __init__(self, config: ProcessorConfigT, sinks: Sequence[Sink]) -> None:
        self.config = config
        self.sinks = list(sinks)

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def stop(self) -> None:
        for sink in self.sinks:
            await sink.stop()

    async def process(self) -> Status:
        raise NotImplementedError


class DefaultSinkProcessor(SinkProcessor[ProcessorKeys]):
    """A single sink, used for every sink outside a group."""

    async def process(self) -> Status:
        return await self.sinks[0].process()


@dataclass(frozen=True)
class FailoverConfig(ProcessorKeys):
    priorities: dict[str, int] = key("priority.", integer, prefix=True,
                                     doc="priority.<sink> = number; the highest goes first")
    max_penalty_ms: int = key("maxpenalty", non_negative_integer, 30000, doc="longest time (ms) a failed sink sits out")

    def group_problems(self, sink_names: Sequence[str]) -> list[tuple[str, str]]:
        problems = []
        holders: dict[int, str] = {}
        for sink, priority in self.priorities.items():
            if sink_names and sink not in sink_names:
                problems.append((f"priority.{sink}", f"{sink!r} is not a sink of this group "
                                                     f"({' '.join(sink_names)})"))
            elif priority in holders:
                problems.append((f"priority.{sink}", f"priority {priority} is already taken by sink "
                                                     f"{holders[priority]}; priorities must differ"))
            else:
                holders[priority] = sink
        return problems


class FailoverSinkProcessor(SinkProcessor[FailoverConfig]):
    """The highest-priority working sink takes all the work; a failing sink sits out a penalty.

    As in Flume: a sink that raises moves to the failed pool for min(maxpenalty, 2^failures x 1 s)
    and the next sink is tried in the same call. Each call first retries failed sinks whose penalty
    has passed: READY puts one back in the live pool, BACKOFF leaves it in the failed pool with no
    extra penalty (it is retried next call), another failure doubles its penalty.

    Order: sinks with `priority.<sink>` by priority, highest first; then sinks without one, in the
    group's order. (Flume numbers those -1, -2... in HashMap order, which is not the config order.)
    """
    FAILURE_PENALTY_MS = 1000

    def __init__(self, config: FailoverConfig, sinks: Sequence[Sink],
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, sinks)
        priorities = config.priorities
        by_preference = sorted(enumerate(self.sinks), key=lambda item: (
            item[1].name not in priorities, -priorities.get(item[1].name, 0), item[0]))
        self.ranked = [sink for _, sink in by_preference]
        self.max_penalty = config.max_penalty_ms / 1000
        self._clock = clock
        self._live = set(range(len(self.ranked)))
        self._failed: dict[int, _Penalty] = {}

    @property
    def active(self) -> Sink | None:
        """The sink the next batch goes to (the best live one), if any is live."""
        return self.ranked[min(self._live)] if self._live else None

    async def process(self) -> Status:
        status = await self._retry_recovered()
        if status is not None:
            return status
        while self._live:
            rank = min(self._live)
            sink = self.ranked[rank]
            try:
                return await sink.process()
            except Exception as error:  # any failure of a sink is a reason to fail over
                log.warning("sink %s failed and sits out %.0f s: %s", sink.name,
                            self._penalize(rank), error)
        raise EventDeliveryError("All sinks failed to process, nothing left to failover to")

    async def _retry_recovered(self) -> Status | None:
        """Give the failed sinks whose penalty passed a try, earliest first; the first status wins."""
        now = self._clock()
        while True:
            due = [rank for rank, penalty in self._failed.items() if penalty.until < now]
            if not due:
                return None
            rank = min(due, key=lambda r: self._failed[r].until)
            sink = self.ranked[rank]
            try:
                status = await sink.process()
            except Exception as error:
                log.warning("sink %s failed again and sits out %.0f s: %s", sink.name,
                            self._penalize(rank), error)
                continue
            if status is Status.READY:
                del self._failed[rank]
                self._live.add(rank)
                log.info("sink %s recovered", sink.name)
            return status

    def _penalize(self, rank: int) -> float:
        """Move the sink at `rank` to the failed pool (or lengthen its stay); the penalty in seconds."""
        self._live.discard(rank)
        penalty = self._failed.setdefault(rank, _Penalty())
        penalty.failures += 1
        seconds = min(self.max_penalty, 2 ** penalty.failures * self.FAILURE_PENALTY_MS / 1000)
        penalty.until = self._clock() + seconds
        return seconds


class _Penalty:
    """A failed sink's sequential failures and when it may be retried (clock seconds)."""

    __slots__ = ("failures", "until")

    def __init__(self) -> None:
        self.failures = 0
        self.until = 0.0


class SinkSelector:
    """The order in which a load-balancing group tries its sinks, with Flume's optional backoff.

    With `backoff`, a sink that failed k times in a row sits out min(maxTimeOut, 2^k s), k at most
    16; a failure more than an hour after the previous backoff ended starts again at k = 1.
    A custom selector (`processor.selector = package.module:Class`) subclasses this and overrides
    `order()`; its `selector.*` keys arrive in `params`.
    """

    BACKOFF_LIMIT = 16
    SEQUENTIAL_RANGE = 3600.0

    def __init__(self, sinks: Sequence[Sink], *, backoff: bool, max_timeout: float,
                 params: dict[str, str], clock: Callable[[], float] = time.monotonic) -> None:
        self.sinks = list(sinks)
        self.backoff = backoff
        self.max_timeout = max_timeout
        self.params = params
        self.clock = clock
        self._failures: dict[int, tuple[int, float]] = {}  # sink index -> (sequential failures, last failure)
        self._restore_at: dict[int, float] = {}

    def order(self) -> list[Sink]:
        """The sinks to try for one `process()` call, first choice first."""
        raise NotImplementedError

    def available(self) -> list[Sink]:
        """The sinks not sitting out a backoff, in configuration order."""
        if not self._restore_at:
            return list(self.sinks)
        now = self.clock()
        return [sink for index, sink in enumerate(self.sinks) if self._restore_at.get(index, now - 1) < now]

    def failed(self, sink: Sink) -> None:
        if not self.backoff:
            return
        index = self.sinks.index(sink)
        now = self.clock()
        count, last = self._failures.get(index, (0, None))
        if last is not None and now - last < self._timeout(count) + self.SEQUENTIAL_RANGE:
            count = min(count + 1, self.BACKOFF_LIMIT)
        else:
            count = 1
        self._failures[index] = (count, now)
        self._restore_at[index] = now + self._timeout(count)

    def _timeout(self, failures: int) -> float:
        return min(self.max_timeout, float(2 ** failures))


class RoundRobinSelector(SinkSelector):
    """Each call starts one sink further along, as Flume's RoundRobinOrderSelector does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next = 0

    def order(self) -> list[Sink]:
        sinks = self.available()
        if not sinks:
            return sinks
        if self._next >= len(sinks):
            self._next = 0
        start = self._next
        self._next = (start + 1) % len(sinks)
        return sinks[start:] + sinks[:start]


class RandomSelector(SinkSelector):
    """A fresh random order for each call."""

    def order(self) -> list[Sink]:
        sinks = self.available()
        random.shuffle(sinks)
        return sinks


SELECTORS: dict[str, type[SinkSelector]] = {"round_robin": RoundRobinSelector, "random": RandomSelector}


def _selector_class(name: str) -> type[SinkSelector]:
    """The selector for `processor.selector`: a built-in name or a Python path to a SinkSelector."""
    builtin = SELECTORS.get(name.strip().lower())
    if builtin is not None:
        return builtin
    try:
        found = pkgutil.resolve_name(name.strip())
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"cannot load sink selector {name!r}: {error}") from None
    if not (isinstance(found, type) and issubclass(found, SinkSelector)):
        raise ValueError(f"{name!r} is not a SinkSelector subclass")
    return found


@dataclass(frozen=True)
class LoadBalanceConfig(ProcessorKeys):
    backoff: bool = key("backoff", boolean, False, doc="let a failing sink sit out, exponentially longer")
    selector: str = key("selector", str, "round_robin",
                        doc="round_robin, random, or package.module:Class (a SinkSelector)")
    max_timeout_ms: int = key("selector.maxTimeOut", non_negative_integer, 30000,
                              doc="longest backoff (ms) of a failed sink")
    selector_params: dict[str, str] = key("selector.", str, prefix=True, doc="further keys for a custom selector")

    def group_problems(self, sink_names: Sequence[str]) -> list[tuple[str, str]]:
        problems = []
        if sink_names and len(sink_names) < 2:
            problems.append(("sinks", "load_balance needs at least two sinks"))
        try:
            _selector_class(self.selector)
        except ValueError as error:
            problems.append(("selector", f"{error}; expected round_robin, random or package.module:Class"))
        return problems


class LoadBalancingSinkProcessor(SinkProcessor[LoadBalanceConfig]):
    """Spreads batches over the sinks: each call tries sinks in the selector's order until one works."""

    def __init__(self, config: LoadBalanceConfig, sinks: Sequence[Sink],
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config, sinks)
        self.selector = _selector_class(config.selector)(
            self.sinks, backoff=config.backoff, max_timeout=config.max_timeout_ms / 1000,
            params=config.selector_params, clock=clock)

    async def process(self) -> Status:
        for sink in self.selector.order():
            try:
                return await sink.process()
            except Exception as error:  # the next sink takes the batch
                self.selector.failed(sink)
                log.warning("sink %s failed; trying the next sink: %s", sink.name, error)
        raise EventDeliveryError("All configured sinks have failed")
