"""Rebuilding the file channel's queue at start: the checkpoint, then every log record after it.

Without a usable checkpoint (missing or damaged, backup too) every data file is replayed from its
start ("full replay"). That gives the same queue because data files are only ever reclaimed
oldest-first: any take record kept on disk refers to a put that is either kept too or gone.

Record rules (one transaction = its PUTS records then its COMMIT, written contiguously; logs of
earlier versions have a PUT record per event instead):
- a COMMIT applies its transaction: its puts join the queue, its take pointers leave it;
- puts followed by records of another transaction lost their COMMIT to damage in the middle of a
  file: the puts are kept (at-least-once: its takes may be delivered again) and counted;
- puts at the end of a file without a COMMIT were a write cut short by a crash, never
  acknowledged: they are dropped;
- a COMMIT announcing more puts than were readable counts the difference as lost events.
"""

from __future__ import annotations

import logging
import time
from array import array
from dataclasses import dataclass, field

from kubeflume_agent.channels.file import checkpoint as checkpoints
from kubeflume_agent.channels.file.log import FILE_HEADER, ScanStats, pointer, scan
from kubeflume_agent.channels.file.records import (
    COMMIT,
    FIRST_ENTRY,
    PUT,
    PUTS,
    decode_commit,
    entry_pointers,
    puts_count,
)

log = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    pointers: array = field(repr=False)
    next_txid: int
    source: str  # "checkpoint", "backup checkpoint" or "full replay"
    seconds: float = 0.0
    records: int = 0
    lost_puts: int = 0
    commits_unreadable: int = 0
    incomplete_transactions: int = 0
    scan: ScanStats = field(default_factory=ScanStats)

    @property
    def skipped(self) -> int:
        """Damaged records skipped plus events known lost: what the operator should look at."""
        return self.scan.corrupt_records + self.lost_puts + self.commits_unreadable


def load_checkpoint(directories: list[str], log_files: dict[int, str]) -> tuple[checkpoints.Checkpoint | None, str]:
    """The newest usable checkpoint among `directories` (primary first), and which one it was."""
    labels = ("checkpoint", "backup checkpoint")
    for label, directory in zip(labels, directories, strict=False):
        try:
            found = checkpoints.read(directory)
        except checkpoints.MissingCheckpoint as error:
            log.log(logging.WARNING if log_files else logging.DEBUG, "%s unusable: %s", label, error)
            continue
        except checkpoints.BadCheckpoint as error:
            log.warning("%s unusable: %s", label, error)
            continue
        if found.file_id not in log_files and (found.pointers or log_files):
            log.warning("%s in %s refers to data file log-%d, which is gone", label, directory, found.file_id)
            continue
        return found, label
    return None, "full replay"


def replay(directories: list[str], log_files: dict[int, str]) -> ReplayResult:
    started = time.perf_counter()
    found, source = load_checkpoint(directories, log_files)
    if found is None:
        if log_files:
            log.warning("no usable checkpoint: forcing full replay of %d data files", len(log_files))
        live, next_txid, start_file, start_offset = array("q"), 1, min(log_files, default=0), FILE_HEADER.size
    else:
        live, next_txid, start_file, start_offset = found.pointers, found.next_txid, found.file_id, found.offset
    result = ReplayResult(live, next_txid, source)
    taken: set[int] = set()
    for file_id in sorted(log_files):
        if file_id >= start_file:
            offset = start_offset if file_id == start_file else FILE_HEADER.size
            _replay_file(file_id, log_files[file_id], offset, result, taken)
    if taken:
        result.pointers = array("q", [value for value in live if value not in taken])
    result.seconds = time.perf_counter() - started
    return result


def _replay_file(file_id: int, path: str, offset: int, result: ReplayResult, taken: set[int]) -> None:
    live = result.pointers
    pending = array("q")
    pending_txid = -1
    for kind, txid, record_offset, payload in scan(path, offset, result.scan):
        result.records += 1
        result.next_txid = max(result.next_txid, txid + 1)
        if pending and txid != pending_txid:
            result.commits_unreadable += 1
            live.extend(pending)
            pending = array("q")
        if kind == PUTS:
            pending_txid = txid
            pending += entry_pointers(pointer(file_id, record_offset + FIRST_ENTRY), puts_count(payload))
        elif kind == PUT:
            pending_txid = txid
            pending.append(pointer(file_id, record_offset))
        elif kind == COMMIT:
            put_count, takes = decode_commit(payload)
            result.lost_puts += max(0, put_count - len(pending))
            live.extend(pending)
            pending = array("q")
            taken.update(takes)
    if pending:
        result.incomplete_transactions += 1
