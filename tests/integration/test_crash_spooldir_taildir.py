"""kill -9 the real agent while spooldir and taildir read, while files arrive and are finished,
and while logs rotate (by rename and by copy-truncate): no line goes missing.

The pipeline is source -> file channel -> recording sink, run by the `kubeflume-agent` CLI. The test
kills the agent with SIGKILL at random moments (seeded; the seed is printed), restarts it, and at
the end checks that every line written reached the sink. Duplicates are allowed (at-least-once)
and reported.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time

import pytest
from crash_harness import CrashableAgent, file_channel_config, recorded, wait_until

KILLS = 5


def expected_lines(prefix: str, files: int, lines: int) -> list[str]:
    return [f"{prefix}{f:02d}-{n:05d}" for f in range(files) for n in range(lines)]


def report(name: str, counts, expected: list[str], agent: CrashableAgent) -> None:
    missing = [line for line in expected if line not in counts]
    duplicates = sum(count - 1 for count in counts.values())
    print(f"{name}: {len(expected)} lines, {agent.kills} kills, {duplicates} duplicates, {len(missing)} missing")
    assert not missing, f"{len(missing)} lines lost, e.g. {missing[:5]}\n{agent.log_tail()}"
    assert set(counts) <= set(expected)


def completed(spool) -> int:
    return sum(name.endswith(".COMPLETED") for name in os.listdir(spool))


def kill_repeatedly(agent: CrashableAgent, delivered, spool, rng: random.Random, still_running) -> None:
    """Kill in the middle of a file, or just as one was finished and the next is being opened."""
    for _ in range(KILLS):
        if not still_running():
            return
        if rng.random() < 0.5:
            before = completed(spool)
            wait_until(lambda b=before: completed(spool) > b or not still_running(), 120, "a finished file", agent)
            time.sleep(rng.uniform(0, 0.05))
        else:
            before = sum(recorded(delivered).values())
            wait_until(lambda b=before: sum(recorded(delivered).values()) > b, 120, "progress", agent)
            time.sleep(rng.uniform(0.05, 0.4))
        agent.kill()
        agent.start()


class SpoolDropper(threading.Thread):
    """Places files into the spool directory while the agent runs, as users must: written elsewhere,
    then renamed in (complete and unchanging once placed)."""

    def __init__(self, staging, spool, names: list[str], lines: int) -> None:
        super().__init__(daemon=True)
        self.staging, self.spool, self.names, self.lines = staging, spool, names, lines

    def run(self) -> None:
        for name in self.names:
            write_numbered(self.staging / name, name.split(".")[0], self.lines)
            os.rename(self.staging / name, self.spool / name)
            time.sleep(0.3)


def write_numbered(path, prefix: str, lines: int) -> None:
    path.write_text("".join(f"{prefix}-{n:05d}\n" for n in range(lines)))


@pytest.mark.timeout(300)
def test_spooldir_loses_no_line_when_killed_while_reading_and_between_files(tmp_path):
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    spool, staging = tmp_path / "spool", tmp_path / "staging"
    spool.mkdir()
    staging.mkdir()
    files, lines = 30, 1500
    names = [f"f{f:02d}.log" for f in range(files)]
    for name in names[:10]:
        write_numbered(spool / name, name.split(".")[0], lines)
    config = (
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
        f"a1.sources.r1.type = spooldir\na1.sources.r1.spoolDir = {spool}\n"
        "a1.sources.r1.batchSize = 50\na1.sources.r1.pollDelay = 100\na1.sources.r1.channels = c1\n"
        + file_channel_config(tmp_path)
    )
    delivered = tmp_path / "delivered.txt"
    agent = CrashableAgent(tmp_path, config)
    expected = expected_lines("f", files, lines)
    dropper = SpoolDropper(staging, spool, names[10:], lines)
    agent.start()
    dropper.start()
    try:
        kill_repeatedly(agent, delivered, spool, rng, lambda: len(recorded(delivered)) < len(expected))
        dropper.join(120)
        wait_until(lambda: len(recorded(delivered)) >= len(expected), 300, "every line", agent)
        wait_until(lambda: completed(spool) == files, 60, "every file renamed", agent)
    finally:
        agent.stop()
    report("spooldir", recorded(delivered), expected, agent)
    assert sorted(os.listdir(spool)) == [".flumespool", *sorted(name + ".COMPLETED" for name in names)]


class RotatingWriter(threading.Thread):
    """Appends numbered lines to app.log, about 1000 lines a second, and rotates it every `per_file`
    lines: `rename` moves it to app.log.<n> (a name the source does not match, as logrotate and the
    kubelet do); `copytruncate` copies it to app.log.<n> (a name the source matches, so the lines
    not read yet are in a followed file) and empties it, as logrotate's copytruncate does.

    Each file lives longer than an agent restart takes: a file created and rotated away entirely
    while no agent runs cannot be found by any tailer (nothing recorded its inode)."""

    def __init__(self, directory, files: int, per_file: int, mode: str) -> None:
        super().__init__(daemon=True)
        self.directory, self.files, self.per_file, self.mode = directory, files, per_file, mode
        self.rotated = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            path = self.directory / "app.log"
            for f in range(self.files):
                with open(path, "a") as out:
                    for n in range(self.per_file):
                        out.write(f"t{f:02d}-{n:05d}\n")
                        out.flush()
                        if n % 10 == 9:
                            time.sleep(0.01)
                self.rotate(path, self.directory / f"app.log.{f}")
                self.rotated.set()
        except BaseException as error:
            self.error = error

    def rotate(self, path, destination) -> None:
        if self.mode == "rename":
            os.rename(path, destination)
        else:
            shutil.copyfile(path, destination)
            os.truncate(path, 0)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("mode", "pattern"), [("rename", r"app\.log"), ("copytruncate", r"app\.log.*")])
def test_taildir_loses_no_line_when_killed_during_reading_and_rotation(tmp_path, mode, pattern):
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    config = (
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
        "a1.sources.r1.type = TAILDIR\na1.sources.r1.filegroups = g1\n"
        f"a1.sources.r1.filegroups.g1 = {logs}/{pattern}\n"
        f"a1.sources.r1.positionFile = {tmp_path / 'state' / 'position.json'}\n"
        "a1.sources.r1.writePosInterval = 200\na1.sources.r1.idleTimeout = 2000\n"
        "a1.sources.r1.maxBackoffSleep = 100\na1.sources.r1.backoffSleepIncrement = 50\n"
        "a1.sources.r1.batchSize = 100\na1.sources.r1.channels = c1\n"
        + file_channel_config(tmp_path)
    )
    delivered = tmp_path / "delivered.txt"
    agent = CrashableAgent(tmp_path, config)
    writer = RotatingWriter(logs, files=5, per_file=2000, mode=mode)
    expected = expected_lines("t", 5, 2000)
    agent.start()
    writer.start()
    try:
        for _ in range(KILLS):
            if not writer.is_alive():
                break
            if rng.random() < 0.5 and writer.rotated.wait(30):  # right after a rotation
                writer.rotated.clear()
                time.sleep(rng.uniform(0, 0.2))
            else:  # in the middle of reading
                time.sleep(rng.uniform(0.3, 1.5))
            agent.kill()
            agent.start()
        writer.join(300)
        assert writer.error is None
        wait_until(lambda: len(recorded(delivered)) >= len(expected), 300, "every line", agent)
    finally:
        agent.stop()
    report(f"taildir ({mode})", recorded(delivered), expected, agent)
