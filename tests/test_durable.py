from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sealdrop import durable


def test_creates_the_file_with_exactly_the_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        durable.create_new_file(tmp_path / "pub", b"public\n", 0o644)
    finally:
        os.umask(old)

    assert (tmp_path / "pub").read_bytes() == b"public\n"
    assert stat.S_IMODE((tmp_path / "pub").stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["pub"]


def test_never_replaces_an_existing_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "salt").write_bytes(b"first")

    with pytest.raises(FileExistsError):
        durable.create_new_file(tmp_path / "salt", b"second")

    assert (tmp_path / "salt").read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["salt"]


def test_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "key").symlink_to(target)

    with pytest.raises(FileExistsError):
        durable.create_new_file(tmp_path / "key", b"secret")

    assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == ["key"]


def test_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(fd: int, data: bytes | bytearray | memoryview) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable, "write_all", full_disk)

    with pytest.raises(OSError, match="No space"):
        durable.create_new_file(tmp_path / "reply", b"data")

    assert os.listdir(tmp_path) == []


def test_write_all_survives_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def one_byte_at_a_time(fd: int, data: bytes | memoryview) -> int:
        return real_write(fd, bytes(data[:1]))

    monkeypatch.setattr(os, "write", one_byte_at_a_time)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        durable.write_all(fd, b"hello")
    finally:
        os.close(fd)

    assert (tmp_path / "f").read_bytes() == b"hello"
