"""CPU of the http source's JSON reading alone: the compiled reader (protocols/_json_fast.pyx) and
the reference (orjson + sources.http._json_events), in microseconds per request of 100 events, the
making of the events and their freeing timed apart.

Shapes: `harness` is the shared bench's http_json request (headers host and seq, ~200-byte ASCII
body), `varied` has five headers drawn from 21 names per event, `non-ascii` has accented header
values and bodies. `warm` reads one request over and over; `cold` cycles through --requests
distinct ones while the last 10 requests' events stay alive (as the sink's linger keeps them), so
the caches are cooler, as in the agent. The GC is off while timing. Figures vary ±10% run to run
on a shared machine: compare builds by alternating runs.

    python bench/json_reader.py [--requests 2000] [--shapes harness non-ascii]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections import deque
from collections.abc import Callable

import orjson

from kubeflume_agent.protocols.accelerators import compiled
from kubeflume_agent.sources.http import _json_events

EVENTS_PER_REQUEST = 100
ALIVE = 10


def request(shape: str, first: int, rng: random.Random) -> bytes:
    events = []
    for seq in range(first, first + EVENTS_PER_REQUEST):
        if shape == "varied":
            headers = {f"name{rng.randint(0, 20)}": str(rng.random()) for _ in range(5)}
        elif shape == "non-ascii":
            headers = {"host": "hôte-é", "seq": str(seq)}
        else:
            headers = {"host": "benchhost", "seq": str(seq)}
        text = "é€ü" * 20 if shape == "non-ascii" else ""
        body = f"seq={seq:010d} {text}" + "".join(rng.choice("abcdefghij klmnop") for _ in range(200 - len(text) - 15))
        events.append({"headers": headers, "body": body})
    return json.dumps(events, separators=(",", ":"), ensure_ascii=False).encode()


def reference(raw: bytes) -> list:
    return _json_events(orjson.loads(raw), "utf-8", b"")


def timed(read: Callable[[bytes], list], bodies: list[bytes], rounds: int = 3) -> tuple[float, float]:
    """Best of `rounds`: (reading, freeing) in µs per request, ALIVE requests' events kept alive."""
    best_read = best_free = float("inf")
    for _ in range(rounds):
        alive: deque[list] = deque()
        reading = freeing = 0.0
        for body in bodies:
            start = time.perf_counter()
            events = read(body)
            reading += time.perf_counter() - start
            alive.append(events)
            del events
            if len(alive) > ALIVE:
                oldest = alive.popleft()
                start = time.perf_counter()
                del oldest
                freeing += time.perf_counter() - start
        best_read = min(best_read, reading / len(bodies) * 1e6)
        best_free = min(best_free, freeing / len(bodies) * 1e6)
    return best_read, best_free


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--shapes", nargs="*", default=["harness", "varied", "non-ascii"])
    args = parser.parse_args()
    readers = {"compiled": compiled("_json_fast", "json_events"), "reference": reference}
    if readers["compiled"] is None:
        print("compiled reader not built (or KUBEFLUME_PURE_PYTHON set): reference only")
        del readers["compiled"]
    rng = random.Random(1)
    gc.disable()
    columns = ("warm read", "warm free", "cold read", "cold free")
    print(f"{'shape':10} {'reader':10}", *(f"{column:>10}" for column in columns), " µs/request")
    for shape in args.shapes:
        bodies = [request(shape, n * EVENTS_PER_REQUEST, rng) for n in range(args.requests)]
        for name, read in readers.items():
            assert read(bodies[0]) == reference(bodies[0]), (shape, name)
            warm = timed(read, [bodies[0]] * len(bodies))
            cold = timed(read, bodies)
            print(f"{shape:10} {name:10} {warm[0]:10.1f} {warm[1]:10.1f} {cold[0]:10.1f} {cold[1]:10.1f}")


if __name__ == "__main__":
    main()
