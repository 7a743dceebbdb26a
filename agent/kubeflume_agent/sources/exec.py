"""The exec source: run a command and turn each line of its standard output into an event.

Lines end at `\\n`, `\\r` or `\\r\\n` (Java's readLine, as in Flume); a batch goes to the channel
when `batchSize` lines are collected or `batchTimeout` ms after its first line. Unlike Flume, a
batch the channel refuses is not lost: the source holds it, stops reading the child's output
(the pipe fills and the child blocks on write, which is backpressure) and retries with a growing
pause until the channel takes it. When the child exits, what is left is delivered; with
`restart` the command runs again after `restartThrottle` ms.

There is still no end-to-end guarantee: the child cannot be told that a line was refused, and
lines it wrote just before the agent died are lost. Use taildir or spooldir where that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
from dataclasses import dataclass

from kubeflume_agent.config.keys import (
    Config,
    boolean,
    charset,
    key,
    non_negative_integer,
    positive_integer,
)
from kubeflume_agent.core.errors import ChannelError
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.lines import ReadLineSplitter
from kubeflume_agent.sources.base import Source

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
FIRST_RETRY = 0.25
MAX_RETRY = 5.0
STOP_GRACE = 5.0


@dataclass(frozen=True)
class ExecSourceConfig(Config):
    command: str = key("command", str, required=True, doc="the command to run")
    shell: str | None = key("shell", str, None, doc="e.g. '/bin/sh -c': run the command through it")
    restart: bool = key("restart", boolean, False, doc="run the command again when it exits")
    restart_throttle_ms: int = key("restartThrottle", non_negative_integer, 10000, doc="ms to wait before a restart")
    log_stderr: bool = key("logStdErr", boolean, False, doc="log the command's standard error")
    batch_size: int = key("batchSize", positive_integer, 20, doc="lines per channel transaction")
    batch_timeout_ms: int = key("batchTimeout", positive_integer, 3000, doc="ms after which a partial batch is sent")
    charset: str = key("charset", charset, "utf-8", doc="charset of the command's output")


class ExecSource(Source[ExecSourceConfig]):
    def __init__(self, name: str, config: ExecSourceConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.process: asyncio.subprocess.Process | None = None
        self.runs = 0
        self._task: asyncio.Task | None = None
        self._stopping = False

    def argv(self) -> list[str]:
        command = self.config.command
        if self.config.shell:
            return [*shlex.split(self.config.shell), command]
        return command.split()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run_until_stopped(), name=f"exec source {self.name}")
        await super().start()

    async def stop(self) -> None:
        self._stopping = True
        await self._end_child()
        if self._task:
            try:
                await asyncio.wait_for(self._task, STOP_GRACE)  # cancels the task if it takes longer
            except TimeoutError:
                log.warning("source %s: the last batch could not be delivered before stop", self.name)
        await super().stop()

    async def _run_until_stopped(self) -> None:
        while not self._stopping:
            try:
                code = await self._run_once()
                log.info("source %s: command %r exited with code %s", self.name, self.config.command, code)
            except OSError as error:
                self.counters.generic_processing_fail += 1
                log.error("source %s: cannot run %r: %s", self.name, self.config.command, error)
            if not self.config.restart or self._stopping:
                return
            await asyncio.sleep(self.config.restart_throttle_ms / 1000)

    async def _run_once(self) -> int | None:
        self.process = process = await asyncio.create_subprocess_exec(
            *self.argv(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)  # its own group: stop ends all of it
        assert process.stdout is not None and process.stderr is not None, "both are pipes"
        self.runs += 1
        stderr = asyncio.create_task(self._drain_stderr(process.stderr))
        try:
            await self._read_stdout(process.stdout)
        finally:
            await stderr
        return await self.process.wait()

    async def _read_stdout(self, stdout: asyncio.StreamReader) -> None:
        splitter = ReadLineSplitter()
        batch: list[Event] = []
        timeout = self.config.batch_timeout_ms / 1000
        loop = asyncio.get_running_loop()
        deadline = None
        while True:
            wait = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                data = await asyncio.wait_for(stdout.read(READ_SIZE), wait)
            except TimeoutError:
                await self._deliver_held(batch)
                batch, deadline = [], None
                continue
            lines = splitter.feed(data) if data else splitter.finish()
            for line in lines:
                batch.append(Event(self._recode(line)))
                if len(batch) >= self.config.batch_size:
                    await self._deliver_held(batch)
                    batch = []
            deadline = None if not batch else deadline or loop.time() + timeout
            if not data:
                await self._deliver_held(batch)
                return

    def _recode(self, line: bytes) -> bytes:
        encoding = self.config.charset
        return line.decode(encoding, "replace").encode(encoding)

    async def _deliver_held(self, batch: list[Event]) -> None:
        """Deliver `batch`, retrying while the channel refuses it; output is not read meanwhile."""
        pause = FIRST_RETRY
        while batch:
            try:
                await self.deliver(batch)
                return
            except ChannelError as error:
                if self._stopping and self.process and self.process.returncode is not None:
                    log.warning("source %s: stopping; %d lines the channel refused are dropped: %s",
                                self.name, len(batch), error)
                    return
                log.warning("source %s: channel refused %d lines (%s); holding them, retrying in %.2f s",
                            self.name, len(batch), error, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_RETRY)

    async def _drain_stderr(self, stderr: asyncio.StreamReader) -> None:
        splitter = ReadLineSplitter()
        while data := await stderr.read(READ_SIZE):
            if self.config.log_stderr:
                for line in splitter.feed(data):
                    log.info("source %s: StdErr: %s", self.name, line.decode(self.config.charset, "replace"))

    async def _end_child(self) -> None:
        """Terminate the command's whole process group (a shell's children too), then kill it."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
