"""Fuzz every wire parser with at least 10^5 inputs each (tests/fuzz_targets.py) and count.

    python3 bench/fuzz_parsers.py [--inputs 100000] [--seed 1] [--only NAME ...]

Per target: inputs that gave events, inputs refused with the parser's own error type, crashes
(anything else escaping, or an input taking longer than --hang-seconds), valid streams whose
pieces gave other events than the whole, and the largest memory one input made the parser
allocate (tracemalloc, on one input in 100). Exit status 1 if anything crashed or differed.
Inputs are mostly mutations of valid messages, so they reach deep into each format.
"""

from __future__ import annotations

import argparse
import collections
import random
import resource
import signal
import sys
import time
import traceback
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz_targets import TARGETS, Target, cut, fuzz_input, outcome

MEMORY_SAMPLE = 100  # trace the allocations of one input in this many


class Hang(Exception):
    """An input took longer than --hang-seconds."""


def _alarm(signum, frame):
    raise Hang("input took too long")


def run_target(target: Target, inputs: int, seed: int, hang_seconds: float) -> dict:
    rng = random.Random(f"{seed}:{target.name}")
    counts = collections.Counter()
    crashes: dict[str, tuple[bytes, str]] = {}
    peak_bytes = 0
    started = time.perf_counter()
    for number in range(inputs):
        data = fuzz_input(rng, target)
        pieces = cut(rng, data)
        traced = number % MEMORY_SAMPLE == 0
        if traced:
            tracemalloc.start()
        signal.setitimer(signal.ITIMER_REAL, hang_seconds)
        try:
            kind, _ = outcome(target, pieces)
            counts[kind] += 1
        except Exception as error:  # a crash: what the property forbids
            counts["crash"] += 1
            where = traceback.extract_tb(error.__traceback__)[-1]
            crashes.setdefault(f"{type(error).__name__} at {where.filename}:{where.lineno}",
                               (data, traceback.format_exc(limit=-4)))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            if traced:
                peak_bytes = max(peak_bytes, tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
    for _ in range(inputs // 10 if target.stream else 0):
        stream = target.valid(rng)
        if outcome(target, [stream]) != outcome(target, cut(rng, stream)):
            counts["cut-differs"] += 1
            crashes.setdefault("cut-differs", (stream, "pieces gave other events than the whole"))
    return {"counts": counts, "crashes": crashes, "peak_bytes": peak_bytes,
            "seconds": time.perf_counter() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hang-seconds", type=float, default=10.0)
    parser.add_argument("--only", nargs="*", help="target names")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    failed = False
    print(f"{'target':28} {'inputs':>8} {'events':>8} {'refused':>8} {'crashes':>8} {'cut-diff':>8} "
          f"{'peak KiB':>9} {'s':>6}")
    for target in TARGETS:
        if args.only and target.name not in args.only:
            continue
        result = run_target(target, args.inputs, args.seed, args.hang_seconds)
        counts = result["counts"]
        print(f"{target.name:28} {args.inputs:8} {counts['events']:8} {counts['refused']:8} {counts['crash']:8} "
              f"{counts['cut-differs']:8} {result['peak_bytes'] // 1024:9} {result['seconds']:6.0f}", flush=True)
        for what, (data, detail) in result["crashes"].items():
            failed = True
            print(f"  {what}: input {data[:80]!r}\n    " + detail.replace("\n", "\n    "))
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
