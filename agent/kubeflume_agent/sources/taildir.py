"""The Taildir source: follow files matching per-group patterns, line by line, across restarts.

Files are followed by inode, not by name, and each open file keeps its descriptor, so rotation
neither loses nor duplicates lines (Flume's most reported taildir bug, FLUME-3216/3233/3342):
- rename (`app.log` -> `app.log.1`, new `app.log`): the old inode is read to its end through the
  open descriptor, under its new name if that still matches, else until it has been idle for
  `idleTimeout`; the new `app.log` is a new inode, read from its start;
- copy-truncate (`app.log` copied to `app.log.1`, then emptied): a new file whose first bytes equal
  those of a followed file may be that file's copy. Until the original is truncated it supplies
  those lines and the copy waits; once it is, the copy is read from where the original was. A
  copy first listed after the truncation was seen (or after a restart) is recognised for a minute
  by the original's old first bytes. An original that goes away instead, or is not truncated
  within a minute, was never copied: the look-alike is read from its start (a duplicate at worst,
  never a loss);
- a file whose first bytes changed (truncated and rewritten, or a reused inode) is read from 0.
  Copy-truncate still loses what was written between the last read and the truncation when the
  copy's name does not match a pattern: that is inherent to copy-truncate.

Container logs (`lineFormat = cri | docker`, see protocols/container_logs.py) and multiline records
(`multiline.start`) are joined per file and stream before they become events. The position then
stops at the first line of the first unfinished record (a partial line, a stack trace still
growing), so Flume's position file never points past an event that was not sent; `.kubeflume`
also keeps how far lines were read and where each stream's unfinished record begins, so after a
restart the lines in between that were already sent are skipped: no loss, no duplicate.

Positions advance only after the channel committed the lines before them and are written every
`writePosInterval` and at stop, so a crash re-reads at most that interval's lines and never skips
any. `positionFile` is exactly Flume's JSON (`[{"inode":..,"pos":..,"file":".."}]`), so Flume can
take over from it; `<positionFile>.kubeflume` beside it holds the same entries plus what inode and
path alone cannot tell (a fingerprint of each file's first bytes, its group, its real path). It is
written first and used only while its inodes, positions and paths equal the position file's; else
(a crash between the two writes, a file written by Flume) the position file alone is used, with
Flume's rule: a position applies to the same inode under the same path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import zlib
from dataclasses import dataclass, field

import orjson

from kubeflume_agent.config.keys import (
    Config,
    InvalidValue,
    boolean,
    key,
    non_negative_integer,
    one_of,
    positive_integer,
    word_list,
)
from kubeflume_agent.core.batches import batches
from kubeflume_agent.core.counters import SourceCounters, flume
from kubeflume_agent.core.errors import ChannelError
from kubeflume_agent.core.event import Event
from kubeflume_agent.core.status import Status
from kubeflume_agent.protocols.container_logs import LINE_FORMATS, LineAssembler, Multiline, Record
from kubeflume_agent.protocols.java_patterns import translate_java_regex
from kubeflume_agent.sources.base import PollableSource

log = logging.getLogger(__name__)

HEAD_BYTES = 1024  # how much of a file's start identifies it
READ_CHUNK = 64 * 1024
MAX_BATCHES_PER_POLL = 1000  # then the other files get their turn; the runner polls again at once
MIN_COPY_HEAD = 64  # fewer first bytes than this cannot tell a copy from a new file that starts alike
TRUNCATE_WAIT = 60.0  # seconds a copy-truncate's truncation may lag its copy
FINGERPRINTS_SUFFIX = ".kubeflume"
FLUME_KEYS = ("inode", "pos", "file")
PARSE_ERROR_HEADER = "kubernetes.parseError"


@dataclass(eq=False)
class TaildirCounters(SourceCounters):
    lines_malformed: int = flume("LineParseErrorCount")  # passed on raw, with a parseError header
    events_cut: int = flume("EventCutCount")  # split because they grew past maxLineBytes


@dataclass(frozen=True)
class Progress:
    """How far a file was read and sent: `pos` (Flume's position: nothing before it is still
    needed), `read_to` (lines before it were read), `pending` (stream -> first line of its
    unfinished record, between the two). For whole lines, all three say the same."""

    pos: int
    read_to: int
    pending: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, entry: dict, size: int | None = None) -> Progress:
        """From a saved entry; a position past `size` means the file was truncated: from 0."""
        pos = int(entry["pos"])
        if size is not None and pos > size:
            return cls(0, 0)
        read_to = int(entry.get("readTo", pos))
        return cls(pos, read_to, {str(k): int(v) for k, v in entry.get("pending", {}).items()})

    def entry(self) -> dict:
        return {"pos": self.pos, "readTo": self.read_to, "pending": self.pending}

    def clipped(self, size: int) -> Progress:
        """The same progress in a copy of the file that holds only its first `size` bytes."""
        return Progress(min(self.pos, size), min(self.read_to, size),
                        {stream: start for stream, start in self.pending.items() if start < size})


@dataclass
class TailFile:
    inode: int
    path: str
    group: str
    pos: int
    fd: int
    head_length: int = 0
    head_crc: int = 0
    last_growth: float = field(default_factory=time.monotonic)
    size: int = 0
    visible: bool = True  # still matched by a pattern (else: read to the end, then dropped)
    twin: TailFile | None = None  # the original this file may be a copy of (copy-truncate)
    twin_since: float = 0.0
    read_to: int = 0  # see Progress
    pending: dict[str, int] = field(default_factory=dict)
    assembler: LineAssembler | None = None  # joins partial and multiline records (else lines are events)
    read_pos: int = 0  # where the assembler goes on reading (past read_to while a batch is in flight)
    tally: tuple[int, int] = (0, 0)  # (malformed lines, cut events) of the batch in flight
    headers: dict[str, str] = field(default_factory=dict)  # what every event of this file gets
    headers_for: tuple[str, str] | None = None  # (group, path) `headers` were built for

    @property
    def progress(self) -> Progress:
        return Progress(self.pos, self.read_to, self.pending)

    def resume(self, progress: Progress) -> None:
        """Go on from `progress`: read again from its pos, skipping what was sent already."""
        self.pos, self.read_to, self.pending = progress.pos, max(progress.read_to, progress.pos), progress.pending
        self.read_pos = self.pos
        if self.assembler is not None:
            self.assembler = self.assembler.fresh()
            self.assembler.replay(self.read_to, self.pending)

    def head_matches(self, data: bytes) -> bool:
        return len(data) >= self.head_length and zlib.crc32(data[:self.head_length]) == self.head_crc


def _java_regex(text: str) -> re.Pattern[bytes]:
    """A Java regular expression (as Flume's interceptors take), matched at a line's start."""
    try:
        return re.compile(translate_java_regex(text).encode(), re.ASCII)
    except re.error as error:
        raise InvalidValue(f"not a valid regular expression: {error}") from None


def _group_pattern(text: str) -> str:
    directory, name = os.path.split(os.path.expanduser(text.strip()))
    if not os.path.isabs(directory):
        raise InvalidValue(f"expected an absolute path, got {text!r}")
    try:
        re.compile(name)
    except re.error as error:
        raise InvalidValue(f"the file-name part is not a valid regular expression: {error}") from None
    return os.path.join(directory, name)


@dataclass(frozen=True)
class TaildirConfig(Config):
    filegroups: list[str] = key("filegroups", word_list, required=True, doc="names of the file groups")
    filegroup_paths: dict[str, str] = key(
        "filegroups.", _group_pattern, prefix=True,
        doc="per group: absolute path, regular expression allowed in the file-name part")
    position_file: str = key("positionFile", str, "~/.flume/taildir_position.json",
                             doc="where read positions are kept")
    headers: dict[str, str] = key("headers.", str, prefix=True,
                                  doc="headers.<group>.<name> = value: static headers per group")
    byte_offset_header: bool = key("byteOffsetHeader", boolean, False,
                                   doc="add header byteoffset = the line's start offset")
    skip_to_end: bool = key("skipToEnd", boolean, False, doc="start files not in the position file at their end")
    idle_timeout: int = key(
        "idleTimeout", non_negative_integer, 120000,
        doc="ms without growth after which a last line without newline is sent and rotated files closed")
    write_pos_interval: int = key("writePosInterval", non_negative_integer, 3000,
                                  doc="ms between writes of the position file")
    batch_size: int = key("batchSize", positive_integer, 100, doc="lines per channel transaction")
    max_batch_count: int = key("maxBatchCount", positive_integer, 2**63 - 1,
                               doc="batches from one file before the next file")
    backoff_sleep_increment: int = key("backoffSleepIncrement", positive_integer, 1000,
                                       doc="ms added to the wait per idle poll")
    max_backoff_sleep: int = key("maxBackoffSleep", positive_integer, 5000, doc="longest wait (ms) between idle polls")
    cache_pattern_matching: bool = key("cachePatternMatching", boolean, True,
                                       doc="accepted; directories are listed on every poll")
    file_header: bool = key("fileHeader", boolean, False, doc="add the file's path as a header")
    file_header_key: str = key("fileHeaderKey", str, "file")
    line_format: str = key(
        "lineFormat", one_of(*LINE_FORMATS), "raw",
        doc="raw: each line an event; cri (containerd, CRI-O) or docker (json-file): the message alone, "
            "partial lines joined, headers stream and timestamp")
    max_line_bytes: int = key(
        "maxLineBytes", positive_integer, 1024 * 1024,
        doc="longest joined event (partial or multiline); past it the event is cut (EventCutCount)")
    multiline_start: re.Pattern[bytes] | None = key(
        "multiline.start", _java_regex,
        doc="regex of a record's first line; the lines that follow (same file and stream) are appended with \\n")
    multiline_max_lines: int = key("multiline.maxLines", positive_integer, 500,
                                   doc="most lines in one multiline record")
    multiline_flush_timeout: int = key("multiline.flushTimeout", positive_integer, 5000,
                                       doc="ms after which an unfinished multiline record is sent anyway")

    @property
    def position_path(self) -> str:
        return os.path.abspath(os.path.expanduser(self.position_file))

    def storage_paths(self) -> list[str]:
        return [os.path.dirname(self.position_path)]

    def problems(self) -> list[tuple[str, str]]:
        return [(f"filegroups.{group}", "is required for every group in filegroups")
                for group in self.filegroups if group not in self.filegroup_paths]

    def assembler(self) -> LineAssembler | None:
        """The joiner every followed file gets a copy of; None when lines are events as they are."""
        start = self.multiline_start
        if self.line_format == "raw" and start is None:
            return None
        multiline = None if start is None else Multiline(start, self.multiline_max_lines,
                                                         self.multiline_flush_timeout / 1000)
        return LineAssembler(self.line_format, max_bytes=self.max_line_bytes, multiline=multiline,
                             partial_timeout=self.idle_timeout / 1000)

    def header_names(self) -> tuple[str | None, str | None]:
        """(byte offset header, file header): the optional headers every event may get."""
        return ("byteoffset" if self.byte_offset_header else None,
                self.file_header_key if self.file_header else None)


class TaildirSource(PollableSource[TaildirConfig]):
    counters: TaildirCounters
    def __init__(self, name: str, config: TaildirConfig, processor) -> None:
        super().__init__(name, config, processor)
        self.counters = TaildirCounters()
        self.position_file = config.position_path
        self.assembler = config.assembler()
        self.event_headers = config.header_names()
        self.patterns = {group: self._compile(config.filegroup_paths[group]) for group in config.filegroups}
        self.group_headers = self._headers_by_group(config.headers)
        self.files: dict[int, TailFile] = {}
        self._idle_polls = 0
        self._last_position_write = 0.0
        self._positions_stale = False
        self._unreadable: set[int] = set()
        self._left_behind: list[dict] = []  # positions of files truncated (or gone while down): see _copy_of

    @staticmethod
    def _compile(path: str) -> tuple[str, re.Pattern]:
        directory, name = os.path.split(path)
        return directory, re.compile(name)

    @staticmethod
    def _headers_by_group(flat: dict[str, str]) -> dict[str, dict[str, str]]:
        headers: dict[str, dict[str, str]] = {}
        for flat_key, value in flat.items():
            group, _, name = flat_key.partition(".")
            headers.setdefault(group, {})[name] = value
        return headers


    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.position_file), exist_ok=True)
        saved = self._load_positions()
        found = self._matching_files()
        for inode, path, group, size in found:  # first the known files: which of them went on elsewhere?
            if inode in saved:
                self._follow(inode, path, group, size, saved.pop(inode), at_start=True)
        for entry in saved.values():
            self._finish_rotated_while_down(entry)
        for inode, path, group, size in found:
            if inode not in self.files and inode not in self._unreadable:
                self._follow(inode, path, group, size, None, at_start=True)
        await super().start()

    async def stop(self) -> None:
        self._write_positions()
        for tail in self.files.values():
            os.close(tail.fd)
        self.files.clear()
        await super().stop()

    # -- polling ------------------------------------------------------------------------------

    async def process(self) -> Status:
        self._scan()
        read_any = False
        for tail in sorted(self.files.values(), key=lambda t: os.fstat(t.fd).st_mtime_ns):  # oldest first
            for _ in range(min(self.config.max_batch_count, MAX_BATCHES_PER_POLL)):
                events, progress = self._read_batch(tail)
                if not events and progress == tail.progress:
                    break
                try:
                    await self._deliver_all(events)
                except ChannelError as error:
                    log.warning("source %s: channel refused lines of %s: %s", self.name, tail.path, error)
                    tail.resume(tail.progress)
                    await self._back_off()
                    return Status.READY
                self._commit(tail, progress)
                read_any = True
        self._drop_finished()
        if self._positions_stale or (
                time.monotonic() - self._last_position_write >= self.config.write_pos_interval / 1000):
            self._write_positions()
        if read_any:
            self._idle_polls = 0
        else:
            await self._back_off()
        return Status.READY

    async def _deliver_all(self, events: list[Event]) -> None:
        """One batch, or (when one long line was cut into many events) several of batchSize."""
        for batch in batches(events, self.config.batch_size):
            await self.deliver(batch)

    def _commit(self, tail: TailFile, progress: Progress) -> None:
        tail.pos, tail.read_to, tail.pending = progress.pos, progress.read_to, progress.pending
        malformed, cut = tail.tally
        self.counters.lines_malformed += malformed
        self.counters.events_cut += cut
        tail.tally = (0, 0)

    async def _back_off(self) -> None:
        """Wait as Flume's runner would (backoffSleepIncrement steps up to maxBackoffSleep); the
        runner's own backoff (fixed 1 s steps) is not used, so these keys keep their meaning."""
        self._idle_polls += 1
        config = self.config
        await asyncio.sleep(min(self._idle_polls * config.backoff_sleep_increment,
                                config.max_backoff_sleep) / 1000)

    # -- finding files ------------------------------------------------------------------------

    def _matching_files(self) -> list[tuple[int, str, str, int]]:
        """(inode, path, group, size) of every regular file a pattern matches, oldest first."""
        found = []
        for group, (directory, pattern) in self.patterns.items():
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                if not pattern.fullmatch(entry.name):
                    continue
                try:
                    stat = os.stat(entry.path)  # follows symlinks, as /var/log/containers needs
                except FileNotFoundError:
                    continue
                if os.path.isfile(entry.path):
                    found.append((stat.st_mtime_ns, stat.st_ino, entry.path, group, stat.st_size))
        return [item[1:] for item in sorted(found)]

    def _scan(self) -> None:
        seen = set()
        for inode, path, group, size in self._matching_files():
            seen.add(inode)
            tail = self.files.get(inode)
            if tail is None:
                self._follow(inode, path, group, size, None, at_start=False)
                self._positions_stale = True  # record a new file at once: it may be rotated away soon
                continue
            if tail.path != path:
                log.info("source %s: %s was renamed to %s; following it on", self.name, tail.path, path)
                tail.path, tail.group = path, group
            tail.visible = True
            self._check_content(tail)
        for inode, tail in self.files.items():
            if inode not in seen:
                tail.visible = False

    def _follow(self, inode: int, path: str, group: str, size: int, saved: dict | None, at_start: bool) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        except OSError as error:  # e.g. no permission: say so once per file, keep following the others
            if inode not in self._unreadable:
                self._unreadable.add(inode)
                self.counters.event_read_fail += 1
                log.error("source %s: cannot open %s: %s", self.name, path, error)
            return
        if os.fstat(fd).st_ino != inode:  # replaced between listing and opening: next scan
            os.close(fd)
            return
        head = os.pread(fd, HEAD_BYTES, 0)
        tail = TailFile(inode, path, group, 0, fd, size=size,
                        assembler=None if self.assembler is None else self.assembler.fresh())
        tail.head_length, tail.head_crc = len(head), zlib.crc32(head)
        if saved is not None and self._same_file(saved, path, head):
            tail.resume(Progress.of(saved, size))  # shorter than the position: truncated, as in Flume
        elif saved is not None:
            self._leave_behind(saved)
        elif (left := self._copy_of(head)) is not None:
            tail.resume(Progress.of(left).clipped(size))
            log.info("source %s: %s begins as %s did before it was truncated: it is its copy; reading it "
                     "from offset %d", self.name, path, left.get("file"), tail.pos)
        elif (original := self._original_of(tail, head)) is not None:
            tail.twin, tail.twin_since = original, time.monotonic()
            tail.resume(original.progress.clipped(size))
            log.info("source %s: %s looks like a copy of %s; reading it from offset %d once the original "
                     "is truncated", self.name, path, original.path, tail.pos)
        elif at_start and saved is None and self.config.skip_to_end:
            tail.resume(Progress(size, size))
        self.files[inode] = tail

    def _finish_rotated_while_down(self, entry: dict) -> None:
        """A followed file renamed to a name no pattern matches while the agent was down (a crash
        during rotation): find its inode next to where it was and read it to its end."""
        directory = os.path.dirname(entry.get("realPath") or entry.get("file") or "")
        group = entry.get("group")
        if not directory or group not in self.patterns or "headLength" not in entry:
            return
        with contextlib.suppress(FileNotFoundError):
            for candidate in os.scandir(directory):
                if candidate.inode() == int(entry["inode"]) and candidate.is_file(follow_symlinks=False):
                    self._follow(candidate.inode(), candidate.path, group, candidate.stat().st_size, entry,
                                 at_start=False)
                    if candidate.inode() in self.files:
                        self.files[candidate.inode()].visible = False
                        log.info("source %s: %s (inode %d) is no longer matched after a restart; "
                                 "reading it to its end", self.name, candidate.path, candidate.inode())
                    return
        self._leave_behind(entry)

    @staticmethod
    def _same_file(saved: dict, path: str, head: bytes) -> bool:
        """A saved position applies to the same inode with the same first bytes (any name), or,
        for a Flume position file without fingerprints, to the same inode and path."""
        if "headLength" not in saved:
            return saved.get("file") == path
        length = int(saved["headLength"])
        return len(head) >= length and zlib.crc32(head[:length]) == int(saved["headCrc"])

    def _leave_behind(self, entry: dict) -> None:
        """Remember where a truncated (or, while the agent was down, vanished) file had been read to,
        with its old fingerprint: its copy may appear in a later listing than its truncation."""
        if int(entry.get("headLength", 0)) >= MIN_COPY_HEAD:
            self._left_behind.append({**entry, "since": time.monotonic()})

    def _copy_of(self, head: bytes) -> dict | None:
        """The left-behind position of a file this new file is a copy of (its first bytes are that
        file's before its truncation), taken out of the list; positions expire after TRUNCATE_WAIT."""
        now = time.monotonic()
        self._left_behind = [e for e in self._left_behind if now - e["since"] < TRUNCATE_WAIT]
        for entry in self._left_behind:
            length = int(entry["headLength"])
            if len(head) >= length and zlib.crc32(head[:length]) == int(entry["headCrc"]):
                self._left_behind.remove(entry)
                return entry
        return None

    def _original_of(self, copy: TailFile, head: bytes) -> TailFile | None:
        if len(head) < MIN_COPY_HEAD:
            return None
        return next((t for t in self.files.values() if t.inode != copy.inode and t.head_length >= MIN_COPY_HEAD
                     and t.twin is None and t.head_matches(head)), None)

    def _check_content(self, tail: TailFile) -> None:
        """Notice truncation or rewritten content; complete the fingerprint of young files."""
        size = os.fstat(tail.fd).st_size
        rewritten = size != tail.size and not tail.head_matches(os.pread(tail.fd, tail.head_length, 0))
        if size < max(tail.pos, tail.read_to) or rewritten:
            log.info("source %s: %s was truncated or rewritten; reading it from the start", self.name, tail.path)
            if not self._release_copies(tail):  # its copy may not be listed yet
                self._leave_behind({"headLength": tail.head_length, "headCrc": tail.head_crc, "file": tail.path,
                                    **tail.progress.entry()})
            tail.resume(Progress(0, 0))
            tail.head_length = 0
        if tail.head_length < HEAD_BYTES and size > tail.head_length:
            head = os.pread(tail.fd, HEAD_BYTES, 0)
            tail.head_length, tail.head_crc = len(head), zlib.crc32(head)
        tail.size = size

    # -- reading ------------------------------------------------------------------------------

    def _read_batch(self, tail: TailFile) -> tuple[list[Event], Progress]:
        """Up to batchSize events from where the file was read to: (events, progress after them)."""
        if tail.twin is not None:
            if self._twin_still_supplies(tail):
                return [], tail.progress
            tail.twin = None
        size = os.fstat(tail.fd).st_size
        if size > tail.size:
            tail.size, tail.last_growth = size, time.monotonic()
        if tail.assembler is not None:
            return self._read_records(tail, size)
        if size <= tail.pos:
            return [], tail.progress
        data = self._read_lines_from(tail.fd, tail.pos, size)
        events, end = self._split(tail, data)
        if end == tail.pos + len(data) or not self._idle(tail) or len(events) >= self.config.batch_size:
            return events, Progress(end, end)
        rest = data[end - tail.pos:]  # a last line without newline, idle long enough: send it
        events.append(self._event(tail, rest, end))
        return events, Progress(end + len(rest), end + len(rest))

    def _idle(self, tail: TailFile) -> bool:
        return time.monotonic() - tail.last_growth >= self.config.idle_timeout / 1000

    def _read_records(self, tail: TailFile, size: int) -> tuple[list[Event], Progress]:
        """Lines from tail.read_pos through the file's assembler, until batchSize records are whole;
        unfinished records are sent when they waited long enough, or all of them once the file is idle."""
        assembler, now, limit = tail.assembler, time.monotonic(), self.config.batch_size
        assert assembler is not None, "only a file with an assembler has records"
        records: list[Record] = []
        pos = tail.read_pos
        if size > pos:
            data = self._read_lines_from(tail.fd, pos, size)
            start = assembler.feed_lines(data, pos, limit, now, records)
            if len(records) < limit and start < len(data) and pos + len(data) == size and self._idle(tail):
                assembler.feed(pos + start, size, data[start:], now, records)  # a last line without newline
                start = len(data)
            pos += start
        if len(records) < limit and assembler.holds_anything:
            assembler.flush(now, records, everything=pos >= size and self._idle(tail))
        tail.read_pos = pos
        pending = assembler.pending_starts()
        return self._record_events(tail, records), Progress(min(pending.values(), default=pos), pos, pending)

    def _release_copies(self, original: TailFile) -> bool:
        """The original was truncated: its copies go on from where it had read. Were there any?"""
        copies = [copy for copy in self.files.values() if copy.twin is original]
        for copy in copies:
            copy.twin = None
            copy.resume(original.progress.clipped(os.fstat(copy.fd).st_size))
            log.info("source %s: %s was truncated; reading its copy %s from offset %d",
                     self.name, original.path, copy.path, copy.pos)
        return bool(copies)

    def _twin_still_supplies(self, copy: TailFile) -> bool:
        """While the original is intact, it supplies the copied lines; the copy just keeps pace.
        An original that went away or stayed untruncated was never copied: read the file from 0."""
        original = copy.twin
        assert original is not None, "asked of a copy only"
        if (original.inode in self.files and original.visible
                and time.monotonic() - copy.twin_since < TRUNCATE_WAIT):
            copy.resume(original.progress.clipped(os.fstat(copy.fd).st_size))
            return True
        log.info("source %s: %s was not truncated after %s appeared, so that is no copy of it; reading "
                 "%s from its start", self.name, original.path, copy.path, copy.path)
        copy.resume(Progress(0, 0))
        return False

    def _read_lines_from(self, fd: int, pos: int, size: int) -> bytes:
        data = os.pread(fd, min(READ_CHUNK, size - pos), pos)
        while b"\n" not in data and pos + len(data) < size:  # a line longer than one chunk
            data += os.pread(fd, READ_CHUNK, pos + len(data))
        return data

    def _split(self, tail: TailFile, data: bytes) -> tuple[list[Event], int]:
        events: list[Event] = []
        start = 0
        limit = self.config.batch_size
        while len(events) < limit:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            line_end = newline - 1 if newline > start and data[newline - 1] == 13 else newline
            events.append(self._event(tail, data[start:line_end], tail.pos + start))
            start = newline + 1
        return events, tail.pos + start

    def _record_events(self, tail: TailFile, records: list[Record]) -> list[Event]:
        """Events of joined records, with stream and timestamp (or the parse error) as headers; what
        was malformed or cut is tallied in tail.tally, counted once the batch is committed."""
        events = []
        malformed = cut = 0
        offset_header = self.event_headers[0]
        base = self._file_headers(tail)
        for body, start, stream, time_ms, error, was_cut in records:
            headers = base.copy()
            if error is not None:
                headers[PARSE_ERROR_HEADER] = error
                malformed += 1
            else:
                if stream:
                    headers["stream"] = stream
                if time_ms is not None:
                    headers["timestamp"] = str(time_ms)
            if offset_header:
                headers[offset_header] = str(start)
            cut += was_cut
            events.append(Event(body, headers))
        tail.tally = (malformed, cut)
        return events

    def _event(self, tail: TailFile, body: bytes, offset: int) -> Event:
        return Event(body, self._headers(tail, offset))

    def _headers(self, tail: TailFile, offset: int) -> dict[str, str]:
        headers = self._file_headers(tail).copy()
        if self.event_headers[0]:
            headers[self.event_headers[0]] = str(offset)
        return headers

    def _file_headers(self, tail: TailFile) -> dict[str, str]:
        """The headers every event of the file gets: built once per file (and again after a rename)."""
        if tail.headers_for != (tail.group, tail.path):
            tail.headers = dict(self.group_headers.get(tail.group, ()))
            if self.event_headers[1]:
                tail.headers[self.event_headers[1]] = tail.path
            tail.headers_for = (tail.group, tail.path)
        return tail.headers

    def _drop_finished(self) -> None:
        """Close rotated-away files once read to their end and idle for idleTimeout."""
        idle_after = self.config.idle_timeout / 1000
        now = time.monotonic()
        for inode, tail in list(self.files.items()):
            if not tail.visible and tail.pos >= os.fstat(tail.fd).st_size and now - tail.last_growth >= idle_after:
                os.close(tail.fd)
                del self.files[inode]
                log.info("source %s: finished rotated file %s (inode %d)", self.name, tail.path, inode)

    # -- positions ----------------------------------------------------------------------------

    def _write_positions(self) -> None:
        """The fingerprints first, then Flume's position file (each replaced atomically). A copy
        still waiting for its original's truncation is left out: after a restart it is recognised again."""
        entries = [{"inode": t.inode, "file": t.path, "headLength": t.head_length, "headCrc": t.head_crc,
                    "group": t.group, "realPath": os.path.realpath(t.path), **t.progress.entry()}
                   for t in self.files.values() if t.twin is None]
        _replace(self.position_file + FINGERPRINTS_SUFFIX, orjson.dumps(entries))
        _replace(self.position_file, orjson.dumps([{key: entry[key] for key in FLUME_KEYS} for entry in entries]))
        self._last_position_write = time.monotonic()
        self._positions_stale = False

    def _load_positions(self) -> dict[int, dict]:
        positions = self._read_entries(self.position_file)
        fingerprinted = self._read_entries(self.position_file + FINGERPRINTS_SUFFIX)
        if fingerprinted and [_flume_part(e) for e in fingerprinted] == [_flume_part(e) for e in positions]:
            positions = fingerprinted
        elif fingerprinted:
            log.info("source %s: %s does not match %s (written by Flume, or the agent died between the two "
                     "writes); using the position file alone", self.name, self.position_file + FINGERPRINTS_SUFFIX,
                     self.position_file)
        return {int(entry["inode"]): entry for entry in positions}

    def _read_entries(self, path: str) -> list[dict]:
        try:
            with open(path, "rb") as file:
                entries = orjson.loads(file.read())
        except FileNotFoundError:
            return []
        except orjson.JSONDecodeError as error:
            log.error("source %s: %s is not valid JSON (%s); ignoring it", self.name, path, error)
            return []
        if not isinstance(entries, list):
            log.error("source %s: %s is not a JSON array; ignoring it", self.name, path)
            return []
        return [entry for entry in entries if isinstance(entry, dict) and {"inode", "pos"} <= entry.keys()]


def _flume_part(entry: dict) -> tuple:
    return tuple(entry.get(key) for key in FLUME_KEYS)


def _replace(path: str, data: bytes) -> None:
    """Write `path` through a temporary file and a rename: a crash leaves the old or the new one."""
    temporary = path + ".tmp"
    with open(temporary, "wb") as file:
        file.write(data)
    os.replace(temporary, path)

