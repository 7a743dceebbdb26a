"""Avro appendBatch (100 events per call) -> memory channel -> null, through the agent CLI.

    python3 bench/avro_batch.py --events 500000 --connections 4

The load comes from a separate process (`--load`, started by this script): Flume SDK-style
clients, one call in flight per connection, each batch acknowledged `OK` before the next (the
frames are encoded before the clock starts, so the generator spends its time on sockets).
Timing ends when the agent's /metrics show every event drained by the null sink; the load
process also checks that every call was answered OK.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_harness import AgentProcess, free_port, report, wait_for_port

BATCH = 100


def agent_conf(port: int) -> str:
    return f"""
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = avro
a1.sources.r1.bind = 127.0.0.1
a1.sources.r1.port = {port}
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 100000
a1.channels.c1.transactionCapacity = 1000
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
a1.sinks.k1.batchSize = 1000
"""


async def run_load(port: int, events: int, connections: int, size: int) -> None:
    from kubeflume_agent.protocols.avro_rpc import AvroProtocol, Requestor, netty_frame, read_netty_frame

    protocol = AvroProtocol.packaged("AvroSourceProtocol")
    share = -(-events // connections)

    def frames(first: int, last: int) -> list[bytes]:
        requestor = Requestor(protocol)
        encoded = []
        for serial, start in enumerate(range(first, last, BATCH), 1):
            batch = [{"headers": {"host": "benchhost", "seq": str(seq)},
                      "body": (b"seq=%010d " % seq).ljust(size, b"a")}
                     for seq in range(start, min(last, start + BATCH))]
            encoded.append(netty_frame(serial, requestor.request("appendBatch", {"events": batch})))
            requestor.connected = True  # only the first call of a connection carries the handshake
        return encoded

    async def client(encoded: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for frame in encoded:
            writer.write(frame)
            _, payload = await read_netty_frame(reader, 1 << 20)
            if not payload.endswith(b"\x00\x00\x00"):
                raise SystemExit(f"a batch was not answered OK: {payload!r}")
        writer.close()

    prepared = [frames(i * share, min(events, (i + 1) * share)) for i in range(connections)]
    print("ready", flush=True)
    sys.stdin.readline()  # the benchmark starts its clock, then says go
    await asyncio.gather(*(client(encoded) for encoded in prepared))


def drained(metrics_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        metrics = json.load(response)
    return int(metrics["SINK.k1"]["EventDrainSuccessCount"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--size", type=int, default=200, help="bytes per event body")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--load", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        asyncio.run(run_load(args.load, args.events, args.connections, args.size))
        return

    with tempfile.TemporaryDirectory(prefix="bench-avro-") as work:
        port, metrics_port = free_port(), free_port()
        agent = AgentProcess(agent_conf(port), Path(work), metrics_port=metrics_port)
        try:
            wait_for_port(port, agent.process)
            wait_for_port(metrics_port, agent.process)
            load = subprocess.Popen([sys.executable, __file__, "--load", str(port), "--events", str(args.events),
                                     "--connections", str(args.connections), "--size", str(args.size)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert load.stdout.readline().strip() == "ready"
            cpu_before = agent.cpu_seconds()
            start = time.monotonic()
            load.stdin.write("go\n")
            load.stdin.flush()
            while drained(metrics_port) < args.events:
                if time.monotonic() - start > args.timeout or load.poll() not in (None, 0):
                    raise SystemExit(f"stopped: {drained(metrics_port)} of {args.events} drained")
                time.sleep(0.02)
            elapsed = time.monotonic() - start
            cpu, rss = agent.cpu_seconds() - cpu_before, agent.peak_rss_mb()
            if load.wait() != 0:
                raise SystemExit("the load generator failed")
            count = drained(metrics_port)
        finally:
            agent.stop()
        report(f"Avro appendBatch({BATCH}) -> memory -> null ({args.connections} connections, "
               f"{os.cpu_count()} cores)", args.events, elapsed, cpu, rss, drained=count)
        if count != args.events:
            raise SystemExit("not every event arrived exactly once")


if __name__ == "__main__":
    main()
