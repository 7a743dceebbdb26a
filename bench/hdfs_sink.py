#!/usr/bin/env python3
"""Benchmark: memory channel -> hdfs sink -> WebHDFS, 1 KB events, 1 MB files.

The WebHDFS fake (tests/fakes/webhdfs.py) runs in its own process, so the CPU seconds and peak
RSS reported are the sink's alone. A first pass measures events/s, CPU and RSS; a second pass of
the same load under cProfile gives the share of CPU spent serializing (and compressing).
Every event is checked to have arrived in closed files (text: each one once, in order; SequenceFile
and avro_event: counted).

    python3 bench/hdfs_sink.py [--events 100000] [--file-type DataStream|CompressedStream|SequenceFile]
                               [--serializer text|header_and_text|avro_event]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gzip
import json
import pstats
import random
import re
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "agent"))

from kubeflume_agent.channels.memory import MemoryChannel  # noqa: E402
from kubeflume_agent.config.keys import resolve  # noqa: E402
from kubeflume_agent.core.event import Event  # noqa: E402
from kubeflume_agent.sinks.hdfs.sink import HdfsSink  # noqa: E402

EVENT_SIZE = 1024
END = b" |end|"  # every body ends so, to count records in a SequenceFile
FILE_SIZE = 1 << 20
SERIALIZER_FUNCTIONS = re.compile(r"serializers\.py|gzip|bz2|zlib|hadoop_vint|json_array")


def start_fake() -> tuple[subprocess.Popen, str]:
    fake = subprocess.Popen([sys.executable, "-m", "tests.fakes.webhdfs", "--port", "0"], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    line = fake.stdout.readline()
    match = re.search(r"http://\S+", line)
    if not match:
        fake.kill()
        raise SystemExit(f"the WebHDFS fake did not start: {line!r}")
    return fake, match.group(0)


def make_events(count: int) -> list[Event]:
    """Log-like 1 KB bodies (a sequence number, repeating words, varying numbers, some random hex),
    which gzip shrinks about as much as real logs rather than a thousandfold."""
    rng = random.Random(7)
    events = []
    for n in range(count):
        line = (b"%010d 2023-11-14T22:13:20.%03dZ host-%02d app[%d]: GET /api/v1/items/%d status=200 "
                b"bytes=%d trace=%s " % (n, n % 1000, n % 50, n % 977, n * 7919 % 100000, n * 31 % 65536,
                                         rng.randbytes(16).hex().encode()))
        padding = EVENT_SIZE - len(line) - len(END)
        body = line + (b"payload=" + rng.randbytes(padding).hex().encode())[:padding] + END
        events.append(Event(body, {"timestamp": "1700000000000"}))
    return events


async def run(namenode: str, events: list[Event], file_type: str, serializer: str, directory: str,
              batch: int) -> None:
    channel = MemoryChannel("c1", resolve(MemoryChannel.config_class, {
        "capacity": str(batch * 10), "transactionCapacity": str(batch)})[0])
    params = {
        "hdfs.path": directory, "hdfs.namenodes": namenode, "hdfs.user": "flume",
        "hdfs.fileType": file_type, "hdfs.rollSize": str(FILE_SIZE), "hdfs.rollCount": "0",
        "hdfs.rollInterval": "0", "hdfs.batchSize": str(batch), "serializer": serializer,
    }
    if file_type == "CompressedStream":
        params["hdfs.codeC"] = "gzip"
    settings, problems = resolve(HdfsSink.config_class, params)
    assert not [p for p in problems if p.severity == "error"], problems
    sink = HdfsSink("k1", settings, channel)
    await sink.start()
    for start in range(0, len(events), batch):
        async with channel.transaction() as tx:
            tx.put_all(events[start:start + batch])
        await sink.process()
    await sink.stop()


def current_rss_mb() -> float:
    """Resident memory now; the events are built up front, so this is the floor of the peak."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / (1 << 20)


def webhdfs_get(namenode: str, path: str, op: str) -> bytes:
    with urllib.request.urlopen(f"{namenode}/webhdfs/v1{path}?op={op}&user.name=flume") as response:
        return response.read()


def check_output(namenode: str, directory: str, count: int, file_type: str, serializer: str) -> int:
    """Every event arrived once, in order, in closed files; returns the number of files."""
    listing = json.loads(webhdfs_get(namenode, directory, "LISTSTATUS"))["FileStatuses"]["FileStatus"]
    names = sorted((s["pathSuffix"] for s in listing), key=lambda name: int(name.split(".")[1]))
    assert not any(name.endswith(".tmp") for name in names), "files left in use"
    seen = 0
    for name in names:
        data = webhdfs_get(namenode, f"{directory}/{name}", "OPEN")
        if file_type == "CompressedStream":
            data = gzip.decompress(data)
        if file_type == "SequenceFile" or serializer == "avro_event":
            seen += data.count(END)  # records are length-prefixed, not lines
            continue
        for line in data.splitlines():
            assert int(line[:10]) == seen, f"event {seen} missing or repeated"
            seen += 1
    assert seen == count, f"{seen} of {count} events arrived"
    return len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="hdfs.batchSize")
    parser.add_argument("--file-type", default="DataStream", choices=["DataStream", "CompressedStream", "SequenceFile"])
    parser.add_argument("--serializer", default="text", choices=["text", "header_and_text", "avro_event"])
    args = parser.parse_args()
    events = make_events(args.events)
    rss_with_events_mb = current_rss_mb()
    fake, namenode = start_fake()
    try:
        cpu_before = time.process_time()
        wall_before = time.perf_counter()
        asyncio.run(run(namenode, events, args.file_type, args.serializer, "/bench/run", args.batch))
        wall = time.perf_counter() - wall_before
        cpu = time.process_time() - cpu_before
        files = check_output(namenode, "/bench/run", args.events, args.file_type, args.serializer)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(run(namenode, events, args.file_type, args.serializer, "/bench/profiled", args.batch))
        profiler.disable()
        stats = pstats.Stats(profiler)
        total = stats.total_tt
        serializer = sum(row[2] for func, row in stats.stats.items()
                         if SERIALIZER_FUNCTIONS.search(f"{func[0]}:{func[2]}"))
    finally:
        fake.kill()
        fake.wait()
    print(json.dumps({
        "bench": "hdfs_sink", "file_type": args.file_type, "serializer": args.serializer,
        "events": args.events, "event_bytes": EVENT_SIZE,
        "batch": args.batch, "files": files, "events_per_s": round(args.events / wall),
        "mb_per_s": round(args.events * EVENT_SIZE / wall / 1e6, 1), "cpu_s": round(cpu, 2),
        "cpu_per_event_us": round(cpu / args.events * 1e6, 2), "peak_rss_mb": round(peak_rss_mb, 1),
        "rss_of_prebuilt_events_mb": round(rss_with_events_mb, 1),
        "serializer_cpu_share": round(serializer / total, 3) if total else None,
    }))


if __name__ == "__main__":
    main()
