"""The exec source running real commands, with a real memory channel behind it."""

from __future__ import annotations

import logging
from pathlib import Path

from source_harness import collect, memory_channel, running_source, wait_for

from kubeflume_agent.protocols.lines import ReadLineSplitter


async def test_lines_of_a_command_arrive_in_order():
    async with running_source("exec", {"command": "seq 1 50", "batchSize": "20"}) as (source, channel):
        events = await collect(channel, 50)
        assert [e.body for e in events] == [str(i).encode() for i in range(1, 51)]
        await wait_for(lambda: source.process.returncode == 0, what="the command to exit")
    assert source.counters.append_batch_accepted == 3  # 20 + 20 + the 10 left at exit


async def test_shell_and_every_line_ending():
    params = {"command": r"printf 'a\r\nb\rc\nd'", "shell": "/bin/sh -c"}
    async with running_source("exec", params) as (_, channel):
        assert [e.body for e in await collect(channel, 4)] == [b"a", b"b", b"c", b"d"]


def test_crlf_split_across_reads_is_one_line_end():
    splitter = ReadLineSplitter()
    assert splitter.feed(b"one\r") == [b"one"]
    assert splitter.feed(b"\ntwo\n") == [b"two"]
    assert splitter.feed(b"three") == []
    assert splitter.finish() == [b"three"]


async def test_batch_timeout_sends_a_partial_batch_while_the_command_runs():
    params = {"command": "echo first; exec sleep 60", "shell": "/bin/sh -c", "batchTimeout": "100"}
    async with running_source("exec", params) as (source, channel):
        assert [e.body for e in await collect(channel, 1)] == [b"first"]
        assert source.process.returncode is None
    assert source.process.returncode is not None  # stop ended the command


async def test_a_full_channel_holds_the_batch_and_loses_nothing():
    channel = memory_channel(capacity=20, transaction_capacity=20, keep_alive="0")
    params = {"command": "seq 1 120", "batchSize": "15", "batchTimeout": "50"}
    async with running_source("exec", params, channel) as (source, _):
        events = await collect(channel, 120, timeout=60)
    assert [e.body for e in events] == [str(i).encode() for i in range(1, 121)]
    assert source.counters.channel_write_fail > 0


def blocked_writing_to_its_pipe(pid: int) -> bool:
    """The kernel's word for where the process sleeps: writing to a full pipe nobody reads."""
    return "pipe_write" in Path(f"/proc/{pid}/wchan").read_text()


async def test_a_full_channel_stops_the_reading_so_the_command_blocks():
    channel = memory_channel(capacity=150, transaction_capacity=100, keep_alive="0")
    total = 300_000  # about 2 MB of output, far more than the pipe and the reader's buffer hold
    params = {"command": f"seq 1 {total}", "batchSize": "100", "batchTimeout": "50"}
    async with running_source("exec", params, channel) as (source, _):
        await wait_for(lambda: source.counters.channel_write_fail > 0, what="the channel to refuse a batch")
        await wait_for(lambda: blocked_writing_to_its_pipe(source.process.pid), timeout=60,
                       what="the command to block on its full stdout pipe")
        assert source.process.returncode is None
        assert source.counters.events_received < total // 4  # what was read is one held batch, not all
        channel.capacity = total  # room at last: the held batch goes in, reading resumes
        events = await collect(channel, total, timeout=120)
    assert [e.body for e in events] == [str(i).encode() for i in range(1, total + 1)]


async def test_restart_runs_the_command_again():
    params = {"command": "echo again", "restart": "true", "restartThrottle": "10"}
    async with running_source("exec", params) as (source, channel):
        events = await collect(channel, 3)
        assert {e.body for e in events} == {b"again"}
        assert source.runs >= 3


async def test_stderr_is_logged_only_when_asked(caplog):
    params = {"command": "echo out; echo problem >&2", "shell": "/bin/sh -c", "logStdErr": "true"}
    with caplog.at_level(logging.INFO):
        async with running_source("exec", params) as (_, channel):
            assert [e.body for e in await collect(channel, 1)] == [b"out"]
            await wait_for(lambda: "StdErr: problem" in caplog.text, what="the stderr line in the log")


async def test_a_command_that_cannot_start_is_reported(caplog):
    async with running_source("exec", {"command": "/nonexistent/tool --flag"}) as (source, _):
        await wait_for(lambda: source.counters.generic_processing_fail == 1, what="the failure count")
    assert "cannot run '/nonexistent/tool --flag'" in caplog.text


async def test_stop_ends_the_children_of_a_shell_too(tmp_path):
    marker = tmp_path / "child.pid"
    params = {"command": f"sleep 300 & echo $! > {marker}; echo started; wait", "shell": "/bin/sh -c",
              "batchTimeout": "50"}
    async with running_source("exec", params) as (_, channel):
        await collect(channel, 1)
    child = Path(f"/proc/{int(marker.read_text())}/stat")

    def ended() -> bool:  # gone, or a zombie waiting for its parent to reap it
        try:
            return child.read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    await wait_for(ended, what="the shell's child to end")
