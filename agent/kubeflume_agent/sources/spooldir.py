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

import orjson

from kubeflume_agent.config.keys import (
    InvalidValue,
    Key,
    Settings,
    boolean,
    charset,
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
    stream: object
    deserializer: Deserializer
    committed: int  # position after the last committed batch
    untouched: bool  # opened at its start, nothing delivered from it yet (not even after a restart)


class SpoolDirectorySource(PollableSource):
    batch_size_key = "batchSize"
    keys = (
        Key("spoolDir", str, required=True, doc="the directory files are dropped into"),
        Key("fileSuffix", str, ".COMPLETED", doc="appended to a finished file's name"),
        Key("deletePolicy", one_of("never", "immediate"), "never", doc="delete finished files at once?"),
        Key("fileHeader", boolean, False, doc="add the file's absolute path as a header"),
        Key("fileHeaderKey", str, "file"),
        Key("basenameHeader", boolean, False, doc="add the file's name as a header"),
        Key("basenameHeaderKey", str, "basename"),
        Key("includePattern", _regex, re.compile("^.*$"), doc="file names to ingest (regex)"),
        Key("ignorePattern", _regex, re.compile("^$"), doc="file names to skip (regex; wins over include)"),
        Key("trackerDir", str, ".flumespool", doc="state directory; relative paths are inside spoolDir"),
        Key("trackingPolicy", one_of("rename", "tracker_dir"), "rename",
            doc="how a finished file is marked when deletePolicy=never"),
        Key("consumeOrder", one_of("oldest", "youngest", "random"), "oldest"),
        Key("pollDelay", non_negative_integer, 500, doc="milliseconds between looks at an idle directory"),
        Key("recursiveDirectorySearch", boolean, False, doc="also ingest files in subdirectories"),
        Key("maxBackoff", positive_integer, 4000, doc="longest wait (ms) after the channel refused a batch"),
        Key("batchSize", positive_integer, 100, doc="events per channel transaction"),
        Key("inputCharset", charset, "utf-8", doc="charset of text files"),
        Key("decodeErrorPolicy", one_of("FAIL", "REPLACE", "IGNORE"), "fail",
            doc="undecodable bytes: set the file aside, use U+FFFD, or drop them"),
        Key("deserializer", str, "LINE", doc="LINE, BLOB or AVRO"),
        Key("deserializer.", str, prefix=True, doc="settings of the deserializer"),
        Key("bufferMaxLines", positive_integer, 100, doc="ignored, as in Flume"),
        Key("bufferMaxLineLength", positive_integer, 5000, doc="deprecated in Flume; ignored"),
    )

    def __init__(self, name: str, settings: Settings, processor) -> None:
        super().__init__(name, settings, processor)
        self.spool_dir = os.path.abspath(os.path.expanduser(settings["spoolDir"]))
        self.tracker_dir = self.tracker_directory(settings)
        self.deserializer_class = deserializer_class(settings["deserializer"])
        self.deserializer_settings, _ = resolve(self.deserializer_class.keys, settings["deserializer."])
        self.current: OpenFile | None = None
        self._backoff = 0.0
        self._resume: dict | None = None

    @classmethod
    def tracker_directory(cls, settings: Settings) -> str:
        spool_dir = os.path.abspath(os.path.expanduser(settings["spoolDir"]))
        return os.path.join(spool_dir, os.path.expanduser(settings["trackerDir"]))

    @classmethod
    def storage_paths(cls, settings: Settings) -> list[str]:
        spool_dir = os.path.abspath(os.path.expanduser(settings["spoolDir"]))
        tracker = cls.tracker_directory(settings)
        return [spool_dir] if tracker.startswith(spool_dir + os.sep) else [spool_dir, tracker]

    @classmethod
    def validate_settings(cls, settings: Settings) -> list[tuple[str, str]]:
        problems = []
        if settings["deletePolicy"] == "immediate" and settings["trackingPolicy"] == "tracker_dir":
            problems.append(("trackingPolicy", "tracker_dir only applies with deletePolicy=never"))
        try:
            chosen = deserializer_class(settings["deserializer"])
        except ValueError as error:
            return [*problems, ("deserializer", str(error))]
        if chosen is LineDeserializer and "\n".encode(settings["inputCharset"]) != b"\n":
            problems.append(("inputCharset", "the LINE deserializer needs a charset in which a newline is "
                                             "the byte 0x0A (UTF-8, ISO-8859-*, ASCII...)"))
        _, found = resolve(chosen.keys, settings["deserializer."])
        problems += [(f"deserializer.{p.key}", p.message) for p in found if p.severity == "error"]
        return problems

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
                await asyncio.sleep(self.settings["pollDelay"] / 1000)
                return Status.READY
        current = self.current
        try:
            events = await asyncio.to_thread(current.deserializer.read_events, self.settings["batchSize"])
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
            await self._back_off(error)
            return Status.READY
        self._backoff = 0.0
        current.untouched = False
        current.committed = current.deserializer.tell()
        await asyncio.to_thread(self._save_position, current)
        return Status.READY

    async def _back_off(self, error: ChannelError) -> None:
        self._backoff = min(self._backoff * 2 or FIRST_BACKOFF, self.settings["maxBackoff"] / 1000)
        log.warning("source %s: channel refused a batch of %s (%s); retrying in %.2f s",
                    self.name, self.current.path, error, self._backoff)
        await asyncio.sleep(self._backoff)

    def _add_headers(self, path: str, events) -> None:
        settings = self.settings
        extra = {}
        if settings["fileHeader"]:
            extra[settings["fileHeaderKey"]] = path
        if settings["basenameHeader"]:
            extra[settings["basenameHeaderKey"]] = os.path.basename(path)
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
            if not self.settings["recursiveDirectorySearch"]:
                break
        return found

    def _descend(self, path: str) -> bool:
        name = os.path.basename(path)
        return (self.settings["recursiveDirectorySearch"] and not name.startswith(".")
                and path != self.tracker_dir and not self.settings["ignorePattern"].fullmatch(name))

    def _wanted(self, path: str) -> bool:
        name = os.path.basename(path)
        settings = self.settings
        if (name.startswith(".") or name.endswith(settings["fileSuffix"])
                or not settings["includePattern"].fullmatch(name) or settings["ignorePattern"].fullmatch(name)
                or not os.path.isfile(path) or os.path.exists(self._marker(path, FAILED_SUFFIX))):
            return False
        tracked = settings["deletePolicy"] == "never" and settings["trackingPolicy"] == "tracker_dir"
        return not (tracked and os.path.exists(self._marker(path, settings["fileSuffix"])))

    def _choose(self, files: list[str]) -> str:
        order = self.settings["consumeOrder"]
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
        settings = self.settings
        renames = settings["deletePolicy"] == "never" and settings["trackingPolicy"] == "rename"
        if renames and os.path.exists(path + settings["fileSuffix"]):
            raise FileSetAside(f"{path + settings['fileSuffix']} exists: this file name has been used before")
        stream = open(path, "rb")  # noqa: SIM115 - stays open while the file is being ingested
        stat = os.fstat(stream.fileno())
        position = self._saved_position(path, stat.st_ino)
        try:
            deserializer = self.deserializer_class(
                self.deserializer_settings, stream, settings["inputCharset"], settings["decodeErrorPolicy"])
        except Exception as error:
            stream.close()
            raise FileSetAside(f"not readable as {settings['deserializer']}: {error}") from error
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
        settings = self.settings
        if settings["deletePolicy"] == "immediate":
            os.remove(current.path)
        elif settings["trackingPolicy"] == "tracker_dir":
            marker = self._marker(current.path, settings["fileSuffix"])
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            open(marker, "wb").close()
        else:
            destination = current.path + settings["fileSuffix"]
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
