"""The agent's command lines run as real processes: `kubeflume-agent -n a1 -f flume.conf`,
`kubeflume run agent.yaml` and `kubeflume validate`, talked to over real sockets."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from crash_harness import wait_until

from tests.network import free_port

REPO = Path(__file__).resolve().parents[2]
AGENT = [sys.executable, "-m", "kubeflume_agent.cli"]
KUBEFLUME = [sys.executable, "-m", "kubeflume_operator.cli"]


def pipeline(port: int, out: Path, extra: str = "") -> str:
    return (
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
        f"a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\na1.sources.r1.port = {port}\n"
        "a1.sources.r1.channels = c1\n"
        "a1.channels.c1.type = memory\na1.channels.c1.capacity = 10000\na1.channels.c1.transactionCapacity = 1000\n"
        f"a1.sinks.k1.type = file_roll\na1.sinks.k1.channel = c1\na1.sinks.k1.sink.directory = {out}\n"
        "a1.sinks.k1.sink.serializer = header_and_text\n" + extra
    )


class Running:
    """A command started in its own process, its stdout and stderr in files the test can read."""

    def __init__(self, argv: list[str], tmp_path: Path) -> None:
        self.stdout_path, self.stderr_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(argv, stdout=out, stderr=err)

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_for_output(self, text: str) -> None:
        deadline = time.monotonic() + 60
        while text not in self.stdout():
            assert self.process.poll() is None, f"exited {self.process.returncode}:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"no {text!r} in the output:\n{self.stdout()}\n{self.stderr()}"
            time.sleep(0.05)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(60)


def send_lines(port: int, lines: list[str]) -> list[bytes]:
    """Send the lines on one connection and read one reply per line."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall("".join(line + "\n" for line in lines).encode())
        replies = connection.makefile("rb")
        return [replies.readline() for _ in lines]


def written_lines(directory: Path) -> list[str]:
    return [line for path in sorted(directory.iterdir()) for line in path.read_text().splitlines()]


def metrics(port: int) -> dict[str, dict[str, str]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return json.load(response)


def test_an_unchanged_flume_conf_runs_serves_and_stops_cleanly(tmp_path):
    port, metrics_port, out = free_port(), free_port(), tmp_path / "out"
    conf = tmp_path / "flume.conf"
    conf.write_text(pipeline(port, out))
    agent = Running([*AGENT, "-n", "a1", "-f", str(conf), "--metrics-port", str(metrics_port),
                     "--metrics-bind", "127.0.0.1", "--no-reload-conf"], tmp_path)
    try:
        agent.wait_for_output(f"127.0.0.1:{port}")
        assert str(out) in agent.stdout()  # it says where it writes
        lines = [f"event {i}" for i in range(500)]
        assert send_lines(port, lines) == [b"OK\n"] * 500
        report = metrics(metrics_port)
        assert report["SOURCE.r1"]["EventAcceptedCount"] == "500"
        assert report["CHANNEL.c1"]["Type"] == "CHANNEL"
        wait_until(lambda: report_drained(metrics_port, 500), 60, "the sink to drain 500 events")
    finally:
        code = agent.stop()
    assert code == 0, agent.stderr()
    assert written_lines(out) == [f"{{}} event {i}" for i in range(500)]
    assert "stopped" in agent.stderr()


def report_drained(metrics_port: int, count: int) -> bool:
    return metrics(metrics_port)["SINK.k1"]["EventDrainSuccessCount"] == str(count)


def test_a_changed_config_is_applied_and_a_broken_one_is_refused(tmp_path):
    port, out = free_port(), tmp_path / "out"
    conf = tmp_path / "flume.conf"
    conf.write_text(pipeline(port, out))
    agent = Running([*AGENT, "-n", "a1", "-f", str(conf), "--no-metrics", "--reload-interval", "0.2"], tmp_path)
    try:
        agent.wait_for_output(f"127.0.0.1:{port}")
        conf.write_text(pipeline(port, out, "a1.sources.r1.interceptors = i1\n"
                                            "a1.sources.r1.interceptors.i1.type = static\n"
                                            "a1.sources.r1.interceptors.i1.key = tier\n"
                                            "a1.sources.r1.interceptors.i1.value = edge\n"))
        wait_until(lambda: "reloaded" in agent.stderr(), 60, "the reload")
        assert send_lines(port, ["after reload"]) == [b"OK\n"]
        conf.write_text(pipeline(port, out).replace("type = memory", "type = no_such_channel"))
        wait_until(lambda: "cannot be applied" in agent.stderr(), 60, "the broken config to be refused")
        assert "unknown channel type 'no_such_channel'" in agent.stderr()
        assert send_lines(port, ["still serving"]) == [b"OK\n"]
    finally:
        assert agent.stop(signal.SIGINT) == 0, agent.stderr()
    assert written_lines(out) == ["{tier=edge} after reload", "{tier=edge} still serving"]


def test_an_invalid_config_lists_every_problem_and_starts_nothing(tmp_path):
    conf = tmp_path / "flume.conf"
    conf.write_text("a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
                    "a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\na1.sources.r1.port = many\n"
                    "a1.sources.r1.channels = c9\n"
                    "a1.channels.c1.type = memory\n"
                    "a1.sinks.k1.type = null\na1.sinks.k1.channel = c1\na1.sinks.k1.colour = blue\n")
    run = subprocess.run([*AGENT, "-n", "a1", "-f", str(conf), "--no-metrics"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1
    assert "sources.r1.port" in run.stderr and "c9" in run.stderr
    check = subprocess.run([*KUBEFLUME, "validate", str(conf)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 1
    assert "sources.r1.port" in check.stdout and "c9" in check.stdout and "sinks.k1.colour" in check.stdout
    assert "2 errors, 1 warnings" in check.stdout


def test_validate_accepts_every_example(tmp_path):
    for example in sorted((REPO / "examples").glob("agent*.yaml")):
        check = subprocess.run([*KUBEFLUME, "validate", str(example)], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, f"{example.name}:\n{check.stdout}{check.stderr}"


@pytest.mark.timeout(180)
def test_kubeflume_run_serves_the_quickstart_manifest(tmp_path):
    manifest = yaml.safe_load((REPO / "examples" / "agent.yaml").read_text())
    port, metrics_port, out = free_port(), free_port(), tmp_path / "quickstart"
    manifest["spec"]["sources"]["r1"]["port"] = port
    manifest["spec"]["sinks"]["k1"]["sink"]["directory"] = str(out)
    manifest["spec"]["metrics"]["port"] = metrics_port
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(manifest))
    agent = Running([*KUBEFLUME, "run", str(path)], tmp_path)
    try:
        agent.wait_for_output(f":{port}")
        assert str(out) in agent.stdout() and f":{metrics_port}/metrics" in agent.stdout()
        assert send_lines(port, ["hello", "world"]) == [b"OK\n", b"OK\n"]
        wait_until(lambda: out.exists() and len(written_lines(out)) == 2, 60, "two lines in the output")
    finally:
        assert agent.stop(signal.SIGINT) == 0, agent.stderr()
    first, second = written_lines(out)
    assert first.endswith("} hello") and "timestamp=" in first and "host=" in first
    assert second.endswith("} world")
