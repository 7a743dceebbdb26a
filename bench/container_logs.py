"""Container logs: raw taildir vs taildir with lineFormat = cri plus the kubernetes interceptor,
side by side in one run, on the same kubelet-written files.

    python3 bench/container_logs.py --events 300000 --containers 20 --rounds 3

The files are written first (`pods/<ns>_<pod>_<uid>/<container>/0.log`, CRI lines of 200-byte
messages, one in 50 split by the runtime into P + F pieces; `containers/*.log` symlinks). Each
round reads all of them once per scenario into a memory channel, which the script empties as it
goes; the CPU time of the process (source, interceptor, channel, the taking) is divided by the
events. The interceptor's pod copy is filled up front with one pod per container, as its watch
fills it, so what is measured is the per-event work: the lookup and the headers. Then the counts
are checked: every line arrived exactly once, and in the cri scenario every event has its pod's
labels. The best round of each scenario is reported, and the difference per event.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
import tempfile
import time
from pathlib import Path

from kubernetes.client import Configuration

from kubeflume_agent.channels.memory import MemoryChannel
from kubeflume_agent.config.keys import resolve
from kubeflume_agent.core.registry import lookup
from kubeflume_agent.protocols.kubernetes_watch import Pod, PodWatch
from kubeflume_agent.runtime.channel_processor import ChannelProcessor
from kubeflume_agent.selectors.builtin import ReplicatingSelector

NODE = "node-a"
BATCH = 1000


class FilledPodWatch(PodWatch):
    """The watch's copy, filled before the run; no API server is asked."""

    async def start(self) -> None:
        self.connected = True

    async def stop(self) -> None:
        pass


def write_node(root: Path, containers: int, lines_each: int) -> None:
    stamp = datetime.datetime(2026, 12, 6, 15, 56, 59, 123456, tzinfo=datetime.UTC)
    (root / "containers").mkdir(parents=True)
    for index in range(containers):
        directory = root / "pods" / f"shop_web-{index}_uid-{index}" / "app"
        directory.mkdir(parents=True)
        lines = []
        for line in range(lines_each):
            time_text = (stamp + datetime.timedelta(milliseconds=line)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
            message = f"web-{index} GET /cart/{line:08d} 200 {'x' * 160}"
            if line % 50 == 0:
                lines.append(f"{time_text} stdout P {message[:100]}\n{time_text} stdout F {message[100:]}\n")
            else:
                lines.append(f"{time_text} stdout F {message}\n")
        (directory / "0.log").write_text("".join(lines))
        (root / "containers" / f"web-{index}_shop_app-{index:064x}.log").symlink_to(directory / "0.log")


def component(kind: str, type_name: str, params: dict[str, str]):
    component_class = lookup(kind, type_name)
    settings, problems = resolve(component_class.config_class, params)
    assert not [p for p in problems if p.severity == "error"], problems
    return component_class, settings


def filled_watch(containers: int) -> FilledPodWatch:
    watch = FilledPodWatch(Configuration, node=NODE, deleted_ttl=300)
    for index in range(containers):
        watch._put(Pod("shop", f"web-{index}", f"uid-{index}", NODE,
                       {"app": "web", "team": "shop", "version": "1.2.3"}, {}, {"app": "registry.test/web:1"}))
    return watch


async def run(root: Path, line_format: str, containers: int, expected: int) -> tuple[float, float]:
    """One scenario: (wall seconds, CPU seconds) to read every file once; checks what arrived."""
    _, channel_settings = component("channel", "memory", {"capacity": str(expected + BATCH),
                                                          "transactionCapacity": str(BATCH)})
    channel = MemoryChannel("c1", channel_settings)
    await channel.start()
    _, selector_settings = component("selector", "replicating", {})
    interceptors = []
    if line_format == "cri":
        interceptor_class, settings = component("interceptor", "kubernetes", {"nodeName": NODE, "labels": "*"})
        interceptors.append(interceptor_class(settings, watch=filled_watch(containers)))
    processor = ChannelProcessor(ReplicatingSelector(selector_settings, {"c1": channel}), interceptors)
    source_class, settings = component("source", "TAILDIR", {
        "filegroups": "c", "filegroups.c": str(root / "containers" / r".*\.log"), "fileHeader": "true",
        "positionFile": str(root / f"positions-{line_format}-{time.monotonic_ns()}.json"),
        "lineFormat": line_format, "batchSize": str(BATCH), "writePosInterval": "1000000"})
    source = source_class("r1", settings, processor)
    await processor.start()
    await source.start()
    received = labelled = 0
    wall, cpu = time.perf_counter(), time.process_time()
    while source.counters.events_accepted < expected:
        await source.process()
        while True:
            tx = channel.transaction()
            batch = tx.take(BATCH)
            await tx.commit()
            if not batch:
                break
            received += len(batch)
            labelled += sum(1 for event in batch if "kubernetes.labels.app" in event.headers)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await source.stop()
    await processor.stop()
    await channel.stop()
    assert received == expected == source.counters.events_accepted, (received, expected)
    assert line_format != "cri" or labelled == expected, (labelled, expected)
    return wall, cpu


async def bench(args: argparse.Namespace) -> None:
    lines_each = args.events // args.containers
    with tempfile.TemporaryDirectory(prefix="bench-clogs-") as work:
        root = Path(work)
        write_node(root, args.containers, lines_each)
        physical = args.containers * (lines_each + len(range(0, lines_each, 50)))
        expected = {"raw": physical, "cri": args.containers * lines_each}
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.rounds):
            for line_format in ("raw", "cri"):
                wall, cpu = await run(root, line_format, args.containers, expected[line_format])
                if line_format not in best or cpu < best[line_format][1]:
                    best[line_format] = (wall, cpu)
    print(f"{args.containers} container logs, {expected['cri']:,} lines ({physical:,} physical lines with the "
          f"P pieces), best of {args.rounds} rounds")
    for line_format, label in (("raw", "raw taildir (lineFormat raw, fileHeader)"),
                               ("cri", "taildir lineFormat cri + kubernetes interceptor")):
        wall, cpu = best[line_format]
        count = expected[line_format]
        print(f"  {label:50s} {count / wall:12,.0f} events/s  {cpu / count * 1e6:6.2f} CPU µs/event")
    raw_cost = best["raw"][1] / expected["raw"]
    cri_cost = best["cri"][1] / expected["cri"]
    print(f"  difference: {(cri_cost - raw_cost) * 1e6:+.2f} CPU µs/event (target: at most +1.50)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000, help="lines written in all (the programs' lines)")
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(bench(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
