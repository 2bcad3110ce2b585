"""`sealdrop open --strip-metadata`: real mat2 on a PNG carrying an author's name."""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from sealdrop.cli import main
from sealdrop.keys import KdfCost, load_public_key, write_key_pair
from sealdrop.reviewer.metadata import (
    Outcome,
    cleaned_path,
    is_cleaned_copy,
    strip_file,
    strip_folder,
)
from sealdrop.storage.spool import Spool

MAT2 = shutil.which("mat2")
needs_mat2 = pytest.mark.skipif(
    MAT2 is None, reason="needs Debian's mat2 (scripts/bootstrap --test installs it)"
)
SECRET_TEXT = b"Jane Informant, Kasese ranger post"
PASSPHRASE = "correct horse battery"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_with_author() -> bytes:
    """A valid 4x4 red PNG whose tEXt chunk names its author, as a camera app might."""
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
        + png_chunk(b"tEXt", b"Author\x00" + SECRET_TEXT)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def opened_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """(spool, secret key, out): one submission with a PNG, an unknown binary, a bad PNG."""
    monkeypatch.setenv("SEALDROP_PASSPHRASE", PASSPHRASE)
    keys = tmp_path / "keys"
    keys.mkdir()
    public, secret = write_key_pair(keys, PASSPHRASE, KdfCost.MIN)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    with Spool(spool_dir, load_public_key(public)).begin() as submission:
        submission.add_message("photos attached")
        for name, data in (
            ("photo.png", png_with_author()),
            ("ledger.bin", b"\x00\x01\x02 binary of no known type"),
            ("broken.png", png_with_author()[:60]),
        ):
            submission.begin_attachment(name, "application/octet-stream")
            submission.write(data)
            submission.end_attachment()
        submission.commit()
    return spool_dir, secret, tmp_path / "out"


def files_dir(out: Path) -> Path:
    [folder] = [p for p in out.iterdir() if p.is_dir() and p.name[0].isdigit()]
    return folder / "files"


@needs_mat2
def test_open_writes_a_cleaned_copy_without_the_authors_name(
    opened_spool: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spool, key, out = opened_spool
    status = main(["open", str(spool), "--key", str(key), "--out", str(out), "--strip-metadata"])
    output = capsys.readouterr().out
    assert status == 0
    files = files_dir(out)
    original, cleaned = files / "photo.png", files / "photo.cleaned.png"
    assert SECRET_TEXT in original.read_bytes()  # kept untouched for the reviewer
    assert cleaned.read_bytes().startswith(b"\x89PNG") and SECRET_TEXT not in cleaned.read_bytes()
    assert b"tEXt" not in cleaned.read_bytes()
    assert stat.S_IMODE(cleaned.stat().st_mode) == 0o600
    assert MAT2 is not None
    shown = subprocess.run([MAT2, "--show", str(cleaned)], capture_output=True, text=True)
    assert "No metadata found" in shown.stdout
    folder = files.parent.name
    assert f"metadata removed: {folder}/files/photo.png -> photo.cleaned.png" in output
    assert f"metadata NOT removed: {folder}/files/ledger.bin: mat2 does not know" in output
    assert f"metadata NOT removed: {folder}/files/broken.png: mat2 could not clean it" in output
    # Nothing half-made is left for what could not be cleaned.
    assert sorted(p.name for p in files.iterdir()) == [
        "broken.png",
        "ledger.bin",
        "photo.cleaned.png",
        "photo.png",
    ]
    assert output.rstrip().splitlines()[-1].strip().startswith("quarantined")


def test_without_mat2_open_says_nothing_was_removed(
    opened_spool: tuple[Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    spool, key, out = opened_spool
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    status = main(["open", str(spool), "--key", str(key), "--out", str(out), "--strip-metadata"])
    output = capsys.readouterr().out
    assert status == 0  # the submission itself was opened
    assert "mat2 is not installed, so NO hidden information was removed" in output
    assert "apt-get install mat2" in output
    assert not [p for p in files_dir(out).iterdir() if is_cleaned_copy(p)]


def test_without_the_option_nothing_is_cleaned(
    opened_spool: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spool, key, out = opened_spool
    assert main(["open", str(spool), "--key", str(key), "--out", str(out)]) == 0
    assert "metadata" not in capsys.readouterr().out
    assert not [p for p in files_dir(out).iterdir() if is_cleaned_copy(p)]


def test_cleaned_names_follow_mat2() -> None:
    assert cleaned_path(Path("/x/report.pdf")) == Path("/x/report.cleaned.pdf")
    assert cleaned_path(Path("/x/a.tar.gz")) == Path("/x/a.tar.cleaned.gz")
    assert cleaned_path(Path("/x/README")) == Path("/x/README.cleaned")
    assert is_cleaned_copy(Path("report.cleaned.pdf"))
    assert not is_cleaned_copy(Path("report.pdf"))


@needs_mat2
def test_a_second_run_keeps_the_cleaned_copies(tmp_path: Path) -> None:
    assert MAT2 is not None
    files = tmp_path / "2025-01-01_abcd" / "files"
    files.mkdir(parents=True)
    (files / "photo.png").write_bytes(png_with_author())
    first = strip_folder(MAT2, files.parent)
    assert [r.outcome for r in first] == [Outcome.CLEANED]
    cleaned = (files / "photo.cleaned.png").read_bytes()
    second = strip_folder(MAT2, files.parent)
    assert [r.outcome for r in second] == [Outcome.ALREADY]
    assert (files / "photo.cleaned.png").read_bytes() == cleaned


def fake_mat2(tmp_path: Path, body: str) -> str:
    script = tmp_path / "mat2"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o700)
    return str(script)


def test_mat2_never_sees_the_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALDROP_PASSPHRASE", PASSPHRASE)
    seen = tmp_path / "env.txt"
    mat2 = fake_mat2(tmp_path, f'env > "{seen}"\necho "[-] not supported"\nexit 255\n')
    target = tmp_path / "photo.png"
    target.write_bytes(png_with_author())
    assert strip_file(mat2, target).outcome is Outcome.UNSUPPORTED
    assert "PATH=" in seen.read_text() and PASSPHRASE not in seen.read_text()


def test_a_stuck_mat2_is_stopped_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "photo.png"
    target.write_bytes(png_with_author())
    mat2 = fake_mat2(tmp_path, f'echo partial > "{cleaned_path(target)}"\nexec sleep 30\n')
    result = strip_file(mat2, target, timeout=0.5)
    assert result.outcome is Outcome.FAILED
    assert not cleaned_path(target).exists()
    assert os.path.exists(target)
