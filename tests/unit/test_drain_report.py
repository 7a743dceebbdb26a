"""The drain report: it always fits a pod's termination message, totals first, and it counts the
events a sink holds in an open take as still in the channel."""

from __future__ import annotations

import asyncio
import json
import socket

from kubeflume_agent.channels.file.channel import FileChannel
from kubeflume_agent.config.keys import resolve
from kubeflume_agent.config.properties import parse_properties
from kubeflume_agent.core.event import Event
from kubeflume_agent.runtime.agent import Agent
from kubeflume_agent.runtime.drain import MAX_REPORT_BYTES, DrainReport, drain
from tests.integration.source_harness import running_source, take_all
from tests.network import free_port


def test_a_small_report_keeps_every_channel_and_sink():
    report = DrainReport("a1", drained=True, held={"c1": 5}, left={"c1": 0}, delivered={"k1": 5}, seconds=0.25)
    assert json.loads(report.to_json()) == {
        "agent": "a1", "drained": True, "held": 5, "delivered": 5, "left": 0, "seconds": 0.25, "reason": "",
        "channels": {"c1": {"held": 5, "left": 0}}, "sinks": {"k1": 5}}


def test_a_large_report_drops_the_detail_then_shortens_the_reason_but_keeps_the_totals():
    many = {f"channel-{n:04d}": 10 for n in range(300)}
    report = DrainReport("a1", held=many, left=many, delivered={"k1": 0}, reason="sink down: " + "x" * 10_000)
    line = report.to_json()
    assert len(line.encode()) <= MAX_REPORT_BYTES
    parsed = json.loads(line)
    assert (parsed["held"], parsed["left"], parsed["delivered"], parsed["drained"]) == (3000, 3000, 0, False)
    assert "channels" not in parsed
    assert parsed["reason"].startswith("sink down: xxx") and parsed["reason"].endswith("...")


def file_channel(tmp_path) -> str:
    return ("a1.channels = c1\na1.channels.c1.type = file\n"
            f"a1.channels.c1.checkpointDir = {tmp_path / 'checkpoint'}\na1.channels.c1.dataDirs = {tmp_path / 'data'}\n"
            "a1.channels.c1.transactionCapacity = 1000\na1.channels.c1.minimumRequiredSpace = 1048576\n")


async def store(tmp_path, count: int) -> None:
    """`count` committed events in a file channel under `tmp_path`, its agent stopped."""
    params = parse_properties(file_channel(tmp_path), "a1").channels["c1"].params
    settings, _ = resolve(FileChannel.config_class, params)
    channel = FileChannel("c1", settings)
    await channel.start()
    try:
        for start in range(0, count, 1000):
            async with channel.transaction() as tx:
                tx.put_all([Event(body=f"event-{n}".encode()) for n in range(start, min(count, start + 1000))])
    finally:
        await channel.stop()


class HangingUpAgent(Agent):
    """Its next agent (`peer`, a listening socket that never answers) goes away when it stops: the
    sink's open take then fails and rolls back instead of waiting for its request timeout."""

    def __init__(self, config, *, peer: socket.socket) -> None:
        super().__init__(config, drain_timeout=0.1)
        self.peer = peer

    async def stop(self) -> None:
        self.peer.close()  # the connections waiting in its backlog are reset
        await super().stop()


async def test_a_stall_while_a_sink_holds_a_take_open_still_counts_that_take_as_held(tmp_path):
    await store(tmp_path, 3000)
    with socket.socket() as silent:  # the sink's first batch never gets an answer: its take stays open
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        sink = ("a1.sinks = k1\na1.sinks.k1.type = avro\na1.sinks.k1.channel = c1\na1.sinks.k1.hostname = 127.0.0.1\n"
                f"a1.sinks.k1.port = {silent.getsockname()[1]}\na1.sinks.k1.batch-size = 1000\n"
                "a1.sinks.k1.request-timeout = 600000\n")

        report = await drain(parse_properties(file_channel(tmp_path) + sink, "a1"), timeout=1, stop=asyncio.Event(),
                             agent_factory=lambda config: HangingUpAgent(config, peer=silent))

    assert (report.held, report.left, report.delivered) == ({"c1": 3000}, {"c1": 3000}, {"k1": 0})
    assert report.reason.startswith("no event delivered for 1 s (c1 holds 3000)")
    assert report.drained is False


class PeerComesBackAgent(Agent):
    """Its next agent (an Avro source on `port`) only starts listening when the drain stops it."""

    def __init__(self, config, *, port: int) -> None:
        super().__init__(config, drain_timeout=60)
        self.port = port

    async def stop(self) -> None:
        async with running_source("avro", {"bind": "127.0.0.1", "port": str(self.port)}) as (_, received):
            await super().stop()  # gives the sinks drain_timeout to empty the channels
            self.received = await take_all(received)


async def test_a_sink_that_empties_the_channels_while_the_drain_stops_has_drained_them(tmp_path):
    await store(tmp_path, 3000)
    port = free_port()  # refused until the drain stops
    sink = ("a1.sinks = k1\na1.sinks.k1.type = avro\na1.sinks.k1.channel = c1\na1.sinks.k1.hostname = 127.0.0.1\n"
            f"a1.sinks.k1.port = {port}\na1.sinks.k1.batch-size = 1000\n")
    agents: list[PeerComesBackAgent] = []

    def agent_factory(config):
        agents.append(PeerComesBackAgent(config, port=port))
        return agents[-1]

    report = await drain(parse_properties(file_channel(tmp_path) + sink, "a1"), timeout=1, stop=asyncio.Event(),
                         agent_factory=agent_factory)

    assert (report.held, report.left, report.delivered) == ({"c1": 3000}, {"c1": 0}, {"k1": 3000})
    assert (report.drained, report.reason) == (True, "")
    assert len(agents[0].received) == 3000
