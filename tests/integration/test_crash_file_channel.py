"""The file channel inside the real agent: SIGKILL mid-stream loses no acknowledged event, and a data
file and checkpoint damaged by hand are skipped over, reported, and the rest delivered."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from crash_harness import (
    CrashableAgent,
    delivered_after_their_take_committed,
    file_channel_config,
    recorded,
    wait_until,
)

from kubeflume_agent.channels.file.log import list_log_files
from tests.network import free_port


def spool_config(tmp_path: Path, with_sink: bool) -> str:
    sinks = "a1.sinks = k1\n" if with_sink else ""
    channel = file_channel_config(tmp_path)
    if not with_sink:
        channel = "\n".join(line for line in channel.splitlines() if not line.startswith("a1.sinks")) + "\n"
    return (
        f"a1.sources = r1\na1.channels = c1\n{sinks}"
        f"a1.sources.r1.type = spooldir\na1.sources.r1.spoolDir = {tmp_path / 'spool'}\n"
        "a1.sources.r1.pollDelay = 100\na1.sources.r1.channels = c1\n" + channel
    )


@pytest.mark.timeout(180)
def test_damaged_data_file_and_checkpoint_are_reported_and_the_rest_delivered(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "events.log").write_text("".join(f"event-{n:04d}\n" for n in range(1000)))
    filling = CrashableAgent(tmp_path, spool_config(tmp_path, with_sink=False))
    filling.start()
    try:
        wait_until(lambda: (spool / "events.log.COMPLETED").exists(), 60, "the file to be ingested", filling)
    finally:
        filling.kill()  # no clean shutdown: the log after the last checkpoint must be replayed

    data_file = Path(max(list_log_files([str(tmp_path / "data")]).items())[1])
    data = data_file.read_bytes()
    at = data.index(b"event-0500")
    data_file.write_bytes(data[:at] + b"EVENT-0500" + data[at + 10:])
    (tmp_path / "checkpoint" / "checkpoint").write_bytes(b"not a checkpoint")

    draining = CrashableAgent(tmp_path, spool_config(tmp_path, with_sink=True))
    draining.start()
    delivered = tmp_path / "delivered.txt"
    try:
        wait_until(lambda: len(recorded(delivered)) >= 900, 60, "the undamaged events", draining)
    finally:
        draining.stop()
    # The damaged record held the spooldir's batch of 100 with event 500 in it; the rest all arrive.
    assert set(recorded(delivered)) == {f"event-{n:04d}" for n in range(1000) if not 500 <= n < 600}
    log = draining.log_path.read_text()
    assert "forcing full replay" in log
    assert "skipped 1 damaged records" in log and "100 events lost to damage" in log
    assert str(data_file) in log


# -- netcat -> file channel, kill -9 mid-stream ----------------------------------------------------

async def client(port: int, first: int, acknowledged: list[str], stop: asyncio.Event) -> None:
    """Send numbered lines in windows of 50, reconnecting whenever the agent goes away; a line
    counts as acknowledged only when its `OK` came back."""
    number = first
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        try:
            while not stop.is_set():
                window = [f"n-{number + i:09d}" for i in range(50)]
                number += 50
                writer.write("".join(line + "\n" for line in window).encode())
                await writer.drain()
                for line in window:
                    reply = await reader.readline()
                    if not reply:
                        raise ConnectionResetError("agent went away")
                    if reply == b"OK\n":
                        acknowledged.append(line)
        except OSError:
            pass
        finally:
            writer.close()


async def kill_while_sending(agent: CrashableAgent, port: int, rng: random.Random, kills: int) -> list[str]:
    acknowledged: list[str] = []
    stop = asyncio.Event()
    clients = [asyncio.create_task(client(port, c * 100_000_000, acknowledged, stop)) for c in range(4)]
    try:
        for _ in range(kills):
            target = len(acknowledged) + rng.randint(1000, 20000)
            deadline = time.monotonic() + 120
            while len(acknowledged) < target:
                assert time.monotonic() < deadline, f"no progress:\n{agent.log_tail()}"
                await asyncio.sleep(0.01)
            agent.kill()  # mid-stream: the clients are sending right now
            agent.start()
    finally:
        stop.set()
        await asyncio.gather(*clients)
    return acknowledged


@pytest.mark.timeout(300)
def test_every_acknowledged_event_survives_kill_minus_nine(tmp_path):
    seed = random.randrange(1 << 30)
    print("seed", seed)
    port = free_port()
    config = (
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
        f"a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\na1.sources.r1.port = {port}\n"
        "a1.sources.r1.channels = c1\n" + file_channel_config(tmp_path)
    )
    agent = CrashableAgent(tmp_path, config)
    delivered = tmp_path / "delivered.txt"
    agent.start()
    try:
        acknowledged = asyncio.run(kill_while_sending(agent, port, random.Random(seed), kills=5))
        wanted = set(acknowledged)
        wait_until(lambda: wanted <= set(recorded(delivered)), 120, "every acknowledged event", agent)
    finally:
        agent.stop()
    counts = recorded(delivered)
    duplicates = sum(count - 1 for count in counts.values())
    print(f"netcat: {len(acknowledged)} acknowledged, {len(counts)} delivered, {agent.kills} kills, "
          f"{duplicates} duplicates (takes not yet committed when the agent was killed)")
    assert agent.kills == 5
    # The client never sends a line twice, so any duplicate comes from the channel: allowed for a
    # take cut short by the kill, never for one that had committed.
    assert delivered_after_their_take_committed(delivered) == []
