"""Archives unpacked as a NodeManager does: by the file name's extension, never outside the target."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from kubeflume_operator.yarn.archives import ArchiveError, archive_format, unpack


@pytest.mark.parametrize(("name", "expected"), [
    ("cache.tar.gz", "tar.gz"), ("DATA.TGZ", "tgz"), ("x.jar", "jar"), ("model.v2.zip", "zip"), ("a.tar", "tar"),
    ("resources", None), ("notes.txt", None),
])
def test_the_format_comes_from_the_name(name, expected):
    assert archive_format(name) == expected


def test_zip_and_tar_gz_are_unpacked(tmp_path):
    zipped = tmp_path / "a.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("dir/one.txt", "1")
    tarred = tmp_path / "b.bin"
    with tarfile.open(tarred, "w:gz") as archive:
        info = tarfile.TarInfo("two.txt")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"2"))
    assert unpack(zipped, "a.zip", tmp_path / "za")
    assert (tmp_path / "za" / "dir" / "one.txt").read_text() == "1"
    assert unpack(tarred, "b.tar.gz", tmp_path / "tb")  # the staged name decides, not the local one
    assert (tmp_path / "tb" / "two.txt").read_text() == "2"


def test_an_unknown_extension_is_placed_as_it_is(tmp_path):
    source = tmp_path / "blob"
    source.write_bytes(b"raw")
    assert not unpack(source, "resources", tmp_path / "out")
    assert (tmp_path / "out" / "resources").read_bytes() == b"raw"


def test_members_escaping_the_directory_are_refused(tmp_path):
    zipped = tmp_path / "evil.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("../escaped.txt", "x")
    with pytest.raises(ArchiveError):
        unpack(zipped, "evil.zip", tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    tarred = tmp_path / "evil.tar"
    with tarfile.open(tarred, "w") as archive:
        info = tarfile.TarInfo("../escaped-tar.txt")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArchiveError):
        unpack(tarred, "evil.tar", tmp_path / "out2")
    assert not (tmp_path / "escaped-tar.txt").exists()


def test_a_corrupt_archive_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ArchiveError, match=r"cannot unpack broken\.zip"):
        unpack(broken, "broken.zip", tmp_path / "out")
