"""A node's log directories written the way the kubelet and a CRI runtime (containerd) write them.

`/var/log/pods/<namespace>_<pod>_<uid>/<container>/0.log` holds CRI lines; the runtime splits a line
longer than 16 KiB into `P` pieces ended by an `F` one. `/var/log/containers/<pod>_<namespace>_
<container>-<container id>.log` is a symlink to it. The kubelet rotates by renaming `0.log` to
`0.log.<YYYYMMDD-hhmmss>` and asking the runtime to reopen, which starts a new `0.log`.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

RUNTIME_PIECE = 16 * 1024  # containerd's bufio size: longer lines become partial pieces


def cri_time(when: datetime.datetime) -> str:
    """Go's RFC3339Nano as containerd writes it (trailing zeros of the fraction trimmed)."""
    fraction = f"{when.microsecond:06d}000".rstrip("0")
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


class ContainerLog:
    def __init__(self, directory: Path, link: Path) -> None:
        self.directory = directory
        self.link = link
        self.path = directory / "0.log"

    def write(self, text: str, stream: str = "stdout", when: datetime.datetime | None = None) -> None:
        """One line as the program wrote it, split into pieces as the runtime does."""
        stamp = cri_time(when or datetime.datetime.now(datetime.UTC))
        data = text.encode()
        pieces = [data[at:at + RUNTIME_PIECE] for at in range(0, len(data), RUNTIME_PIECE)] or [b""]
        lines = [f"{stamp} {stream} {'F' if i == len(pieces) - 1 else 'P'} ".encode() + piece + b"\n"
                 for i, piece in enumerate(pieces)]
        self.write_raw(b"".join(lines))

    def write_piece(self, text: str, *, partial: bool, stream: str = "stdout") -> None:
        stamp = cri_time(datetime.datetime.now(datetime.UTC))
        self.write_raw(f"{stamp} {stream} {'P' if partial else 'F'} {text}\n".encode())

    def write_raw(self, data: bytes) -> None:
        with open(self.path, "ab") as file:
            file.write(data)

    def rotate(self, stamp: str = "20261206-155659") -> Path:
        """The kubelet's rotation: rename, then the runtime reopens a new, empty 0.log."""
        rotated = self.directory / f"0.log.{stamp}"
        os.rename(self.path, rotated)
        self.path.touch()
        return rotated

    def copy_truncate(self, copy_name: str) -> Path:
        copy = self.directory / copy_name
        shutil.copyfile(self.path, copy)
        with open(self.path, "r+b") as file:
            file.truncate(0)
        return copy


class KubeletLogs:
    """The `pods/` and `containers/` directories of one node, under `root`."""

    def __init__(self, root: Path) -> None:
        self.pods = root / "pods"
        self.containers = root / "containers"
        self.containers.mkdir(parents=True, exist_ok=True)

    def container(self, namespace: str, pod: str, uid: str, name: str, container_id: str) -> ContainerLog:
        directory = self.pods / f"{namespace}_{pod}_{uid}" / name
        directory.mkdir(parents=True, exist_ok=True)
        link = self.containers / f"{pod}_{namespace}_{name}-{container_id}.log"
        log = ContainerLog(directory, link)
        log.path.touch()
        link.symlink_to(log.path)
        return log
