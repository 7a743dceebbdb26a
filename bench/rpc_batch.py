"""What the RPC batch benchmarks share (avro_batch.py, thrift_batch.py): an agent with one RPC
source -> memory -> file_roll, a separate load process of SDK-style clients (one call of `--batch`
events in flight per connection, each answered OK before the next; calls encoded before the clock
starts), and the checks: every seq number in the output exactly once, the load process's CPU
reported apart from the agent's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from agent_harness import (
    AgentProcess,
    check_arrivals,
    free_port,
    memory_to_file_roll,
    output_bytes,
    report,
    wait_for_port,
)

# (port, encoded calls of one connection) -> sends them, checking every answer
Client = Callable[[int, list[bytes]], Awaitable[None]]


def agent_conf(source: str, port: int, out_dir: Path) -> str:
    return f"""
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = {source}
a1.sources.r1.bind = 127.0.0.1
a1.sources.r1.port = {port}
{memory_to_file_roll(out_dir)}"""


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100, help="events per call")
    parser.add_argument("--size", type=int, default=200, help="bytes per event body")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--load", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_load(args: argparse.Namespace, encode_calls: Callable[[list[list[int]], int], list[bytes]],
             client: Client) -> None:
    """The load process: encode each connection's calls, say `ready`, wait for `go`, send, and
    print the CPU seconds the sending took."""
    share = -(-args.events // args.connections)
    prepared = []
    for first in range(0, args.events, share):
        last = min(args.events, first + share)
        calls = [list(range(start, min(last, start + args.batch))) for start in range(first, last, args.batch)]
        prepared.append(encode_calls(calls, args.size))
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()

    async def send_all() -> None:
        await asyncio.gather(*(client(args.load, encoded) for encoded in prepared))

    asyncio.run(send_all())
    print(f"cpu {time.process_time() - cpu:.3f}", flush=True)


def run_benchmark(title: str, source: str, script: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-rpc-") as work:
        workdir, port = Path(work), free_port()
        out = workdir / "out"
        out.mkdir()
        agent = AgentProcess(agent_conf(source, port, out), workdir)
        try:
            wait_for_port(port, agent.process)
            load = subprocess.Popen([sys.executable, script, "--load", str(port), "--events", str(args.events),
                                     "--connections", str(args.connections), "--batch", str(args.batch),
                                     "--size", str(args.size)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if load.stdout.readline().strip() != "ready":
                raise SystemExit("the load generator failed before sending")
            expected = args.events * (args.size + 1)
            cpu_before = agent.cpu_seconds()
            start = time.monotonic()
            load.stdin.write("go\n")
            load.stdin.flush()
            while output_bytes([out]) < expected:
                if time.monotonic() - start > args.timeout or load.poll() not in (None, 0):
                    raise SystemExit(f"stopped: {output_bytes([out])} of {expected} bytes arrived")
                time.sleep(0.02)
            elapsed = time.monotonic() - start
            cpu, rss = agent.cpu_seconds() - cpu_before, agent.peak_rss_mb()
            load_cpu = load.stdout.read().split()[-1]
            if load.wait() != 0:
                raise SystemExit("the load generator failed")
        finally:
            agent.stop()
        missing, duplicates = check_arrivals([out], args.events)
        report(f"{title} -> memory -> file_roll ({args.connections} connections, {os.cpu_count()} cores)",
               args.events, elapsed, cpu, rss, missing=missing, duplicates=duplicates, load_cpu_s=load_cpu)
        if missing or duplicates:
            raise SystemExit("not every event arrived exactly once")


def main(description: str, title: str, source: str, script: str, encode_calls: Callable[[list[list[int]], int],
         list[bytes]], client: Client) -> None:
    """A twin's entry point: the load process when called with --load, else the benchmark."""
    args = arguments(description)
    if args.load:
        run_load(args, encode_calls, client)
    else:
        run_benchmark(f"{title}({args.batch})", source, script, args)
