"""`kubeflume-agent --drain` on a real file channel directory, as real processes.

An agent with a netcat source and a file channel (no sink) stores 100,000 events and answers OK
for each; it is stopped, as a scaled-down pod would be. Then `--drain` runs the same channel
with a file_roll sink: every event is delivered once, exit 0, and the JSON report says what the
channel held and the sink delivered. With a sink that cannot deliver, the drain gives up after
`--drain-timeout`, exits non-zero with the reason, and the channel still holds every event: a
second drain delivers them all. And a running agent's preStop signal (SIGUSR1) stops its sources
while its sinks go on.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from crash_harness import CrashableAgent, wait_until

from tests.network import free_port

EVENTS = 100_000


def channel_config(tmp_path: Path) -> str:
    return (
        "a1.channels = c1\n"
        "a1.channels.c1.type = file\n"
        f"a1.channels.c1.checkpointDir = {tmp_path / 'checkpoint'}\n"
        f"a1.channels.c1.dataDirs = {tmp_path / 'data'}\n"
        "a1.channels.c1.capacity = 200000\n"
        "a1.channels.c1.transactionCapacity = 1000\n"
        "a1.channels.c1.minimumRequiredSpace = 1048576\n"
    )


def source_config(port: int) -> str:
    return (
        "a1.sources = r1\n"
        f"a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\na1.sources.r1.port = {port}\n"
        "a1.sources.r1.channels = c1\n"
    )


def file_roll_sink(out: Path) -> str:
    return ("a1.sinks = k1\na1.sinks.k1.type = file_roll\na1.sinks.k1.channel = c1\n"
            f"a1.sinks.k1.sink.directory = {out}\na1.sinks.k1.sink.rollInterval = 0\n"
            "a1.sinks.k1.sink.batchSize = 1000\n")


def dead_sink(port: int) -> str:
    """An Avro sink aimed at a port where nobody listens: every delivery fails."""
    return ("a1.sinks = k1\na1.sinks.k1.type = avro\na1.sinks.k1.channel = c1\n"
            f"a1.sinks.k1.hostname = 127.0.0.1\na1.sinks.k1.port = {port}\na1.sinks.k1.batch-size = 1000\n")


def accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def send_acknowledged(port: int, count: int) -> int:
    """Send `count` lines on one connection; how many the agent answered OK."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall("".join(f"event-{n:06d}\n" for n in range(count)).encode())
        replies = connection.makefile("rb")
        return sum(replies.readline() == b"OK\n" for _ in range(count))


def fill_channel(tmp_path: Path, count: int) -> None:
    """A real agent stores `count` acknowledged events in the file channel, then stops (SIGTERM)."""
    port = free_port()
    filling = CrashableAgent(tmp_path, source_config(port) + channel_config(tmp_path))
    filling.start()
    try:
        wait_until(lambda: accepting(port), 60, "the netcat source", filling)
        assert send_acknowledged(port, count) == count
    finally:
        filling.stop()
    assert filling.process.returncode == 0, filling.log_tail()


def run_drain(tmp_path: Path, sink: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`kubeflume-agent --drain` on the same config (its source included: --drain turns it off)."""
    config = tmp_path / "drain.conf"
    config.write_text(source_config(free_port()) + channel_config(tmp_path) + sink)
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "kubeflume_agent.cli", "-n", "a1", "-f", str(config), "--drain", "--no-metrics",
         "--drain-report", str(report_path), *extra],
        capture_output=True, text=True, timeout=600)
    last_line = done.stdout.strip().splitlines()[-1]
    report = json.loads(last_line)
    assert json.loads(report_path.read_text()) == report
    return done, report


def delivered_lines(directory: Path) -> list[str]:
    return [line for path in sorted(directory.iterdir()) for line in path.read_text().splitlines()]


@pytest.mark.timeout(600)
def test_a_drain_delivers_every_acknowledged_event_and_exits_0(tmp_path):
    fill_channel(tmp_path, EVENTS)
    out = tmp_path / "out"
    out.mkdir()

    done, report = run_drain(tmp_path, file_roll_sink(out))

    assert done.returncode == 0, done.stderr
    lines = delivered_lines(out)
    assert len(lines) == EVENTS
    assert set(lines) == {f"event-{n:06d}" for n in range(EVENTS)}
    assert report["drained"] is True and report["reason"] == ""
    assert (report["held"], report["delivered"], report["left"]) == (EVENTS, EVENTS, 0)
    assert report["channels"] == {"c1": {"held": EVENTS, "left": 0}} and report["sinks"] == {"k1": EVENTS}
    # the channel's own files agree: a second drain finds nothing
    again, second = run_drain(tmp_path, file_roll_sink(out))
    assert again.returncode == 0 and (second["held"], second["delivered"]) == (0, 0)
    assert len(delivered_lines(out)) == EVENTS


@pytest.mark.timeout(600)
def test_a_drain_whose_sink_keeps_failing_exits_non_zero_and_loses_nothing(tmp_path):
    fill_channel(tmp_path, EVENTS)

    done, report = run_drain(tmp_path, dead_sink(free_port()), "--drain-timeout", "3")

    assert done.returncode == 3, done.stderr
    assert report["drained"] is False
    assert (report["held"], report["delivered"], report["left"]) == (EVENTS, 0, EVENTS)
    assert "no event delivered for 3 s (c1 holds 100000)" in report["reason"]
    assert "last sink errors: k1:" in report["reason"]
    assert "not drained" in done.stderr

    out = tmp_path / "out"
    out.mkdir()
    retried, second = run_drain(tmp_path, file_roll_sink(out))
    assert retried.returncode == 0, retried.stderr
    assert second["held"] == EVENTS
    assert sorted(delivered_lines(out)) == [f"event-{n:06d}" for n in range(EVENTS)]


def test_a_drain_with_a_channel_no_sink_takes_from_gives_up_at_once(tmp_path):
    fill_channel(tmp_path, 10)
    config = tmp_path / "nosink.conf"
    config.write_text(source_config(free_port()) + channel_config(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "kubeflume_agent.cli", "-n", "a1", "-f", str(config), "--drain", "--no-metrics"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["reason"] == "no sink takes from channel c1" and report["drained"] is False
    out = tmp_path / "out"
    out.mkdir()
    assert run_drain(tmp_path, file_roll_sink(out))[1]["delivered"] == 10  # it was all still there


def ready(metrics_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5):
            return True
    except urllib.error.HTTPError:
        return False


def test_sigusr1_stops_the_sources_and_the_sinks_go_on_until_sigterm(tmp_path):
    port, metrics_port, out = free_port(), free_port(), tmp_path / "out"
    memory = ("a1.channels = c1\na1.channels.c1.type = memory\na1.channels.c1.capacity = 10000\n"
              "a1.channels.c1.transactionCapacity = 1000\n")
    (tmp_path / "flume.conf").write_text(source_config(port) + memory + file_roll_sink(out))
    agent = subprocess.Popen(
        [sys.executable, "-m", "kubeflume_agent.cli", "-n", "a1", "-f", str(tmp_path / "flume.conf"),
         "--metrics-port", str(metrics_port), "--metrics-bind", "127.0.0.1", "--no-reload-conf"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: accepting(port) and ready(metrics_port), 60, "the agent")
        assert send_acknowledged(port, 5000) == 5000
        agent.send_signal(signal.SIGUSR1)
        wait_until(lambda: not accepting(port), 60, "the source to stop")
        assert not ready(metrics_port)
        wait_until(lambda: len(delivered_lines(out)) == 5000, 60, "the sink to deliver what the channel held")
        assert agent.poll() is None  # the agent itself goes on until SIGTERM
    finally:
        agent.terminate()
        code = agent.wait(60)
    assert code == 0, agent.stderr.read()
    assert sorted(delivered_lines(out)) == [f"event-{n:06d}" for n in range(5000)]
