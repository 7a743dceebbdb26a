"""Drain an agent's channels: its config with the sources off, until every channel is empty.

A pod removed by a scale-down leaves its file channels on a claim; `kubeflume-agent --drain` runs
the same config against that claim so the sinks deliver what the channels hold. The drain
succeeds when every channel is empty and every take is committed (the channels' own files then
say so); it gives up, keeping whatever is left, when no event has been delivered for `timeout`
seconds (a sink that keeps failing), or when it is stopped. The report says what the channels
held at the start and what the sinks delivered, from the agent's own counters, so whoever ran
the drain (the operator reads it from the pod's termination message) can show it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubeflume_agent.config.model import AgentConfig
from kubeflume_agent.core.channel import Channel
from kubeflume_agent.runtime.agent import Agent
from kubeflume_agent.sinks.base import Sink

POLL_INTERVAL = 0.05
MAX_REPORT_BYTES = 4096  # what the kubelet keeps of a termination message


@dataclass
class DrainReport:
    """What a drain found and did; `drained` is True only when nothing is left anywhere."""

    agent: str
    drained: bool = False
    held: dict[str, int] = field(default_factory=dict)  # channel -> events at the start
    left: dict[str, int] = field(default_factory=dict)  # channel -> events still there at the end
    delivered: dict[str, int] = field(default_factory=dict)  # sink -> events delivered
    seconds: float = 0.0
    reason: str = ""

    def to_json(self) -> str:
        """One compact line that fits a pod's termination message (Kubernetes keeps 4096 bytes):
        the per-component detail, then the reason's tail, give way before the totals do."""
        totals = {"agent": self.agent, "drained": self.drained, "held": sum(self.held.values()),
                  "delivered": sum(self.delivered.values()), "left": sum(self.left.values()),
                  "seconds": round(self.seconds, 3), "reason": self.reason}
        channels = {name: {"held": held, "left": self.left.get(name, 0)} for name, held in self.held.items()}
        detail = {"channels": channels, "sinks": self.delivered}
        line = _compact({**totals, **detail})
        if len(line.encode()) <= MAX_REPORT_BYTES:
            return line
        line = _compact(totals)
        excess = len(line.encode()) - MAX_REPORT_BYTES
        if excess > 0:
            line = _compact({**totals, "reason": self.reason[:max(0, len(self.reason) - excess - 3)] + "..."})
        return line


def _compact(report: dict) -> str:
    return json.dumps(report, separators=(",", ":"))


def without_sources(config: AgentConfig) -> AgentConfig:
    """The same agent with no source: nothing new enters the channels while they drain."""
    return dataclasses.replace(config, sources={})


def undrainable(config: AgentConfig) -> list[str]:
    """Channels no sink takes from: their events could never leave, so such a config is not drained
    at all (not even started: what those channels hold stays where it is)."""
    taken = {sink.channel.strip() for sink in config.sinks.values()}
    return [name for name in config.channels if name not in taken]


async def drain(config: AgentConfig, *, timeout: float, stop: asyncio.Event,
                agent_factory: Callable[[AgentConfig], Agent] = Agent) -> DrainReport:
    """Start `config` without sources and wait until its channels are empty (see the module doc).
    `timeout` is how long the sinks may go without delivering anything; `stop` ends the drain early."""
    started = time.monotonic()
    orphans = undrainable(config)
    if orphans:
        return DrainReport(config.name, reason=f"no sink takes from channel {', '.join(orphans)}")
    agent = agent_factory(without_sources(config))
    try:
        await agent.start()
    except OSError:
        await agent.stop()  # what did start (a channel, say) lets go of its files
        raise
    channels, sinks = dict(agent.channels), dict(agent.sinks)  # stop() forgets them
    try:
        outcome = await _wait_until_empty(agent, timeout, stop)
    finally:
        await agent.stop()  # sinks settle their last takes; channels write their checkpoints
    report = _settled_report(config.name, channels, sinks, outcome)
    report.seconds = time.monotonic() - started
    return report


@dataclass(frozen=True)
class _Stalled:
    """The sinks delivered nothing for `timeout` seconds; their latest errors at that moment."""

    timeout: float
    sink_errors: dict[str, str]

    def reason(self, left: dict[str, int]) -> str:
        """Why the drain gave up, given what the channels hold once stopped; "" if the sinks emptied
        them after all while the agent stopped (it gives them time to)."""
        holding = ", ".join(f"{name} holds {count}" for name, count in left.items() if count)
        if not holding:
            return ""
        errors = "; ".join(f"{name}: {error}" for name, error in self.sink_errors.items())
        return f"no event delivered for {self.timeout:g} s ({holding})" + (
            f"; last sink errors: {errors}" if errors else "")


async def _wait_until_empty(agent: Agent, timeout: float, stop: asyncio.Event) -> str | _Stalled:
    """"" once every channel is empty, else why the drain gives up."""
    loop = asyncio.get_running_loop()
    delivered, progressed_at = _taken(agent.channels), loop.time()
    while any(channel.size for channel in agent.channels.values()):
        if stop.is_set():
            return "stopped before the channels were empty"
        await asyncio.sleep(POLL_INTERVAL)
        now = _taken(agent.channels)
        if now != delivered:
            delivered, progressed_at = now, loop.time()
        elif loop.time() - progressed_at >= timeout:
            return _Stalled(timeout, agent.sink_errors())
    return ""


def _settled_report(agent: str, channels: dict[str, Channel], sinks: dict[str, Sink],
                    outcome: str | _Stalled) -> DrainReport:
    """The report, read once the agent has stopped: a channel's size leaves out the events a sink has
    taken but not yet committed or rolled back, so only a stopped agent's sizes are what the channels
    hold. With the sources off a committed take is the only way out, so what a channel held at the
    start is what it holds now plus what was taken from it."""
    left = {name: channel.size for name, channel in channels.items()}
    report = DrainReport(agent, left=left,
                         held={name: left[name] + channel.counters.take_success for name, channel in channels.items()},
                         delivered={name: sink.counters.drain_success for name, sink in sinks.items()},
                         reason=outcome.reason(left) if isinstance(outcome, _Stalled) else outcome)
    if sum(left.values()) and not report.reason:
        report.reason = f"{sum(left.values())} events went back into the channels while the sinks stopped"
    report.drained = not sum(left.values()) and not report.reason
    return report


def _taken(channels: dict[str, Channel]) -> int:
    return sum(channel.counters.take_success for channel in channels.values())
