"""Run one source the way the agent does, with a real memory channel behind it.

`running_source("syslogtcp", {...})` resolves the flume.conf-style parameters with the source's
own declared keys (so defaults and parsers are the real ones), wires a MemoryChannel through a
ReplicatingSelector and ChannelProcessor, starts the source on the test's loop, and stops it
(and its server) at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from kubeflume_agent.channels.memory import MemoryChannel
from kubeflume_agent.config.keys import resolve
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.registry import lookup
from kubeflume_agent.interceptors.base import Interceptor
from kubeflume_agent.runtime.channel_processor import ChannelProcessor
from kubeflume_agent.selectors.builtin import ReplicatingSelector


def config_for(kind: str, type_name: str, params: dict[str, str]):
    """The component class of `type_name` and the typed config `params` resolve to (without errors)."""
    component_class = lookup(kind, type_name)
    config, problems = resolve(component_class.config_class, params)
    errors = [p for p in problems if p.severity == "error"]
    assert not errors, errors
    return component_class, config


def memory_channel(capacity: int = 10_000, transaction_capacity: int = 1000, keep_alive: str = "0.2"):
    _, settings = config_for("channel", "memory", {
        "capacity": str(capacity), "transactionCapacity": str(transaction_capacity), "keep-alive": keep_alive,
    })
    return MemoryChannel("c1", settings)


@contextlib.asynccontextmanager
async def running_source(type_name: str, params: dict[str, str], channel: MemoryChannel | None = None,
                         interceptors: Sequence[Interceptor] = ()) -> AsyncIterator[tuple[object, MemoryChannel]]:
    channel = channel or memory_channel()
    await channel.start()
    _, selector_settings = config_for("selector", "replicating", {})
    processor = ChannelProcessor(ReplicatingSelector(selector_settings, {"c1": channel}), interceptors)
    source_class, settings = config_for("source", type_name, params)
    source = source_class("r1", settings, processor)
    await processor.start()
    await source.start()
    try:
        yield source, channel
    finally:
        await source.stop()
        await processor.stop()
        await channel.stop()


@contextlib.asynccontextmanager
async def running_sink(type_name: str, params: dict[str, str], *, channel: MemoryChannel | None = None,
                       events: Sequence[Event] = ()) -> AsyncIterator[tuple[Any, MemoryChannel]]:
    """A sink built as the agent builds it (its declared keys, no validation problem), on a started
    memory channel already holding `events`; both stopped at the end."""
    sink_class, settings = config_for("sink", type_name, params)
    assert sink_class.config_problems(settings) == []
    channel = channel or memory_channel()
    await channel.start()
    if events:
        await put_all(channel, list(events))
    sink = sink_class("k1", settings, channel)
    await sink.start()
    try:
        yield sink, channel
    finally:
        await sink.stop()
        await channel.stop()


async def put_all(channel, events: list[Event]) -> None:
    """Commit `events` into `channel` in one transaction (the test is the source)."""
    async with channel.transaction() as tx:
        tx.put_all(events)


async def take_all(channel: MemoryChannel) -> list[Event]:
    """Everything in the channel now, taken in committed transactions (the test is the sink)."""
    events = []
    while True:
        tx = channel.transaction()
        batch = tx.take(1000)
        if not batch:
            tx.rollback()
            return events
        await tx.commit()
        events.extend(batch)


async def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `condition` (a function or coroutine function) until true; fails after a generous
    timeout (no timing assertions)."""
    deadline = time.monotonic() + timeout
    while not (await result if asyncio.iscoroutine(result := condition()) else result):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def collect(channel: MemoryChannel, count: int, timeout: float = 20.0) -> list[Event]:
    """Take events from `channel` until `count` arrived."""
    events: list[Event] = []

    async def arrived() -> bool:
        events.extend(await take_all(channel))
        return len(events) >= count

    await wait_for(arrived, timeout, f"{count} events (have {len(events)})")
    return events
