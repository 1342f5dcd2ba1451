import hashlib
import os
import stat

import pytest

from mlcourse.integrity import (
    ChecksumError,
    atomic_write_bytes,
    atomic_write_text,
    format_sums,
    parse_sums,
    sha256_file,
    verify_sums,
    write_sums,
)


def test_atomic_write_never_overwrites_by_default(tmp_path):
    target = atomic_write_text(tmp_path / "a" / "b.txt", "first")
    assert target.read_text() == "first"
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        atomic_write_text(target, "second")
    assert target.read_text() == "first"
    atomic_write_text(target, "second", overwrite=True)
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["b.txt"]  # no temp files left


def test_atomic_write_uses_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "x.bin", b"\x00")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert list(tmp_path.iterdir()) == []


def test_sha256_matches_hashlib(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 7)
    (tmp_path / "big").write_bytes(data)
    assert sha256_file(tmp_path / "big") == hashlib.sha256(data).hexdigest()


def test_sums_round_trip_and_detect_corruption(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    sums = write_sums(tmp_path, ["a.txt", "b.txt"])
    assert parse_sums(format_sums(sums)) == sums
    assert verify_sums(tmp_path) == sums
    (tmp_path / "b.txt").write_text("BETA")
    with pytest.raises(ChecksumError, match=r"checksum mismatch for .*b.txt"):
        verify_sums(tmp_path)
    (tmp_path / "a.txt").unlink()
    with pytest.raises(ChecksumError, match="listed in SHA256SUMS but missing"):
        verify_sums(tmp_path, ["a.txt"])
    with pytest.raises(ChecksumError, match="'c.txt' is not listed"):
        verify_sums(tmp_path, ["c.txt"])


def test_malformed_or_missing_manifest(tmp_path):
    with pytest.raises(ChecksumError, match="no SHA256SUMS"):
        verify_sums(tmp_path)
    (tmp_path / "SHA256SUMS").write_text("nonsense line\n")
    with pytest.raises(ChecksumError, match="line 1 is malformed"):
        verify_sums(tmp_path)


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/passwd", "sub/../../x", "."])
def test_sums_cannot_point_outside_their_folder(tmp_path, name):
    folder = tmp_path / "data"
    folder.mkdir()
    (tmp_path / "outside.txt").write_text("secret")
    (folder / "SHA256SUMS").write_text(f"{'0' * 64}  {name}\n")
    with pytest.raises(ChecksumError, match="must name a file inside the folder"):
        verify_sums(folder)
