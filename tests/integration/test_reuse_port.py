"""`reusePort = true`: two agent processes bind one syslog TCP port (SO_REUSEPORT) and the kernel
spreads connections over both, which is how an agent scales past one core. Real processes, real
`logger` senders, and nothing lost between the two."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.network import free_port

pytestmark = pytest.mark.timeout(180)


def agent_conf(port: int, out: Path) -> str:
    return (
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
        f"a1.sources.r1.type = syslogtcp\na1.sources.r1.host = 127.0.0.1\na1.sources.r1.port = {port}\n"
        "a1.sources.r1.reusePort = true\na1.sources.r1.channels = c1\n"
        "a1.channels.c1.type = memory\n"
        f"a1.sinks.k1.type = file_roll\na1.sinks.k1.channel = c1\na1.sinks.k1.sink.directory = {out}\n"
        "a1.sinks.k1.sink.rollInterval = 0\na1.sinks.k1.sink.batchSize = 1\n"
    )


class Agent:
    def __init__(self, tmp_path: Path, name: str, port: int) -> None:
        self.out = tmp_path / name
        self.out.mkdir()
        conf = tmp_path / f"{name}.conf"
        conf.write_text(agent_conf(port, self.out))
        self.log = tmp_path / f"{name}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kubeflume_agent.cli", "-n", "a1", "-f", str(conf), "--no-metrics",
                 "--no-reload-conf"], stdout=log, stderr=subprocess.STDOUT)

    def wait_listening(self, port: int) -> None:
        deadline = time.monotonic() + 60
        while f"127.0.0.1:{port}" not in self.log.read_text(errors="replace"):
            assert self.process.poll() is None, self.log.read_text(errors="replace")
            assert time.monotonic() < deadline, self.log.read_text(errors="replace")
            time.sleep(0.05)

    def bodies(self) -> list[str]:
        return [line for path in self.out.iterdir() for line in path.read_text().splitlines()]

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(60)


def send_with_logger(port: int, message: str) -> None:
    """One TCP connection per message: the kernel picks a listener per connection."""
    subprocess.run(["logger", "--rfc3164", "-n", "127.0.0.1", "-P", str(port), "-T", "-t", "app", message],
                   check=True, timeout=30)


def test_two_agent_processes_share_a_port_and_both_receive(tmp_path):
    port = free_port()
    first, second = Agent(tmp_path, "first", port), Agent(tmp_path, "second", port)
    try:
        first.wait_listening(port)
        second.wait_listening(port)
        sent: list[str] = []
        deadline = time.monotonic() + 120
        while not (first.bodies() and second.bodies()):
            assert time.monotonic() < deadline, f"one agent got every connection: {len(sent)} sent"
            for _ in range(10):
                sent.append(f"message {len(sent)}")
                send_with_logger(port, sent[-1])
            time.sleep(0.2)
        while len(first.bodies()) + len(second.bodies()) < len(sent):
            assert time.monotonic() < deadline, "not every message was written"
            time.sleep(0.05)
    finally:
        codes = first.stop(), second.stop()
    assert codes == (0, 0)
    received = first.bodies() + second.bodies()
    assert sorted(received) == sorted(f"app: {message}" for message in sent)
    assert set(first.bodies()).isdisjoint(second.bodies())
