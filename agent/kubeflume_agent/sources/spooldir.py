"""The spooling directory source: ingest files dropped into a directory, one file at a time.

Each `process()` call reads one batch from the current file and delivers it; only after the
channels committed it is the read position saved (`<trackerDir>/.kubeflume-spool-position.json`),
so a restart resumes where the last committed batch ended: nothing lost, nothing skipped. A
finished file is renamed to `<name><fileSuffix>`, deleted, or (trackingPolicy=tracker_dir) marked
by an empty `<trackerDir>/<relative path><fileSuffix>`. As in Flume, `includePattern` and
`ignorePattern` must match the whole file name (Java's `matches()`), and an empty file gives one
event with an empty body.

Where Flume stops the whole source until a restart (a file changed after it was placed, a name
used twice, undecodable bytes with decodeErrorPolicy=FAIL) this source sets that one file aside:
it counts the error, logs why, writes `<trackerDir>/<relative path>.failed` (delete it to retry the
file) and goes on with the other files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

import orjson

from kubeflume_agent.config.keys import (
    Config,
    InvalidValue,
    boolean,
    charset,
    key,
    non_negative_integer,
    one_of,
    positive_integer,
    resolve,
)
from kubeflume_agent.core.errors import ChannelError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.status import Status
from kubeflume_agent.protocols.deserializers import (
    Deserializer,
    LineDeserializer,
    UndecodableInput,
    deserializer_class,
)
from kubeflume_agent.sources.base import PollableSource

log = logging.getLogger(__name__)

POSITION_FILE = ".kubeflume-spool-position.json"
FAILED_SUFFIX = ".failed"
FIRST_BACKOFF = 0.25


def _regex(text: str) -> re.Pattern:
    try:
        return re.compile(text)
    except re.error as error:
        raise InvalidValue(f"not a valid regular expression: {error}") from None


class FileSetAside(Exception):
    """This file cannot be ingested as it is; the others still can."""


@dataclass
class OpenFile:
    path: str
    inode: int
    mtime_ns: int
    size: int
    stream: BinaryIO
    deserializer: Deserializer
    committed: int  # position after the last committed batch
    untouched: bool  # opened at its start, nothing delivered from it yet (not even after a restart)


@dataclass(frozen=True)
class SpoolDirectoryConfig(Config):
    spool_dir: str = key("spoolDir", str, required=True, doc="the directory files are dropped into")
    file_suffix: str = key("fileSuffix", str, ".COMPLETED", doc="appended to a finished file's name")
    delete_policy: str = key("deletePolicy", one_of("never", "immediate"), "never",
                             doc="delete finished files at once?")
    file_header: bool = key("fileHeader", boolean, False, doc="add the file's absolute path as a header")
    file_header_key: str = key("fileHeaderKey", str, "file")
    basename_header: bool = key("basenameHeader", boolean, False, doc="add the file's name as a header")
    basename_header_key: str = key("basenameHeaderKey", str, "basename")
    include_pattern: re.Pattern[str] = key("includePattern", _regex, re.compile("^.*$"),
                                           doc="file names to ingest (regex)")
    ignore_pattern: re.Pattern[str] = key("ignorePattern", _regex, re.compile("^$"),
                                          doc="file names to skip (regex; wins over include)")
    tracker_dir: str = key("trackerDir", str, ".flumespool",
                           doc="state directory; relative paths are inside spoolDir")
    tracking_policy: str = key("trackingPolicy", one_of("rename", "tracker_dir"), "rename",
                               doc="how a finished file is marked when deletePolicy=never")
    consume_order: str = key("consumeOrder", one_of("oldest", "youngest", "random"), "oldest")
    poll_delay: int = key("pollDelay", non_negative_integer, 500,
                          doc="milliseconds between looks at an idle directory")
    recursive_directory_search: bool = key("recursiveDirectorySearch", boolean, False,
                                           doc="also ingest files in subdirectories")
    max_backoff: int = key("maxBackoff", positive_integer, 4000,
                           doc="longest wait (ms) after the channel refused a batch")
    batch_size: int = key("batchSize", positive_integer, 100, doc="events per channel transaction")
    input_charset: str = key("inputCharset", charset, "utf-8", doc="charset of text files")
    decode_error_policy: str = key("decodeErrorPolicy", one_of("FAIL", "REPLACE", "IGNORE"), "fail",
                                   doc="undecodable bytes: set the file aside, use U+FFFD, or drop them")
    deserializer: str = key("deserializer", str, "LINE", doc="LINE, BLOB or AVRO")
    deserializer_params: dict[str, str] = key("deserializer.", str, prefix=True, doc="settings of the deserializer")
    buffer_max_lines: int = key("bufferMaxLines", positive_integer, 100, doc="ignored, as in Flume")
    buffer_max_line_length: int = key("bufferMaxLineLength", positive_integer, 5000,
                                      doc="deprecated in Flume; ignored")

    @property
    def spool_directory(self) -> str:
        return os.path.abspath(os.path.expanduser(self.spool_dir))

    @property
    def tracker_directory(self) -> str:
        return os.path.join(self.spool_directory, os.path.expanduser(self.tracker_dir))

    def storage_paths(self) -> list[str]:
        spool_dir, tracker = self.spool_directory, self.tracker_directory
        return [spool_dir] if tracker.startswith(spool_dir + os.sep) else [spool_dir, tracker]

    def problems(self) -> list[tuple[str, str]]:
        problems = []
        if self.delete_policy == "immediate" and self.tracking_policy == "tracker_dir":
            problems.append(("trackingPolicy", "tracker_dir only applies with deletePolicy=never"))
        try:
            chosen = deserializer_class(self.deserializer)
        except ValueError as error:
            return [*problems, ("deserializer", str(error))]
        if chosen is LineDeserializer and "\n".encode(self.input_charset) != b"\n":
            problems.append(("inputCharset", "the LINE deserializer needs a charset in which a newline is "
                                             "the byte 0x0A (UTF-8, ISO-8859-*, ASCII...)"))
        _, found = resolve(chosen.config_class, self.deserializer_params)
        problems += [(f"deserializer.{p.key}", p.message) for p in found if p.severity == "error"]
        return problems


class SpoolDirectorySource(PollableSource[SpoolDirectoryConfig]):
    def __init__(self, name: str, config: SpoolDirectoryConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.spool_dir = config.spool_directory
        self.tracker_dir = config.tracker_directory
        self.deserializer_class = deserializer_class(config.deserializer)
        self.deserializer_config, _ = resolve(self.deserializer_class.config_class, config.deserializer_params)
        self.current: OpenFile | None = None
        self._backoff = 0.0
        self._resume: dict | None = None

    async def start(self) -> None:
        os.makedirs(self.tracker_dir, exist_ok=True)
        self._check_writable()
        self._resume = self._load_position()
        await super().start()

    async def stop(self) -> None:
        if self.current:
            self.current.stream.close()
            self.current = None
        await super().stop()

    def _check_writable(self) -> None:
        """Fail at start, not at the first finished file, when the directory is read-only."""
        with tempfile.NamedTemporaryFile(dir=self.spool_dir, prefix=".flume-spooldir-perm-check-",
                                         suffix=".canary"):
            pass

    # -- the loop -----------------------------------------------------------------------------

    async def process(self) -> Status:
        if self.current is None:
            self.current = await asyncio.to_thread(self._open_next)
            if self.current is None:  # nothing to ingest: look again after pollDelay, as Flume does
                await asyncio.sleep(self.config.poll_delay / 1000)
                return Status.READY
        current = self.current
        try:
            events = await asyncio.to_thread(current.deserializer.read_events, self.config.batch_size)
        except (UndecodableInput, OSError, ValueError) as error:
            self.counters.event_read_fail += 1
            await asyncio.to_thread(self._set_aside, current, f"cannot read it: {error}")
            return Status.READY
        if not events and current.untouched:  # an empty file is one empty event, as in Flume
            events = [Event(b"")]
        if not events:
            await asyncio.to_thread(self._finish, current)
            return Status.READY
        self._add_headers(current.path, events)
        try:
            await self.deliver(events)
        except ChannelError as error:
            current.deserializer.seek(current.committed)
            await self._back_off(current, error)
            return Status.READY
        self._backoff = 0.0
        current.untouched = False
        current.committed = current.deserializer.tell()
        await asyncio.to_thread(self._save_position, current)
        return Status.READY

    async def _back_off(self, current: OpenFile, error: ChannelError) -> None:
        self._backoff = min(self._backoff * 2 or FIRST_BACKOFF, self.config.max_backoff / 1000)
        log.warning("source %s: channel refused a batch of %s (%s); retrying in %.2f s",
                    self.name, current.path, error, self._backoff)
        await asyncio.sleep(self._backoff)

    def _add_headers(self, path: str, events) -> None:
        config = self.config
        extra = {}
        if config.file_header:
            extra[config.file_header_key] = path
        if config.basename_header:
            extra[config.basename_header_key] = os.path.basename(path)
        if extra:
            for event in events:
                event.headers.update(extra)

    # -- choosing and opening files -----------------------------------------------------------

    def candidates(self) -> list[str]:
        """Files ready to ingest, as Flume chooses them (see reference c.5)."""
        found = []
        for directory, subdirs, names in os.walk(self.spool_dir):
            subdirs[:] = [d for d in subdirs if self._descend(os.path.join(directory, d))]
            found += [os.path.join(directory, n) for n in names if self._wanted(os.path.join(directory, n))]
            if not self.config.recursive_directory_search:
                break
        return found

    def _descend(self, path: str) -> bool:
        name = os.path.basename(path)
        return (self.config.recursive_directory_search and not name.startswith(".")
                and path != self.tracker_dir and not self.config.ignore_pattern.fullmatch(name))

    def _wanted(self, path: str) -> bool:
        name = os.path.basename(path)
        config = self.config
        if (name.startswith(".") or name.endswith(config.file_suffix)
                or not config.include_pattern.fullmatch(name) or config.ignore_pattern.fullmatch(name)
                or not os.path.isfile(path) or os.path.exists(self._marker(path, FAILED_SUFFIX))):
            return False
        tracked = config.delete_policy == "never" and config.tracking_policy == "tracker_dir"
        return not (tracked and os.path.exists(self._marker(path, config.file_suffix)))

    def _choose(self, files: list[str]) -> str:
        order = self.config.consume_order
        if order == "random":
            return random.choice(files)
        dated = [(os.stat(path).st_mtime_ns, path) for path in files]
        if order == "oldest":
            return min(dated)[1]
        return min(dated, key=lambda item: (-item[0], item[1]))[1]

    def _open_next(self) -> OpenFile | None:
        while True:
            files = self.candidates()
            if not files:
                return None
            path = self._resume_path(files) or self._choose(files)
            try:
                return self._open(path)
            except FileSetAside as error:
                self.counters.event_read_fail += 1
                self._mark_failed(path, str(error))
            except FileNotFoundError:
                continue

    def _resume_path(self, files: list[str]) -> str | None:
        resume, self._resume = self._resume, None
        if resume and resume["file"] in files:
            return resume["file"]
        return None

    def _open(self, path: str) -> OpenFile:
        config = self.config
        renames = config.delete_policy == "never" and config.tracking_policy == "rename"
        if renames and os.path.exists(path + config.file_suffix):
            raise FileSetAside(f"{path + config.file_suffix} exists: this file name has been used before")
        stream = open(path, "rb")  # noqa: SIM115 - stays open while the file is being ingested
        stat = os.fstat(stream.fileno())
        position = self._saved_position(path, stat.st_ino)
        try:
            deserializer = self.deserializer_class(
                self.deserializer_config, stream, config.input_charset, config.decode_error_policy)
        except Exception as error:
            stream.close()
            raise FileSetAside(f"not readable as {config.deserializer}: {error}") from error
        if position is not None:
            deserializer.seek(position)
            log.info("source %s: resuming %s at position %d", self.name, path, position)
        return OpenFile(path, stat.st_ino, stat.st_mtime_ns, stat.st_size, stream, deserializer,
                        deserializer.tell(), untouched=position is None)

    # -- finishing files ----------------------------------------------------------------------

    def _finish(self, current: OpenFile) -> None:
        stat = os.stat(current.path)
        if stat.st_mtime_ns != current.mtime_ns or stat.st_size != current.size:
            self.counters.event_read_fail += 1
            self._set_aside(current, "it was modified after it was placed in the spool directory "
                                     "(files must be complete and unchanging once placed)")
            return
        current.stream.close()
        config = self.config
        if config.delete_policy == "immediate":
            os.remove(current.path)
        elif config.tracking_policy == "tracker_dir":
            marker = self._marker(current.path, config.file_suffix)
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            open(marker, "wb").close()
        else:
            destination = current.path + config.file_suffix
            if os.path.exists(destination):
                self._set_aside(current, f"{destination} exists: this file name has been used before")
                return
            os.rename(current.path, destination)
        self.current = None
        self._forget_position()
        log.info("source %s: finished %s", self.name, current.path)

    def _set_aside(self, current: OpenFile, reason: str) -> None:
        current.stream.close()
        self.current = None
        self._forget_position()
        self._mark_failed(current.path, reason)

    def _mark_failed(self, path: str, reason: str) -> None:
        marker = self._marker(path, FAILED_SUFFIX)
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w") as file:
            file.write(reason + "\n")
        log.error("source %s: set %s aside, %s; the other files go on. Delete %s to ingest it again.",
                  self.name, path, reason, marker)

    def _marker(self, path: str, suffix: str) -> str:
        return os.path.join(self.tracker_dir, os.path.relpath(path, self.spool_dir) + suffix)

    # -- the saved read position --------------------------------------------------------------

    def _position_path(self) -> str:
        return os.path.join(self.tracker_dir, POSITION_FILE)

    def _save_position(self, current: OpenFile) -> None:
        """Atomic replace: a crash leaves the old or the new position, both already committed."""
        temporary = self._position_path() + ".tmp"
        with open(temporary, "wb") as file:
            file.write(orjson.dumps({"file": current.path, "inode": current.inode, "position": current.committed}))
        os.replace(temporary, self._position_path())

    def _load_position(self) -> dict | None:
        try:
            with open(self._position_path(), "rb") as file:
                saved = orjson.loads(file.read())
            return saved if {"file", "inode", "position"} <= saved.keys() else None
        except (FileNotFoundError, orjson.JSONDecodeError, AttributeError):
            return None

    def _saved_position(self, path: str, inode: int) -> int | None:
        saved = self._load_position()
        if saved and saved["file"] == path and saved["inode"] == inode:
            return int(saved["position"])
        return None

    def _forget_position(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._position_path())
