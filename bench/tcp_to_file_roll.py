"""TCP lines -> memory channel -> file_roll, through the agent CLI; prints events/s, CPU, RSS.

    python3 bench/tcp_to_file_roll.py --source syslogtcp --events 1000000 --connections 4
    python3 bench/tcp_to_file_roll.py --source syslogtcp --processes 2   # two agents share the port
    python3 bench/tcp_to_file_roll.py --source netcat                    # netcat lines, no OKs
    python3 bench/tcp_to_file_roll.py --source netcat --ack              # every line answered OK

The load comes from a separate process (`--load`, started by this script) that sends lines over
several TCP connections in 64 KiB writes: RFC 3164 lines `<13>Nov 22 05:40:03 benchhost
benchapp[4242]: seq=NNNNNNNNNN abc...` for syslogtcp, the same line without the syslog header for
netcat. With `--ack` the load reads every `OK` (the netcat source acknowledges each line after
its commit). Timing and the agent's CPU reading start once the load has built its lines and
starts sending, and end when the file_roll output holds every event; then every seq number is
checked to have arrived exactly once.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_harness import (
    AgentProcess,
    check_arrivals,
    free_port,
    memory_to_file_roll,
    output_bytes,
    report,
    wait_for_port,
)

# What precedes the body on the wire; the file_roll output holds only the body (plus LF).
PREFIXES = {"syslogtcp": b"<13>Nov 22 05:40:03 benchhost ", "netcat": b""}
BODY_FORMAT = b"benchapp[4242]: seq=%010d "
SOURCE_KEYS = {
    "syslogtcp": "a1.sources.r1.host = 127.0.0.1\n",
    "netcat": "a1.sources.r1.bind = 127.0.0.1\na1.sources.r1.ack-every-event = {ack}\n",
}


def line_body(seq: int, size: int) -> bytes:
    """The event body: `size` bytes on the wire with the syslog header (the same for both)."""
    body = BODY_FORMAT % seq
    return body + b"a" * max(0, size - len(PREFIXES["syslogtcp"]) - len(body))


def agent_conf(source: str, port: int, out_dir: Path, reuse_port: bool, ack: bool) -> str:
    return f"""
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = {source}
{SOURCE_KEYS[source].format(ack=str(ack).lower())}a1.sources.r1.port = {port}
a1.sources.r1.reusePort = {str(reuse_port).lower()}
{memory_to_file_roll(out_dir)}"""


def run_load(port: int, events: int, connections: int, size: int, prefix: bytes, ack: bool) -> None:
    """The load generator (child process): each connection sends its share of the sequence.

    The payloads are built first; "ready" on stdout tells the parent to start its clock, so the
    time Python takes to build 200 MB of lines is not counted against the agent."""
    share = -(-events // connections)
    shares = [(i * share, min(events, (i + 1) * share)) for i in range(connections)]
    payloads = [b"".join(prefix + line_body(seq, size) + b"\n" for seq in range(first, last))
                for first, last in shares]

    def send(payload: bytes, count: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            reader = threading.Thread(target=read_acks, args=(sock, count)) if ack else None
            if reader:
                reader.start()
            view = memoryview(payload)
            for start in range(0, len(view), 65536):
                sock.sendall(view[start:start + 65536])
            if reader:
                reader.join()

    threads = [threading.Thread(target=send, args=(payload, last - first))
               for payload, (first, last) in zip(payloads, shares, strict=True)]
    print("ready", flush=True)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def read_acks(sock: socket.socket, count: int) -> None:
    """Read the `OK` of every line; anything else is a failure of the run."""
    expected = len(b"OK\n") * count
    received = 0
    while received < expected:
        chunk = sock.recv(1 << 20)
        if not chunk or chunk.strip(b"OK\n"):
            raise SystemExit(f"unexpected reply after {received // 3} OKs: {chunk[:80]!r}")
        received += len(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=sorted(PREFIXES), default="syslogtcp")
    parser.add_argument("--ack", action="store_true", help="netcat: answer OK for every line, and read them")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--processes", type=int, default=1, help="agent processes sharing the port")
    parser.add_argument("--size", type=int, default=200, help="bytes per syslog line")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--load", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        run_load(args.load, args.events, args.connections, args.size, PREFIXES[args.source], args.ack)
        return

    with tempfile.TemporaryDirectory(prefix="bench-tcp-") as work:
        workdir = Path(work)
        port = free_port()
        outputs = [workdir / f"out{i}" for i in range(args.processes)]
        agents = []
        for out in outputs:
            out.mkdir()
            conf = agent_conf(args.source, port, out, args.processes > 1, args.ack)
            agents.append(AgentProcess(conf, workdir))
        try:
            for agent in agents:
                wait_for_port(port, agent.process)
            time.sleep(0.5 * (args.processes - 1))  # every agent has bound before connections spread
            expected = args.events * (len(line_body(0, args.size)) + 1)
            load = subprocess.Popen([sys.executable, __file__, "--load", str(port), "--events", str(args.events),
                                     "--connections", str(args.connections), "--size", str(args.size),
                                     "--source", args.source, *(["--ack"] if args.ack else [])],
                                    stdout=subprocess.PIPE, text=True)
            if load.stdout.readline().strip() != "ready":
                raise SystemExit("the load generator failed before sending")
            cpu_before = [a.cpu_seconds() for a in agents]
            start = time.monotonic()
            while output_bytes(outputs) < expected:
                if time.monotonic() - start > args.timeout:
                    raise SystemExit(f"timed out: {output_bytes(outputs)} of {expected} bytes arrived")
                time.sleep(0.02)
            elapsed = time.monotonic() - start
            cpu = sum(a.cpu_seconds() - before for a, before in zip(agents, cpu_before, strict=True))
            rss = sum(a.peak_rss_mb() for a in agents)
            load.wait()
        finally:
            for agent in agents:
                agent.stop()
        missing, duplicates = check_arrivals(outputs, args.events)
        report(f"{args.source} -> memory -> file_roll ({args.processes} agent process(es), "
               f"{args.connections} connections, {os.cpu_count()} cores)",
               args.events, elapsed, cpu, rss, missing=missing, duplicates=duplicates)
        if missing or duplicates:
            raise SystemExit("not every event arrived exactly once")


if __name__ == "__main__":
    main()
