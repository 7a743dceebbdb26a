"""Flume's `file_roll` sink (RollingFileSink): events serialized into files of a local directory.

Files are named as Flume's path managers name them: `<prefix><agentStartMillis>-<n>[.<extension>]`
(DEFAULT) or `<prefix><yyyyMMddHHmmss>-<n>[.<extension>]` with n restarting every second
(ROLLTIME), n counting from 1. A file is opened at the first batch after a roll, so an idle sink
leaves no empty files (Flume opens one every rollInterval, busy or not); `sink.rollInterval`
seconds after the sink starts, and every interval after that, the open file is finished and the
next batch starts a new one.

A batch is encoded as a whole and handed to the OS with os.write before `write()` returns, so
the channel forgets a batch only once it is in the file (in the page cache, as Flume's flush;
neither fsyncs). If anything fails (disk full, directory gone, file deleted while open), the
batch rolls back and the file is given up: cut back to its last complete batch (or removed when
it holds none), so the retried batch is never in two files. The next batch opens a new file.
Names are never reused: an existing file is skipped, not overwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from kubeflume_agent.config.keys import key, number, one_of, positive_integer
from kubeflume_agent.core.channel import Channel
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.serializers import EventSerializer, create_serializer, serializer_problems
from kubeflume_agent.sinks.base import Sink, SinkKeys

log = logging.getLogger(__name__)


class PathManager:
    """Flume's DefaultPathManager: one series stamp (the agent's start, in ms) and a counter."""

    def __init__(self, prefix: str, extension: str, series: str) -> None:
        self.prefix = prefix
        self.suffix = f".{extension}" if extension else ""
        self.series = series
        self.index = 0

    def next_name(self) -> str:
        stamp = self.stamp()
        self.index += 1
        return f"{self.prefix}{stamp}-{self.index}{self.suffix}"

    def stamp(self) -> str:
        return self.series


class RollTimePathManager(PathManager):
    """Flume's RollTimePathManager: the local time of the roll; the counter restarts each second."""

    def stamp(self) -> str:
        now = time.strftime("%Y%m%d%H%M%S")
        if now != self.series:
            self.series = now
            self.index = 0
        return now


PATH_MANAGERS = {"default": PathManager, "rolltime": RollTimePathManager}


@dataclass
class OpenFile:
    """The file being written: `length` bytes of it are complete (begin() and whole batches)."""

    fd: int
    path: str
    serializer: EventSerializer
    length: int = 0
    batches: int = 0


@dataclass(frozen=True)
class RollingFileSinkConfig(SinkKeys):
    directory: str = key("sink.directory", str, required=True,
                         doc="directory the files are written to; created if missing")
    path_manager: str = key("sink.pathManager", one_of('DEFAULT', 'ROLLTIME'), "default",
                            doc="file names: DEFAULT = <prefix><agent start ms>-<n>, ROLLTIME = "
                                "<prefix><yyyyMMddHHmmss>-<n>")
    extension: str = key("sink.pathManager.extension", str, "", doc="file name extension, without the dot")
    prefix: str = key("sink.pathManager.prefix", str, "", doc="file name prefix")
    roll_interval: float = key("sink.rollInterval", number, 30.0,
                               doc="seconds between rolls to a new file; 0 = one file, never rolled")
    serializer: str = key("sink.serializer", str, "TEXT",
                          doc="event serializer: text, header_and_text, avro_event or a class path")
    serializer_params: dict[str, str] = key("sink.serializer.", str, prefix=True,
                                            doc="serializer settings, e.g. sink.serializer.appendNewline")
    batch_size: int = key("sink.batchSize", positive_integer, 100, doc="events taken from the channel per batch")

    def destination(self) -> str:
        return self.directory

    def problems(self) -> list[tuple[str, str]]:
        problems = [("sink." + key, message) for key, message in serializer_problems(self.serializer,
                                                                                       self.serializer_params)]
        if self.roll_interval < 0:
            problems.append(("sink.rollInterval", "expected 0 (never roll) or more seconds"))
        return problems


class RollingFileSink(Sink[RollingFileSinkConfig]):
    """Flume's `file_roll` sink: serialized events in local files, a new file every rollInterval."""

    def __init__(self, name: str, config: RollingFileSinkConfig, channel: Channel) -> None:
        super().__init__(name, config, channel)
        self.directory: str = self.config.directory
        self.roll_interval: float = self.config.roll_interval
        self.series_millis = int(time.time() * 1000)  # Flume takes it when the sink is configured
        manager = PATH_MANAGERS[self.config.path_manager]
        self.paths = manager(self.config.prefix, self.config.extension,
                             str(self.series_millis))
        self._file: OpenFile | None = None
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task | None = None

    def describe(self) -> str:
        pattern = os.path.join(self.directory, self.paths.prefix + "<stamp>-<n>" + self.paths.suffix)
        rolls = f"rolled every {self.roll_interval:g} s" if self.roll_interval else "never rolled"
        return f"{type(self).__name__} {pattern} ({self.config.serializer.lower()}, {rolls})"

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as error:  # not fatal: every batch tries again, and fails visibly until it works
            log.warning("sink %s: cannot create directory %s: %s", self.name, self.directory, error)
        if self.roll_interval > 0:
            self._timer = asyncio.get_running_loop().create_task(self._roll_every(self.roll_interval),
                                                                 name=f"sink {self.name} rolls")
        await super().start()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        async with self._lock:
            self._finish()
        await super().stop()

    async def _roll_every(self, interval: float) -> None:
        """Flume's roll timer: at a fixed rate, finish the open file; the next batch opens the next."""
        while True:
            await asyncio.sleep(interval)
            async with self._lock:
                self._finish()

    # --- writing ----------------------------------------------------------------------------

    async def write(self, events: Sequence[Event]) -> None:
        async with self._lock:  # a roll never lands between a file's open and its batch
            file = self._file or self._open()
            try:
                append(file, file.serializer.encode(events))
            except BaseException:
                self._abandon(file)
                raise
            file.batches += 1

    def _open(self) -> OpenFile:
        """A new file with the serializer's opening bytes; never one that exists already."""
        serializer = create_serializer(self.config.serializer, self.config.serializer_params)
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd, path = self._create()
        except OSError:
            self.counters.connections_failed += 1
            raise
        file = OpenFile(fd, path, serializer)
        self.counters.connections_created += 1
        log.debug("sink %s: opened %s", self.name, path)
        try:
            append(file, file.serializer.begin())
        except BaseException:
            self._abandon(file)
            raise
        self._file = file
        return file

    def _create(self) -> tuple[int, str]:
        while True:
            path = os.path.join(self.directory, self.paths.next_name())
            try:
                return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
            except FileExistsError:
                log.warning("sink %s: %s exists already; it is left alone and the next name used", self.name, path)

    def _finish(self) -> None:
        """Roll: the serializer's closing bytes, then close. The batches are in already, so a
        failure here is only logged."""
        file, self._file = self._file, None
        if file is None:
            return
        try:
            append(file, file.serializer.end())
        except Exception as error:
            log.warning("sink %s: could not finish %s: %s", self.name, file.path, error)
        finally:
            self._close(file)
        log.debug("sink %s: rolled %s", self.name, file.path)

    def _abandon(self, file: OpenFile) -> None:
        """After a failed write: keep only whole batches in the file, then let it go."""
        self._file = None
        try:
            if file.batches:
                os.ftruncate(file.fd, file.length)
            else:
                os.unlink(file.path)
        except OSError as error:
            log.warning("sink %s: could not clean up %s after a failed write: %s", self.name, file.path, error)
        self._close(file)

    def _close(self, file: OpenFile) -> None:
        with contextlib.suppress(OSError):
            os.close(file.fd)
        self.counters.connections_closed += 1


def append(file: OpenFile, data: bytes) -> None:
    """All of `data` to the OS, or raise. A file deleted while open (its directory removed, say)
    raises too: bytes written there would be acknowledged and lost."""
    view = memoryview(data)
    while view:
        view = view[os.write(file.fd, view):]
    if os.fstat(file.fd).st_nlink == 0:
        raise OSError(f"{file.path} was deleted while being written")
    file.length += len(data)
