"""Sink processors (reference a.5, c.8): default, failover (priorities, penalties), load_balance (backoff).

The sinks are small real Sink subclasses over real memory channels, whose delivery can be switched
to fail; the processors' clock is a fake driven by the tests, so no test sleeps or measures time.
"""

from collections.abc import Sequence

import pytest

from kubeflume_agent.channels.memory import MemoryChannel
from kubeflume_agent.config.keys import resolve
from kubeflume_agent.core.errors import EventDeliveryError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.registry import lookup
from kubeflume_agent.core.status import Status
from kubeflume_agent.sink_processors import builtin as sink_processors
from kubeflume_agent.sink_processors.builtin import RoundRobinSelector, SinkSelector
from kubeflume_agent.sinks.base import Sink, SinkKeys

EPSILON = 0.001  # seconds either side of a penalty's end


class ControlledSink(Sink[SinkKeys]):
    """Delivers into `delivered`, or raises while `failing` is set (the batch then rolls back)."""

    def __init__(self, name: str, channel: MemoryChannel, batch_size: int = 100) -> None:
        super().__init__(name, SinkKeys(batch_size=batch_size), channel)
        self.delivered: list[bytes] = []
        self.attempts = 0
        self.failing = False

    async def write(self, events: Sequence[Event]) -> None:
        self.attempts += 1
        if self.failing:
            raise ConnectionError(f"{self.name} cannot reach its destination")
        self.delivered.extend(e.body for e in events)


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LastFirstSelector(SinkSelector):
    """A custom selector: always the sinks in reverse order; records the `selector.*` params it got."""

    def order(self) -> list[Sink]:
        return list(reversed(self.available()))


def memory_channel(name: str = "c1") -> MemoryChannel:
    settings, problems = resolve(MemoryChannel.config_class, {"capacity": "10000", "transactionCapacity": "1000"})
    assert not problems
    return MemoryChannel(name, settings)


def controlled_sinks(*names: str, channel: MemoryChannel | None = None, batch_size: int = 100):
    """Sinks sharing one channel (as a sink group's sinks usually do), and that channel."""
    channel = channel or memory_channel()
    return [ControlledSink(name, channel, batch_size) for name in names], channel


def processor_settings(type_name: str, params: dict[str, str]):
    processor_class = lookup("processor", type_name)
    settings, problems = resolve(processor_class.config_class, params)
    assert not [p for p in problems if p.severity == "error"], problems
    return processor_class, settings


def processor(type_name: str, params: dict[str, str], sinks, clock: FakeClock | None = None):
    processor_class, settings = processor_settings(type_name, params)
    if clock is None:
        return processor_class(settings, sinks)
    return processor_class(settings, sinks, clock=clock)


async def put(channel: MemoryChannel, *bodies: str) -> None:
    tx = channel.transaction()
    tx.put_all([Event(body.encode()) for body in bodies])
    await tx.commit()


def b(*bodies: str) -> list[bytes]:
    return [body.encode() for body in bodies]


@pytest.mark.parametrize(("name", "class_name"), [
    ("default", "DefaultSinkProcessor"),
    ("failover", "FailoverSinkProcessor"),
    ("load_balance", "LoadBalancingSinkProcessor"),
    ("org.apache.flume.sink.FailoverSinkProcessor", "FailoverSinkProcessor"),
    ("org.apache.flume.sink.LoadBalancingSinkProcessor", "LoadBalancingSinkProcessor"),
])
def test_processor_names_and_flume_class_names_resolve(name, class_name):
    assert lookup("processor", name) is getattr(sink_processors, class_name)


# --- default ---------------------------------------------------------------------------------


async def test_default_processor_runs_its_single_sink():
    [k1], channel = controlled_sinks("k1")
    default = processor("default", {}, [k1])
    await default.start()
    await put(channel, "a", "b")
    assert await default.process() is Status.READY
    assert k1.delivered == b("a", "b")
    assert await default.process() is Status.BACKOFF  # nothing left
    await default.stop()
    assert k1.counters.start_time and k1.counters.stop_time


async def test_default_processor_passes_a_delivery_failure_on():
    [k1], channel = controlled_sinks("k1")
    k1.failing = True
    await put(channel, "a")
    with pytest.raises(EventDeliveryError, match="k1"):
        await processor("default", {}, [k1]).process()
    assert channel.size == 1  # rolled back


# --- failover --------------------------------------------------------------------------------


async def test_failover_sends_everything_to_the_highest_priority_sink():
    sinks, channel = controlled_sinks("k1", "k2", "k3")
    k1, k2, k3 = sinks
    failover = processor("failover", {"priority.k1": "5", "priority.k2": "10", "priority.k3": "1"}, sinks, FakeClock())
    assert failover.active is k2
    for body in ("a", "b", "c"):
        await put(channel, body)
        assert await failover.process() is Status.READY
    assert (k1.delivered, k2.delivered, k3.delivered) == ([], b("a", "b", "c"), [])


async def test_failover_sinks_without_a_priority_follow_in_group_order():
    sinks, channel = controlled_sinks("k1", "k2", "k3")
    k1, k2, k3 = sinks
    failover = processor("failover", {"priority.k2": "1"}, sinks, FakeClock())
    assert failover.ranked == [k2, k1, k3]
    k2.failing = True
    await put(channel, "a")
    await failover.process()
    k1.failing = True
    await put(channel, "b")
    await failover.process()
    assert (k1.delivered, k2.delivered, k3.delivered) == (b("a"), [], b("b"))


async def test_failover_moves_to_the_next_sink_in_the_same_call():
    sinks, channel = controlled_sinks("k1", "k2")
    k1, k2 = sinks
    failover = processor("failover", {"priority.k1": "10", "priority.k2": "5"}, sinks, FakeClock())
    k1.failing = True
    await put(channel, "a", "b")
    assert await failover.process() is Status.READY
    assert (k1.attempts, k1.delivered, k2.delivered) == (1, [], b("a", "b"))
    assert failover.active is k2
    assert channel.size == 0


async def test_failover_comes_back_to_the_preferred_sink_once_its_penalty_expired():
    clock = FakeClock()
    sinks, channel = controlled_sinks("k1", "k2")
    k1, k2 = sinks
    failover = processor("failover", {"priority.k1": "10", "priority.k2": "5"}, sinks, clock)
    k1.failing = True
    await put(channel, "a")
    await failover.process()  # k1 fails: 2 s penalty; k2 delivers "a"
    k1.failing = False

    clock.advance(2 - EPSILON)
    await put(channel, "b")
    await failover.process()
    assert k1.attempts == 1  # still sitting out its penalty
    assert k2.delivered == b("a", "b")

    clock.advance(2 * EPSILON)
    await put(channel, "c")
    assert await failover.process() is Status.READY
    assert k1.delivered == b("c")
    assert failover.active is k1
    await put(channel, "d")
    await failover.process()
    assert (k1.delivered, k2.delivered) == (b("c", "d"), b("a", "b"))


@pytest.mark.parametrize(("params", "penalties"), [
    ({}, [2, 4, 8, 16, 30, 30]),  # maxpenalty 30000 ms by default
    ({"maxpenalty": "5000"}, [2, 4, 5, 5]),
])
async def test_failover_penalty_is_two_to_the_failures_seconds_capped_by_maxpenalty(params, penalties):
    clock = FakeClock()
    sinks, channel = controlled_sinks("k1", "k2")
    k1, k2 = sinks
    failover = processor("failover", {"priority.k1": "10", "priority.k2": "5", **params}, sinks, clock)
    k1.failing = True
    await put(channel, "x")
    await failover.process()
    for attempts, penalty in enumerate(penalties, start=1):
        assert k1.attempts == attempts
        clock.advance(penalty - EPSILON)
        await put(channel, "x")
        await failover.process()
        assert k1.attempts == attempts, f"retried before its {penalty} s penalty ended"
        clock.advance(2 * EPSILON)
        await put(channel, "x")
        await failover.process()  # retried, fails again (the next penalty counts from now), k2 delivers
    assert k1.attempts == len(penalties) + 1
    assert len(k2.delivered) == 2 * len(penalties) + 1
    assert channel.size == 0


async def test_failover_penalty_starts_again_after_a_recovery():
    clock = FakeClock()
    sinks, channel = controlled_sinks("k1", "k2")
    k1, k2 = sinks
    failover = processor("failover", {"priority.k1": "10", "priority.k2": "5"}, sinks, clock)
    k1.failing = True
    await put(channel, "1")
    await failover.process()  # 1st failure: 2 s
    clock.advance(2 + EPSILON)
    await put(channel, "2")
    await failover.process()  # 2nd failure: 4 s
    k1.failing = False
    clock.advance(4 + EPSILON)
    await put(channel, "3")
    await failover.process()  # recovered
    assert failover.active is k1
    k1.failing = True
    await put(channel, "4")
    await failover.process()  # a first failure again: 2 s, not 8 s
    k1.failing = False
    clock.advance(2 + EPSILON)
    await put(channel, "5")
    await failover.process()
    assert k1.delivered == b("3", "5")
    assert k2.delivered == b("1", "2", "4")


async def test_failover_retry_that_backs_off_keeps_the_sink_failed_without_more_penalty():
    clock = FakeClock()
    sinks, channel = controlled_sinks("k1", "k2")
    k1, k2 = sinks
    failover = processor("failover", {"priority.k1": "10", "priority.k2": "5"}, sinks, clock)
    k1.failing = True
    await put(channel, "a")
    await failover.process()
    k1.failing = False
    clock.advance(2 + EPSILON)
    assert await failover.process() is Status.BACKOFF  # k1's retry found the channel empty
    assert failover.active is k2  # not restored by a BACKOFF
    await put(channel, "b")
    assert await failover.process() is Status.READY  # retried again at once: no new penalty
    assert k1.delivered == b("b")
    assert failover.active is k1


async def test_failover_all_sinks_failed_raises_and_keeps_the_events():
    clock = FakeClock()
    sinks, channel = controlled_sinks("k1", "k2")
    for sink in sinks:
        sink.failing = True
    failover = processor("failover", {}, sinks, clock)
    await put(channel, "a", "b")
    with pytest.raises(EventDeliveryError, match="All sinks failed to process, nothing left to failover to"):
        await failover.process()
    assert [sink.attempts for sink in sinks] == [1, 1]
    assert channel.size == 2
    assert failover.active is None
    clock.advance(1)  # both still sit out their penalties: nothing is tried
    with pytest.raises(EventDeliveryError):
        await failover.process()
    assert [sink.attempts for sink in sinks] == [1, 1]


async def test_failover_validation_of_priorities():
    _, settings = processor_settings("failover", {"priority.k1": "10", "priority.k2": "10", "priority.k9": "1"})
    problems = settings.group_problems(["k1", "k2"])
    assert [key for key, _ in problems] == ["priority.k2", "priority.k9"]
    assert "already taken by sink k1" in problems[0][1]
    _, settings = processor_settings("failover", {"priority.k1": "10", "priority.k2": "5"})
    assert settings.group_problems(["k1", "k2"]) == []


def test_failover_rejects_a_negative_maxpenalty_and_a_non_numeric_priority():
    _, problems = resolve(sink_processors.FailoverConfig, {"maxpenalty": "-1", "priority.k1": "high"})
    assert sorted(p.key for p in problems if p.severity == "error") == ["maxpenalty", "priority.k1"]


# --- load_balance ----------------------------------------------------------------------------


async def test_load_balance_round_robin_starts_one_sink_further_each_call():
    sinks, channel = controlled_sinks("k1", "k2", "k3", batch_size=1)
    balancer = processor("load_balance", {}, sinks, FakeClock())
    await put(channel, *"012345")
    for _ in range(6):
        assert await balancer.process() is Status.READY
    assert [sink.delivered for sink in sinks] == [b("0", "3"), b("1", "4"), b("2", "5")]


async def test_load_balance_without_backoff_a_failing_sink_passes_its_turn_on():
    sinks, channel = controlled_sinks("k1", "k2", "k3", batch_size=1)
    k1, k2, k3 = sinks
    balancer = processor("load_balance", {"selector": "round_robin"}, sinks, FakeClock())
    k2.failing = True
    await put(channel, *"012345")
    for _ in range(6):
        await balancer.process()
    assert (k1.delivered, k2.delivered, k3.delivered) == (b("0", "3"), [], b("1", "2", "4", "5"))
    assert k2.attempts == 2  # tried on each of its turns: no backoff


async def test_load_balance_random_uses_every_sink_and_loses_nothing():
    sinks, channel = controlled_sinks("k1", "k2", "k3", batch_size=1)
    sinks[2].failing = True
    balancer = processor("load_balance", {"selector": "random"}, sinks, FakeClock())
    bodies = [str(i) for i in range(90)]
    await put(channel, *bodies)
    for _ in range(90):
        await balancer.process()
    assert sorted(sinks[0].delivered + sinks[1].delivered) == sorted(b(*bodies))
    # a random order each call: the chance that a sink is never first in 90 calls is about 1e-16
    assert all(sink.attempts > 0 for sink in sinks)
    assert sinks[0].delivered and sinks[1].delivered


async def calls_until_attempted(balancer, channel, sink: ControlledSink, calls: int) -> bool:
    """Run up to `calls` process() calls (each with an event waiting); whether `sink` was tried."""
    before = sink.attempts
    for _ in range(calls):
        await put(channel, "x")
        await balancer.process()
        if sink.attempts > before:
            return True
    return False


async def test_load_balance_backoff_excludes_a_failing_sink_until_its_timeout():
    clock = FakeClock()
    sinks, channel = controlled_sinks("k1", "k2")
    k1, k2 = sinks
    balancer = processor("load_balance", {"backoff": "true"}, sinks, clock)
    k1.failing = True
    await put(channel, "a")
    await balancer.process()  # k1 first: fails, sits out 2 s; k2 delivers
    assert (k1.attempts, k2.delivered) == (1, b("a"))
    clock.advance(2 - EPSILON)
    assert not await calls_until_attempted(balancer, channel, k1, 4)
    k1.failing = False
    clock.advance(2 * EPSILON)
    assert await calls_until_attempted(balancer, channel, k1, 2)
    assert k1.delivered == b("x")


@pytest.mark.parametrize(("params", "timeouts"), [
    ({}, [2, 4, 8, 16, 30, 30]),  # selector.maxTimeOut 30000 ms by default
    ({"selector.maxTimeOut": "5000"}, [2, 4, 5, 5]),
])
async def test_load_balance_backoff_doubles_per_sequential_failure_up_to_max_timeout(params, timeouts):
    clock = FakeClock()
    sinks, channel = controlled_sinks("k1", "k2")
    k1, _ = sinks
    balancer = processor("load_balance", {"backoff": "true", **params}, sinks, clock)
    k1.failing = True
    assert await calls_until_attempted(balancer, channel, k1, 1)
    for timeout in timeouts:
        clock.advance(timeout - EPSILON)
        assert not await calls_until_attempted(balancer, channel, k1, 3), f"tried before its {timeout} s backoff"
        clock.advance(2 * EPSILON)
        assert await calls_until_attempted(balancer, channel, k1, 2)  # the next backoff counts from now
    assert k1.delivered == []
    assert channel.size == 0  # k2 took every batch


async def test_load_balance_backoff_starts_again_after_an_hour_without_failures():
    clock = FakeClock()
    sinks, channel = controlled_sinks("k1", "k2")
    k1, _ = sinks
    balancer = processor("load_balance", {"backoff": "true"}, sinks, clock)
    k1.failing = True
    assert await calls_until_attempted(balancer, channel, k1, 1)  # 2 s
    clock.advance(2 + EPSILON)
    assert await calls_until_attempted(balancer, channel, k1, 2)  # sequential: 4 s
    clock.advance(4 + 3600 + 1)  # more than backoff + 1 h after that failure
    assert await calls_until_attempted(balancer, channel, k1, 2)  # a fresh failure: 2 s, not 8 s
    clock.advance(2 + EPSILON)
    assert await calls_until_attempted(balancer, channel, k1, 2)


async def test_load_balance_all_sinks_failed_raises_and_keeps_the_events():
    sinks, channel = controlled_sinks("k1", "k2")
    for sink in sinks:
        sink.failing = True
    balancer = processor("load_balance", {}, sinks, FakeClock())
    await put(channel, "a")
    with pytest.raises(EventDeliveryError, match="All configured sinks have failed"):
        await balancer.process()
    assert [sink.attempts for sink in sinks] == [1, 1]
    assert channel.size == 1


async def test_load_balance_with_every_sink_backed_off_raises_without_trying_any():
    clock = FakeClock()
    sinks, channel = controlled_sinks("k1", "k2")
    for sink in sinks:
        sink.failing = True
    balancer = processor("load_balance", {"backoff": "true"}, sinks, clock)
    await put(channel, "a")
    with pytest.raises(EventDeliveryError):
        await balancer.process()
    clock.advance(1)
    with pytest.raises(EventDeliveryError, match="All configured sinks have failed"):
        await balancer.process()
    assert [sink.attempts for sink in sinks] == [1, 1]


async def test_load_balance_first_status_wins_even_backoff():
    k1 = ControlledSink("k1", memory_channel("c1"))
    k2 = ControlledSink("k2", memory_channel("c2"))
    await put(k2.channel, "a")
    balancer = processor("load_balance", {}, [k1, k2], FakeClock())
    assert await balancer.process() is Status.BACKOFF  # k1's channel is empty: k2 is not asked
    assert k2.attempts == 0
    assert await balancer.process() is Status.READY
    assert k2.delivered == b("a")


async def test_load_balance_custom_selector_by_python_path():
    sinks, channel = controlled_sinks("k1", "k2", "k3")
    balancer = processor("load_balance", {"selector": f"{__name__}:LastFirstSelector", "selector.weight": "3"},
                         sinks, FakeClock())
    assert isinstance(balancer.selector, LastFirstSelector)
    assert balancer.selector.params == {"weight": "3"}
    await put(channel, "a")
    await balancer.process()
    assert [sink.delivered for sink in sinks] == [[], [], b("a")]


def test_load_balance_selector_names_are_case_insensitive():
    sinks, _ = controlled_sinks("k1", "k2")
    assert isinstance(processor("load_balance", {"selector": "ROUND_ROBIN"}, sinks).selector, RoundRobinSelector)


@pytest.mark.parametrize(("params", "sink_names", "keys"), [
    ({}, ["k1"], ["sinks"]),
    ({"selector": "weighted"}, ["k1", "k2"], ["selector"]),
    ({"selector": "no.such.module:Selector"}, ["k1", "k2"], ["selector"]),
    ({"selector": "kubeflume_agent.core.event:Event"}, ["k1", "k2"], ["selector"]),  # not a SinkSelector
    ({"selector": "random"}, ["k1", "k2"], []),
])
def test_load_balance_validation(params, sink_names, keys):
    _, settings = processor_settings("load_balance", params)
    problems = settings.group_problems(sink_names)
    assert [key for key, _ in problems] == keys


def test_load_balance_rejects_a_negative_max_timeout():
    _, problems = resolve(sink_processors.LoadBalancingSinkProcessor.config_class, {"selector.maxTimeOut": "-5"})
    assert [(p.key, p.severity) for p in problems] == [("selector.maxTimeOut", "error")]
