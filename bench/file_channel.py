"""File channel speed: throughput beside the memory channel, and replay time of a full channel.

    python3 bench/file_channel.py                 # all parts
    python3 bench/file_channel.py --events 200000 --replay-events 1000000 --repeat 5

Parts, each in its own child process so CPU seconds and peak RSS are its own:
- `channel`: in-process producers (batches of 100 events of 200 bytes, 8 concurrent, as a busy
  source's connections would commit) and one sink draining batches of 1000, memory vs file channel;
- `agent`: netcat -> channel -> null through the real agent CLI (`kubeflume-agent`), memory vs file,
  with 8 netcat clients each waiting for its `OK`s (the clients' own CPU seconds are printed too: when
  they come close to the wall time, the clients, not the agent, set the pace; `--bulk-acks` makes
  them read all arrived OKs with one read instead of one line at a time);
- `replay`: fill a file channel with N events, stop it, then time a start from the checkpoint and a
  start after deleting the checkpoint (full replay of the data files), then drain it (every event
  read back from the data files).

Throughput parts run `--repeat` times, memory and file taking turns, and report the run with the
median rate of each (this machine's noise is large next to one run of a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_harness import AGENT_COMMAND

BODY = b"x" * 200
PRODUCERS = 8
BATCH = 100
SINK_BATCH = 1000


def file_settings(directory: str, capacity: int):
    from kubeflume_agent.channels.file.channel import FileChannel
    from kubeflume_agent.config.keys import resolve

    settings, _ = resolve(FileChannel.config_class, {
        "checkpointDir": f"{directory}/checkpoint", "dataDirs": f"{directory}/data",
        "capacity": str(capacity), "transactionCapacity": "1000", "minimumRequiredSpace": "1048576",
    })
    return FileChannel, settings


def memory_settings(capacity: int):
    from kubeflume_agent.channels.memory import MemoryChannel
    from kubeflume_agent.config.keys import resolve

    settings, _ = resolve(MemoryChannel.config_class, {"capacity": str(capacity), "transactionCapacity": "1000"})
    return MemoryChannel, settings


async def channel_throughput(kind: str, events: int, directory: str) -> dict:
    from kubeflume_agent.core.event import Event
    from kubeflume_agent.core.status import Status
    from kubeflume_agent.sinks.null import NullSink

    channel_class, settings = file_settings(directory, 100000) if kind == "file" else memory_settings(100000)
    channel = channel_class("bench", settings)
    await channel.start()
    per_producer = events // PRODUCERS

    async def produce() -> None:
        for _ in range(per_producer // BATCH):
            while True:
                tx = channel.transaction()
                tx.put_all([Event(BODY) for _ in range(BATCH)])
                try:
                    await tx.commit()
                    break
                except Exception:
                    tx.rollback()
                    await asyncio.sleep(0.001)

    async def consume(total: int) -> None:  # a null sink, driven as the agent's sink runner does
        sink = NullSink("bench", {"batchSize": SINK_BATCH, "logEveryNEvents": 1 << 62}, channel)
        await sink.start()
        while sink.counters.drain_attempt < total:
            if await sink.process() is Status.BACKOFF:
                await channel.wait_for_events(0.1)
        await sink.stop()

    started = time.perf_counter()
    await asyncio.gather(consume(per_producer // BATCH * BATCH * PRODUCERS), *(produce() for _ in range(PRODUCERS)))
    elapsed = time.perf_counter() - started
    await channel.stop()
    return {"events": per_producer // BATCH * BATCH * PRODUCERS, "seconds": elapsed}


async def replay_times(events: int, directory: str) -> dict:
    from kubeflume_agent.core.event import Event

    channel_class, settings = file_settings(directory, max(events, 1000))
    channel = channel_class("bench", settings)
    await channel.start()
    filled = time.perf_counter()
    for _ in range(events // 1000):
        tx = channel.transaction()
        tx.put_all([Event(BODY) for _ in range(1000)])
        await tx.commit()
    fill_seconds = time.perf_counter() - filled
    await channel.stop()
    data_bytes = sum(f.stat().st_size for f in Path(directory, "data").glob("log-*"))
    result = {"events": events, "fill_seconds": fill_seconds, "data_bytes": data_bytes}
    for label in ("from_checkpoint", "full_replay"):
        if label == "full_replay":
            os.remove(Path(directory, "checkpoint", "checkpoint"))
        channel = channel_class("bench", settings)
        await channel.start()
        result[label + "_seconds"] = channel.last_replay.seconds
        result[label + "_events"] = channel.size
        result[label + "_rss_mb"] = resident_mb()
        if label == "full_replay":  # every take now reads the data files back
            drained = time.perf_counter()
            while channel.size:
                tx = channel.transaction()
                tx.take(SINK_BATCH)
                await tx.commit()
            result["drain_from_disk_seconds"] = time.perf_counter() - drained
        await channel.stop()
    return result


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        return round(int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024, 1)


def run_child(part: str, kind: str, events: int) -> dict:
    """Run one measurement in its own process, so CPU seconds and peak RSS are its own."""
    output = subprocess.run([sys.executable, __file__, "--child", part, kind, str(events)],
                            capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def child(part: str, kind: str, events: int) -> None:
    import uvloop

    directory = tempfile.mkdtemp(prefix="kubeflume-bench-")
    try:
        if part == "channel":
            result = uvloop.run(channel_throughput(kind, events, directory))
        else:
            result = uvloop.run(replay_times(events, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    print(json.dumps(result))


# -- the agent: netcat -> channel -> null --------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def send_lines(port: int, count: int, bulk_acks: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    line = BODY + b"\n"
    acknowledged = 0
    window = 500  # lines in flight per connection
    sent = 0
    while acknowledged < count:
        while sent < count and sent - acknowledged < window:
            step = min(window, count - sent)
            writer.write(line * step)
            sent += step
        acknowledged += await (read_acks_in_bulk(reader) if bulk_acks else read_ack(reader))
    writer.close()


async def read_ack(reader: asyncio.StreamReader) -> int:
    reply = await reader.readline()
    if reply != b"OK\n":
        raise RuntimeError(f"agent answered {reply!r}")
    return 1


async def read_acks_in_bulk(reader: asyncio.StreamReader) -> int:
    """Every OK that has arrived, with one read: a client that costs next to no CPU."""
    replies = await reader.read(65536)
    replies += await reader.readuntil(b"\n") if replies and not replies.endswith(b"\n") else b""
    if not replies or replies.count(b"OK\n") * 3 != len(replies):
        raise RuntimeError(f"agent answered {replies[:100]!r}")
    return len(replies) // 3


async def send_from_clients(port: int, per_client: int, bulk_acks: bool = False) -> None:
    clients = (send_lines(port, per_client, bulk_acks) for _ in range(PRODUCERS))
    await asyncio.wait_for(asyncio.gather(*clients), 600)


def agent_throughput(kind: str, events: int, bulk_acks: bool) -> dict:
    directory = tempfile.mkdtemp(prefix="kubeflume-bench-")
    port = free_port()
    channel = (f"a1.channels.c1.type = file\na1.channels.c1.checkpointDir = {directory}/cp\n"
               f"a1.channels.c1.dataDirs = {directory}/data\na1.channels.c1.minimumRequiredSpace = 1048576\n"
               if kind == "file" else "a1.channels.c1.type = memory\n")
    config = Path(directory, "flume.conf")
    config.write_text(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
        f"a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\na1.sources.r1.port = {port}\n"
        "a1.sources.r1.channels = c1\n"
        f"{channel}a1.channels.c1.capacity = 100000\na1.channels.c1.transactionCapacity = 1000\n"
        "a1.sinks.k1.type = null\na1.sinks.k1.channel = c1\na1.sinks.k1.batchSize = 1000\n")
    agent = subprocess.Popen([*AGENT_COMMAND, "-n", "a1", "-f", str(config), "--no-metrics", "--no-reload-conf"],
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        clients_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        asyncio.run(send_from_clients(port, events // PRODUCERS, bulk_acks))
        elapsed = time.perf_counter() - started
        clients_after = resource.getrusage(resource.RUSAGE_SELF)
        usage = _process_usage(agent.pid)
        usage["client_cpu_seconds"] = round(clients_after.ru_utime - clients_before.ru_utime
                                            + clients_after.ru_stime - clients_before.ru_stime, 2)
    finally:
        agent.terminate()
        agent.wait(30)
        shutil.rmtree(directory, ignore_errors=True)
    return {"events": events // PRODUCERS * PRODUCERS, "seconds": elapsed, **usage}


def _process_usage(pid: int) -> dict:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as file:
        peak = next(line for line in file if line.startswith("VmHWM")).split()[1]
    return {"cpu_seconds": round((int(fields[11]) + int(fields[12])) / ticks, 2),
            "peak_rss_mb": round(int(peak) / 1024, 1)}


def median_runs(measure, repeat: int) -> dict[str, dict]:
    """Per channel kind, the run with the median rate of `repeat` runs (memory and file take turns)."""
    runs: dict[str, list[dict]] = {"memory": [], "file": []}
    for _ in range(repeat):
        for kind, results in runs.items():
            results.append(measure(kind))
    chosen = {}
    for kind, results in runs.items():
        results.sort(key=lambda result: result["events"] / result["seconds"])
        rates = [result["events"] / result["seconds"] for result in results]
        chosen[kind] = {**results[(len(results) - 1) // 2], "runs": len(results), "rates": rates}
    return chosen


def report(title: str, results: dict[str, dict]) -> None:
    print(f"\n{title}")
    for kind, result in results.items():
        rate = result["events"] / result["seconds"]
        clients = f"  clients' cpu {result['client_cpu_seconds']:5.2f} s" if "client_cpu_seconds" in result else ""
        print(f"  {kind:7s} {result['events']:>9,d} events in {result['seconds']:6.2f} s = {rate:>10,.0f} events/s"
              f"  cpu {result['cpu_seconds']:6.2f} s  peak RSS {result['peak_rss_mb']:7.1f} MB{clients}"
              f"  (median of {result['runs']}: {', '.join(f'{r:,.0f}' for r in result['rates'])})")
    if {"memory", "file"} <= results.keys():
        ratio = (results["file"]["events"] / results["file"]["seconds"]) / (
            results["memory"]["events"] / results["memory"]["seconds"])
        print(f"  file channel at {ratio:.0%} of the memory channel's throughput (target: 50% or more)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400000)
    parser.add_argument("--replay-events", type=int, default=1000000)
    parser.add_argument("--parts", default="channel,agent,replay")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each throughput part (median reported)")
    parser.add_argument("--bulk-acks", action="store_true",
                        help="agent part: clients read their OKs in bulk, so they do not set the memory channel's pace")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    parts = args.parts.split(",")
    print(f"host: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, 200-byte events")
    if "channel" in parts:
        report("channel alone (8 producers x batches of 100, 1 sink x batches of 1000)",
               median_runs(lambda kind: run_child("channel", kind, args.events), args.repeat))
    if "agent" in parts:
        report("agent: netcat -> channel -> null (8 clients)",
               median_runs(lambda kind: agent_throughput(kind, args.events, args.bulk_acks), args.repeat))
    if "replay" in parts:
        result = run_child("replay", "file", args.replay_events)
        print(f"\nreplay of a file channel holding {result['from_checkpoint_events']:,d} events "
              f"({result['data_bytes'] / 1e6:.0f} MB of data files, filled in {result['fill_seconds']:.1f} s):")
        print(f"  start from checkpoint: {result['from_checkpoint_seconds']:.2f} s, "
              f"process RSS then {result['from_checkpoint_rss_mb']} MB")
        print(f"  full replay (checkpoint deleted): {result['full_replay_seconds']:.2f} s "
              f"({result['full_replay_events']:,d} events), process RSS then {result['full_replay_rss_mb']} MB")
        print(f"  draining it after the restart (events read back from disk, batches of {SINK_BATCH}): "
              f"{result['events'] / result['drain_from_disk_seconds']:,.0f} events/s")
        print(f"  whole child process: cpu {result['cpu_seconds']} s, peak RSS {result['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
