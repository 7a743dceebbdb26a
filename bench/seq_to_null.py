"""seq -> memory channel -> null, through the agent CLI: the runtime's own ceiling, with no I/O.

    python3 bench/seq_to_null.py --events 5000000 --batch 1000

The seq source generates the events inside the agent (it is its own load). The script reads the
agent's `/metrics` every 20 ms: timing and CPU start at the first answer (start-up excluded) and
end when the null sink has drained every event; events/s counts only what was drained in that
window. Then the counters are checked: every generated event accepted and drained exactly once.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_harness import AgentProcess, free_port, report


def agent_conf(events: int, batch: int) -> str:
    return f"""
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = {events}
a1.sources.r1.batchSize = {batch}
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = {max(100_000, 10 * batch)}
a1.channels.c1.transactionCapacity = {batch}
a1.sinks.k1.type = null
a1.sinks.k1.channel = c1
a1.sinks.k1.batchSize = {batch}
a1.sinks.k1.logEveryNEvents = {events + 1}
"""


def counters(port: int) -> dict[str, dict[str, str]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return json.load(response)
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="seq batchSize = transactionCapacity = sink batch")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-seq-") as work:
        port = free_port()
        agent = AgentProcess(agent_conf(args.events, args.batch), Path(work), metrics_port=port)
        try:
            deadline = time.monotonic() + args.timeout
            while (first := counters(port)) is None:
                if agent.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the agent did not serve /metrics:\n{agent.log()}")
                time.sleep(0.02)
            start, cpu_before = time.monotonic(), agent.cpu_seconds()
            drained_before = int(first["SINK.k1"]["EventDrainSuccessCount"])
            while int((last := counters(port))["SINK.k1"]["EventDrainSuccessCount"]) < args.events:
                if time.monotonic() > deadline:
                    raise SystemExit(f"timed out: {last['SINK.k1']['EventDrainSuccessCount']} drained")
                time.sleep(0.02)
            elapsed, cpu = time.monotonic() - start, agent.cpu_seconds() - cpu_before
            rss = agent.peak_rss_mb()
        finally:
            agent.stop()
    accepted = int(last["SOURCE.r1"]["EventAcceptedCount"])
    drained = int(last["SINK.k1"]["EventDrainSuccessCount"])
    report(f"seq -> memory -> null (batch {args.batch})", args.events - drained_before, elapsed, cpu, rss,
           accepted=accepted, drained=drained)
    if accepted != args.events or drained != args.events:
        raise SystemExit("not every event was generated and drained exactly once")


if __name__ == "__main__":
    main()
