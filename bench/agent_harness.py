"""What the agent benchmarks share: run `kubeflume-agent` as a child process, wait for its port,
and read its CPU seconds and peak RSS from /proc (the agent's own process only, startup excluded
by taking a CPU reading when the load starts)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"agent exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"agent did not listen on {port} within {timeout} s")


# the agent of the Python running the bench (a `kubeflume-agent` on PATH may be another install's)
AGENT_COMMAND = (sys.executable, "-m", "kubeflume_agent.cli")


class AgentProcess:
    """`kubeflume-agent -n a1 -f <conf>` in a child process."""

    def __init__(self, conf: str, workdir: Path, name: str = "a1", metrics_port: int | None = None) -> None:
        self.conf_file = workdir / f"{name}-{id(self)}.conf"
        self.conf_file.write_text(conf)
        argv = [*AGENT_COMMAND, "-n", name, "-f", str(self.conf_file), "--no-reload-conf", "--log-level", "WARNING"]
        argv += ["--metrics-port", str(metrics_port)] if metrics_port else ["--no-metrics"]
        self.log_file = open(workdir / f"{name}-{id(self)}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(argv, stdout=self.log_file, stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        return self.process.returncode

    def log(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")[-2000:]


def report(name: str, events: int, seconds: float, cpu: float, rss: float, **extra) -> None:
    print(f"{name}: {events} events in {seconds:.2f} s = {events / seconds:,.0f} events/s; "
          f"agent CPU {cpu:.2f} s ({cpu / events * 1e6:.1f} us/event); peak RSS {rss:.0f} MB"
          + "".join(f"; {k} {v}" for k, v in extra.items()))


def varied_body(seq: int, size: int) -> bytes:
    """An event body of `size` bytes: its seq number, then text that shifts with it (no two
    neighbours alike, so nothing on the way can get away with caching one body)."""
    head = b"seq=%010d " % seq
    start = seq % 36
    return head + (_ALPHABET * (size // 36 + 2))[start:start + max(0, size - len(head))]


_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789"


def output_bytes(directories: list[Path]) -> int:
    return sum(f.stat().st_size for d in directories for f in d.iterdir() if f.is_file())


def check_arrivals(directories: list[Path], events: int) -> tuple[int, int]:
    """(missing, duplicated) seq numbers in the output files."""
    seen = bytearray(events)
    duplicates = 0
    pattern = re.compile(rb"seq=(\d{10})")
    for directory in directories:
        for path in directory.iterdir():
            for match in pattern.finditer(path.read_bytes()):
                seq = int(match.group(1))
                duplicates += seen[seq]
                seen[seq] = 1
    return events - sum(seen), duplicates


def memory_to_file_roll(out_dir: Path) -> str:
    """The channel and sink of the benchmarks that write files: memory -> file_roll into `out_dir`."""
    return f"""a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 100000
a1.channels.c1.transactionCapacity = 1000
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = {out_dir}
a1.sinks.k1.sink.rollInterval = 0
a1.sinks.k1.sink.batchSize = 1000
"""
