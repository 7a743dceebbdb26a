"""Unpacking archives the way a NodeManager localizes an ARCHIVE resource.

The format is chosen by the source file's name, case-insensitively (Hadoop's FSDownload): `.jar`
and `.zip` are zip files, `.tar`, `.tar.gz` and `.tgz` are tar files. Anything else cannot be
unpacked and is placed as it is. Extraction refuses members that would land outside the target
directory (absolute paths, `..`, links pointing out).
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

ZIP_SUFFIXES = (".jar", ".zip")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
FORMATS = ("zip", "jar", "tar", "tar.gz", "tgz")


class ArchiveError(Exception):
    """An archive that is corrupt or tries to write outside its directory."""


def archive_format(file_name: str) -> str | None:
    """The format YARN would unpack `file_name` as, or None when it would not unpack it."""
    lowered = file_name.lower()
    return next((fmt for fmt in sorted(FORMATS, key=len, reverse=True) if lowered.endswith("." + fmt)), None)


def unpack(source: Path, file_name: str, target: Path) -> bool:
    """Unpack `source` (named `file_name` on its file system) into the directory `target`.

    Returns False when the name has no archive extension: the file is then copied into
    `target` unchanged, as the NodeManager does ("Cannot unpack").
    """
    target.mkdir(parents=True, exist_ok=True)
    lowered = file_name.lower()
    try:
        if lowered.endswith(ZIP_SUFFIXES):
            _unzip(source, target)
        elif lowered.endswith(TAR_SUFFIXES):
            with tarfile.open(source) as archive:
                archive.extractall(target, filter="data")
        else:
            shutil.copyfile(source, target / file_name)
            return False
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise ArchiveError(f"cannot unpack {file_name}: {error}") from error
    return True


def _unzip(source: Path, target: Path) -> None:
    root = target.resolve()
    with zipfile.ZipFile(source) as archive:
        for member in archive.infolist():
            destination = (root / member.filename).resolve()
            if not destination.is_relative_to(root):
                raise ArchiveError(f"{member.filename}: outside the archive's directory")
        archive.extractall(root)
