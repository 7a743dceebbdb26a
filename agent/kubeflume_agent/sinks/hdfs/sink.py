"""Flume's `hdfs` sink (HDFSEventSink), writing through WebHDFS.

Events go to "buckets": the directory `hdfs.path` and the name prefix `hdfs.filePrefix`, both with
Flume's escapes expanded per event. Each bucket writes one file at a time, named
`<prefix>.<counter><suffix>` and kept as `<inUsePrefix><name><inUseSuffix>` (`.tmp`) until it is
rolled (rollInterval, rollSize, rollCount, idleTimeout, maxOpenFiles, stop), then renamed.

No event is acknowledged before HDFS has it: a batch is sent as one CREATE or APPEND per file it
touches, and the channel commits only after every one succeeded. When a batch fails half way, the
bytes it left behind are cut off before the batch is written again (TRUNCATE back to the last
committed length; files the batch created are deleted), so a retried batch is not written twice.
Rolled files are renamed only after their whole batch is in, and a failed close is retried
`hdfs.closeTries` times every `hdfs.retryInterval` seconds (a file a failed batch left bytes in,
until they are cut off). In-use files that a crash or a given-up close left behind are renamed to
their final names the first time their bucket is used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from kubeflume_agent.config.keys import (
    boolean,
    comma_list,
    key,
    non_negative_integer,
    number,
    one_of,
    positive_integer,
)
from kubeflume_agent.core.channel import Channel
from kubeflume_agent.core.event import Event
from kubeflume_agent.protocols.serializers import (
    EventSerializer,
    SequenceFileConfig,
    SequenceFileSerializer,
    create_serializer,
    serializer_problems,
)
from kubeflume_agent.protocols.webhdfs import WebHDFSClient
from kubeflume_agent.sinks.base import Sink, SinkKeys
from kubeflume_agent.sinks.hdfs.bucket import CODECS, Bucket, FileLayout, Files, HdfsFile, codec_name, codec_problem
from kubeflume_agent.sinks.hdfs.path import ROUND_UNITS, PathTemplate, parse_time_zone

log = logging.getLogger(__name__)

DEFAULT_HTTP_PORT = 9870  # Hadoop 3's NameNode HTTP port (dfs.namenode.http-address)


@dataclass(frozen=True)
class HdfsSinkConfig(SinkKeys):
    path: str = key("hdfs.path", str, required=True,
                    doc="directory to write to, with Flume's escapes; hdfs://host[:port]/dir, webhdfs://host:port/dir, "
                        "swebhdfs://host:port/dir, or /dir with hdfs.namenodes")
    namenodes: list[str] | None = key("hdfs.namenodes", comma_list, None,
                                      doc="NameNode HTTP base URLs (http://nn1:9870,http://nn2:9870), tried in order "
                                          "with failover; default: from hdfs.path (webhdfs://h:p -> http://h:p, "
                                          "hdfs://h -> http://h:9870)")
    user: str | None = key("hdfs.user", str, None,
                           doc="user.name sent to WebHDFS (simple auth); default: this process's user (flume if it has "
                               "no name)")
    delegation_token: str | None = key("hdfs.delegationToken", str, None,
                                       doc="a delegation token (URL-safe string), sent instead of user.name on secure "
                                           "clusters")
    proxy_user: str | None = key("hdfs.proxyUser", str, None,
                                 doc="user to write as (WebHDFS doas); the authenticated user must be an HDFS proxy "
                                     "user")
    file_prefix: str = key("hdfs.filePrefix", str, "FlumeData", doc="file name prefix, with escapes")
    file_suffix: str = key("hdfs.fileSuffix", str, "",
                           doc="file name suffix (e.g. .avro); replaces the codec's extension")
    in_use_prefix: str = key("hdfs.inUsePrefix", str, "", doc="name prefix of a file while it is being written")
    in_use_suffix: str = key("hdfs.inUseSuffix", str, ".tmp", doc="name suffix of a file while it is being written")
    empty_in_use_suffix: bool = key("hdfs.emptyInUseSuffix", boolean, False, doc="true: no in-use suffix at all")
    roll_interval: float = key("hdfs.rollInterval", number, 30.0,
                               doc="seconds before a file is rolled; 0 = never by time")
    roll_size: int = key("hdfs.rollSize", non_negative_integer, 1024,
                         doc="body bytes that roll a file; 0 = never by size")
    roll_count: int = key("hdfs.rollCount", non_negative_integer, 10, doc="events that roll a file; 0 = never by count")
    idle_timeout: float = key("hdfs.idleTimeout", number, 0.0,
                              doc="seconds without writes before a file is closed; 0 = never")
    batch_size: int = key("hdfs.batchSize", positive_integer, 100, doc="events taken from the channel per batch")
    file_type: str = key("hdfs.fileType", one_of('SequenceFile', 'DataStream', 'CompressedStream'), "sequencefile",
                         doc="SequenceFile (Hadoop SequenceFile, uncompressed), DataStream (serializer output), "
                             "CompressedStream (serializer output compressed with hdfs.codeC)")
    codec: str | None = key("hdfs.codeC", str, None,
                            doc="CompressedStream codec: gzip or bzip2 (also as GzipCodec, BZip2Codec or the Hadoop "
                                "class name)")
    write_format: str = key("hdfs.writeFormat", one_of('Writable', 'Text'), "writable",
                            doc="SequenceFile value class: Writable (BytesWritable) or Text")
    max_open_files: int = key("hdfs.maxOpenFiles", positive_integer, 5000,
                              doc="open files kept; the least recently used is closed")
    call_timeout_ms: int = key("hdfs.callTimeout", positive_integer, 30000,
                               doc="milliseconds an HDFS call may wait to connect or for the server's next bytes; then "
                                   "the batch rolls back")
    close_tries: int = key("hdfs.closeTries", non_negative_integer, 0,
                           doc="attempts to close (rename) a file; 0 = until it works. A file that a failed batch left "
                               "bytes in is retried until they are cut off")
    retry_interval: float = key("hdfs.retryInterval", number, 180.0, doc="seconds between attempts to close a file")
    round_down: bool = key("hdfs.round", boolean, False, doc="round the event time down for the escapes")
    round_value: int = key("hdfs.roundValue", positive_integer, 1, doc="round down to a multiple of this many units")
    round_unit: str = key("hdfs.roundUnit", one_of(*ROUND_UNITS), "second", doc="unit of hdfs.roundValue")
    time_zone: str = key("hdfs.timeZone", str, "local", doc="time zone of the escapes (IANA name), or local")
    use_local_timestamp: bool = key("hdfs.useLocalTimeStamp", boolean, False,
                                    doc="use the sink's clock instead of the timestamp header")
    min_block_replicas: int | None = key("hdfs.minBlockReplicas", non_negative_integer, None,
                                         doc="accepted for compatibility; WebHDFS does not report block replicas, so "
                                             "it has no effect")
    threads_pool_size: int = key("hdfs.threadsPoolSize", positive_integer, 10,
                                 doc="accepted for compatibility; calls are async")
    roll_timer_pool_size: int = key("hdfs.rollTimerPoolSize", positive_integer, 1,
                                    doc="accepted for compatibility; calls are async")
    kerberos_principal: str | None = key("hdfs.kerberosPrincipal", str, None,
                                         doc="not supported: use hdfs.delegationToken")
    kerberos_keytab: str | None = key("hdfs.kerberosKeytab", str, None, doc="not supported: use hdfs.delegationToken")
    serializer: str = key("serializer", str, "TEXT",
                          doc="event serializer for DataStream/CompressedStream: text, header_and_text, avro_event or "
                              "a class path")
    serializer_params: dict[str, str] = key("serializer.", str, prefix=True,
                                            doc="serializer settings, e.g. serializer.appendNewline")

    def destination(self) -> str:
        return self.path

    def file_layout(self) -> FileLayout:
        """How files are named: a CompressedStream codec gives the extension unless fileSuffix does."""
        codec = CODECS.get(codec_name(self.codec)) if self.file_type == "compressedstream" and self.codec else None
        suffix = self.file_suffix or (codec.extension if codec else "")
        return FileLayout(suffix, self.in_use_prefix, "" if self.empty_in_use_suffix else self.in_use_suffix, codec)

    def problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.path:
            try:
                split_hdfs_path(self.path, self.namenodes)
            except ValueError as error:
                problems.append(("hdfs.path", str(error)))
        try:
            parse_time_zone(self.time_zone)
        except ValueError as error:
            problems.append(("hdfs.timeZone", str(error)))
        problems += self._codec_problems()
        if self.file_type != "sequencefile":
            problems += serializer_problems(self.serializer, self.serializer_params)
        for name, value in (("hdfs.kerberosPrincipal", self.kerberos_principal),
                            ("hdfs.kerberosKeytab", self.kerberos_keytab)):
            if value:
                problems.append((name, "Kerberos (SPNEGO) is not supported; set hdfs.delegationToken"))
        return problems

    def _codec_problems(self) -> list[tuple[str, str]]:
        file_type, codec = self.file_type, self.codec
        if file_type == "compressedstream":
            if codec is None:
                return [("hdfs.codeC", "is required with hdfs.fileType = CompressedStream (gzip or bzip2)")]
            if codec_name(codec) not in CODECS:
                return [("hdfs.codeC", codec_problem(codec))]
        elif codec is not None:
            return [("hdfs.codeC", f"only used with hdfs.fileType = CompressedStream, not {file_type}; "
                                   "a compressed SequenceFile is not supported")]
        return []


class HdfsSink(Sink[HdfsSinkConfig]):
    def __init__(self, name: str, config: HdfsSinkConfig, channel: Channel) -> None:
        super().__init__(name, config, channel)
        self.files = Files(
            layout=config.file_layout(),
            roll_count=self.config.roll_count,
            roll_size=self.config.roll_size,
            roll_interval=self.config.roll_interval,
            idle_timeout=self.config.idle_timeout,
            counters=self.counters,
            new_serializer=self.new_serializer,
        )
        directory, self.namenodes = split_hdfs_path(self.config.path, self.config.namenodes)
        self.directory = self._template(directory)
        self.prefix = self._template(self.config.file_prefix)
        self.call_timeout = self.config.call_timeout_ms / 1000
        self.buckets: OrderedDict[tuple[str, str], Bucket] = OrderedDict()
        self.closing: list[PendingClose] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task | None = None

    # --- configuration ----------------------------------------------------------------------

    def _template(self, text: str) -> PathTemplate:
        """A path or prefix with Flume's escapes, in this sink's time zone and rounding."""
        config = self.config
        return PathTemplate(text, time_zone=parse_time_zone(config.time_zone),
                            round_unit=config.round_unit if config.round_down else None,
                            round_value=config.round_value, use_local_timestamp=config.use_local_timestamp)

    def new_serializer(self) -> EventSerializer:
        if self.config.file_type == "sequencefile":
            return SequenceFileSerializer(SequenceFileConfig(write_format=self.config.write_format))
        return create_serializer(self.config.serializer, self.config.serializer_params)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.files.client = WebHDFSClient(
            self.namenodes,
            user=self.config.user or process_user(),
            delegation_token=self.config.delegation_token,
            timeout=self.call_timeout,
            proxy_user=self.config.proxy_user,
        )
        self._timer = asyncio.get_running_loop().create_task(self._roll_timer(), name=f"sink {self.name} rolls")
        await self._recover_static_bucket()
        await super().start()

    async def _recover_static_bucket(self) -> None:
        """With an escape-free path, close what a crashed run left right away; other buckets (and
        this one, if HDFS is away now) do it when they are first used."""
        directory, prefix = self.directory.static, self.prefix.static
        if directory is None or prefix is None:
            return
        async with self._lock:
            try:
                await self._bucket((directory, prefix))
            except Exception as error:
                log.warning("sink %s: cannot look for files left in use in %s yet: %s", self.name, directory, error)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        async with self._lock:
            for bucket in list(self.buckets.values()):
                self._retire(bucket)
                await self._forget_abandoned(bucket)
            for pending in self.closing:
                await self._try_close(pending, final_attempt=True)
            self.closing.clear()
        if self.files.client is not None:
            await self.files.client.close()
        await super().stop()

    # --- writing ----------------------------------------------------------------------------

    async def write(self, events: Sequence[Event]) -> None:
        async with self._lock:
            groups = self._group(events)
            touched: list[Bucket] = []
            try:
                for key, group in groups.items():
                    bucket = await self._bucket(key)
                    touched.append(bucket)
                    await bucket.write(group)
            except BaseException:
                for bucket in touched:
                    bucket.abort()
                raise
            for bucket in touched:
                self.closing += [PendingClose(file) for file in bucket.commit()]
            self._evict_over_limit()
            await self._close_due()

    def _group(self, events: Sequence[Event]) -> Mapping[tuple[str, str], Sequence[Event]]:
        """Events by bucket, in order; an escape-free path needs no per-event work."""
        directory, prefix = self.directory.static, self.prefix.static
        if directory is not None and prefix is not None:
            return {(directory, prefix): events}
        now = int(time.time() * 1000)
        groups: dict[tuple[str, str], list[Event]] = {}
        for event in events:
            key = (directory or self.directory.expand(event.headers, now),
                   prefix if prefix is not None else self.prefix.expand(event.headers, now))
            groups.setdefault(key, []).append(event)
        return groups

    async def _bucket(self, key: tuple[str, str]) -> Bucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = Bucket(self.files, *key)
            await bucket.recover_leftovers()
            self.buckets[key] = bucket
        self.buckets.move_to_end(key)
        return bucket

    # --- rolling and closing ----------------------------------------------------------------

    async def _roll_timer(self) -> None:
        """Rolls files by rollInterval and idleTimeout, and retries failed closes."""
        while True:
            await asyncio.sleep(self._tick())
            async with self._lock:
                now = time.monotonic()
                for bucket in list(self.buckets.values()):
                    if bucket.expired(now):
                        self._retire(bucket)
                await self._close_due()
            self._drop_idle_buckets()

    def _tick(self) -> float:
        intervals = [self.config.roll_interval, self.config.idle_timeout, 1.0]
        return max(0.05, min(value for value in intervals if value > 0) / 4)

    def _retire(self, bucket: Bucket) -> None:
        file = bucket.detach()
        if file is not None:
            self.closing.append(PendingClose(file))

    def _evict_over_limit(self) -> None:
        open_buckets = [bucket for bucket in self.buckets.values() if bucket.current is not None]
        for bucket in open_buckets[:max(0, len(open_buckets) - self.config.max_open_files)]:
            self._retire(bucket)

    def _drop_idle_buckets(self) -> None:
        """Forget buckets with nothing open, so time-based paths do not pile up. A bucket whose
        file still waits to be closed stays: meeting it anew would rename that file too early."""
        closing = {pending.file.bucket for pending in self.closing}
        for idle in [name for name, bucket in self.buckets.items() if bucket.idle() and bucket not in closing]:
            del self.buckets[idle]

    async def _forget_abandoned(self, bucket: Bucket) -> None:
        """At stop, delete what failed batches left, so the next start does not take it for data."""
        try:
            await bucket.delete_abandoned()
        except Exception as error:
            log.error("sink %s: could not delete %s left by a failed batch (%s); the next start will "
                      "keep them as data", self.name, ", ".join(bucket.abandoned), error)

    async def _close_due(self) -> None:
        now = time.monotonic()
        due = [pending for pending in self.closing if pending.next_attempt <= now]
        for pending in due:
            if await self._try_close(pending, final_attempt=False):
                self.closing.remove(pending)

    async def _try_close(self, pending: PendingClose, *, final_attempt: bool) -> bool:
        """One attempt to finish and rename a rolled file; True when it needs no more attempts.

        `hdfs.closeTries` never gives up on a file a failed batch left bytes in: renamed as it
        is, it would hold events the channel still has and delivers again."""
        pending.tries += 1
        file = pending.file
        try:
            await file.bucket.close(file)
        except Exception as error:
            self.counters.connections_failed += 1
            tries_allowed = self.config.close_tries
            if final_attempt or (tries_allowed and pending.tries >= tries_allowed and not file.dirty):
                self._log_given_up(file, pending.tries, error)
                return True
            log.warning("sink %s: closing %s failed (%s); retrying in %ss", self.name,
                        file.in_use_path, error, self.config.retry_interval)
            pending.next_attempt = time.monotonic() + self.config.retry_interval
            return False
        self.counters.connections_closed += 1
        return True

    def _log_given_up(self, file: HdfsFile, tries: int, error: Exception) -> None:
        log.error("sink %s: giving up closing %s after %d tries (%s); it keeps its in-use name "
                  "and is renamed when its bucket is next used", self.name, file.in_use_path, tries, error)
        if file.dirty:
            log.error("sink %s: %s may hold events of a batch that was rolled back after %d committed "
                      "bytes; those events can appear twice once it is renamed", self.name,
                      file.in_use_path, file.committed)


def process_user() -> str:
    """The OS user, as Hadoop's client would send; containers may run as a uid without a name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "flume"


def split_hdfs_path(path: str, namenodes: list[str] | None) -> tuple[str, list[str]]:
    """(directory template, NameNode base URLs) from `hdfs.path` and `hdfs.namenodes`."""
    parts = urlsplit(path)
    scheme = parts.scheme.lower()
    if scheme and scheme not in ("hdfs", "webhdfs", "swebhdfs"):
        raise ValueError(f"unsupported scheme {parts.scheme!r}: use hdfs://, webhdfs://, swebhdfs:// or a /path")
    directory = (parts.path if scheme else path).rstrip("/") or "/"
    if not directory.startswith("/"):
        raise ValueError(f"{path!r} is not an absolute path")
    if namenodes:
        return directory, namenodes
    if not parts.hostname:
        raise ValueError(f"{path!r} names no NameNode: use an hdfs:// or webhdfs:// URI, or set hdfs.namenodes")
    web_scheme = "https" if scheme == "swebhdfs" else "http"
    port = parts.port if scheme != "hdfs" and parts.port else DEFAULT_HTTP_PORT
    return directory, [f"{web_scheme}://{parts.hostname}:{port}"]


@dataclass(eq=False)
class PendingClose:
    """A rolled file waiting to be finished and renamed, with its attempts so far."""

    file: HdfsFile
    tries: int = 0
    next_attempt: float = 0.0
