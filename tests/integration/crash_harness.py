"""Run the real agent CLI as a child process and kill it with SIGKILL, for the crash tests.

`CrashableAgent(tmp_path, config)` writes the flume.conf, starts `kubeflume-agent -n a1 -f ...`
(with this directory on PYTHONPATH so the recording sink loads), and can `kill()` it with SIGKILL
at any moment or `stop()` it gracefully (SIGTERM). Its stderr goes to a log file the test prints
when something fails.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class CrashableAgent:
    def __init__(self, tmp_path: Path, config: str) -> None:
        self.config_path = tmp_path / "flume.conf"
        self.config_path.write_text(config)
        self.log_path = tmp_path / "agent.log"
        self.process: subprocess.Popen | None = None
        self.kills = 0

    def start(self) -> None:
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kubeflume_agent.cli", "-n", "a1", "-f", str(self.config_path),
                 "--no-metrics", "--no-reload-conf"],
                stdout=log, stderr=log, env=environment)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.kills += 1

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(condition, timeout: float, what: str, agent: CrashableAgent | None = None) -> None:
    """Poll `condition` until true; fail after a generous timeout with the agent's log."""
    deadline = time.monotonic() + timeout
    while not condition():
        if agent is not None and not agent.alive():
            raise AssertionError(f"agent exited while waiting for {what}:\n{agent.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f":\n{agent.log_tail()}" if agent else ""))
        time.sleep(0.05)


def recorded(path: Path) -> collections.Counter:
    """How often each line reached the recording sink."""
    if not path.exists():
        return collections.Counter()
    return collections.Counter(line for line in path.read_text().splitlines() if not line.startswith("+"))


def delivered_after_their_take_committed(path: Path) -> list[str]:
    """Events the recording sink got again after the channel had committed their take."""
    committed: set[str] = set()
    again = []
    for line in path.read_text().splitlines():
        if line.startswith("+"):
            committed.add(line[1:])
        elif line in committed:
            again.append(line)
    return again


def file_channel_config(tmp_path: Path, capacity: int = 200000) -> str:
    return (
        "a1.channels.c1.type = file\n"
        f"a1.channels.c1.checkpointDir = {tmp_path / 'checkpoint'}\n"
        f"a1.channels.c1.dataDirs = {tmp_path / 'data'}\n"
        "a1.channels.c1.checkpointInterval = 1000\n"
        "a1.channels.c1.minimumRequiredSpace = 1048576\n"
        f"a1.channels.c1.capacity = {capacity}\n"
        "a1.channels.c1.transactionCapacity = 1000\n"
        "a1.sinks.k1.type = recording_sink:RecordingSink\n"
        f"a1.sinks.k1.path = {tmp_path / 'delivered.txt'}\n"
        "a1.sinks.k1.channel = c1\n"
    )
