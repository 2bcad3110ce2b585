from __future__ import annotations

import os
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from sealdrop import crypto, keys
from sealdrop.cli import main
from sealdrop.spool_names import POOL_DIR
from sealdrop.storage import Spool
from sealdrop.storage.spool import POOL_SIZE


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    return directory


def row_for(output: str, name: str) -> str:
    rows = [line for line in output.splitlines() if line.startswith(name)]
    assert len(rows) == 1, output
    return rows[0]


def test_lists_submissions_parts_and_foreign_files(
    spool_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = Spool(spool_dir, PrivateKey.generate().public_key)
    for _ in range(2):
        with spool.begin() as submission:
            submission.add_message("hello")
            submission.commit()
    live = spool.begin()
    (spool_dir / "holiday.jpg").write_bytes(b"\xff\xd8\xff\xe0 not ours")
    (spool_dir / "future.sealed").write_bytes(crypto.MAGIC + bytes([99]) + bytes(200))
    (spool_dir / "evil\x1b[2Jname").write_bytes(b"x")

    status = main(["spool", str(spool_dir)])

    out = capsys.readouterr().out
    live.abort()
    assert status == 0
    today = datetime.now(UTC).date().isoformat()
    finished = sorted(n for n in os.listdir(spool_dir) if n.endswith(".sealed") and len(n) > 20)
    size = crypto.sealed_size(16 * 1024, version=crypto.RECIPIENTS_VERSION)
    for name in finished:
        row = row_for(out, name)
        assert row.split()[1:] == ["submission", "1", f"{size / 1024:.1f}", "KiB", today]
    assert "in progress or crashed" in out
    assert row_for(out, "holiday.jpg").split()[1:3] == ["NOT", "OPENED"]
    assert "NOT OPENED 'holiday.jpg': it is not a spool file" in out
    assert "newer sealdrop version" in row_for(out, "future.sealed")
    assert "\x1b" not in out and "evil\\x1b[2Jname" in out
    assert "finished submissions: 2 (sealed to 1 key: 2)" in out
    assert ".part files (upload in progress, or left by a crash): 1" in out
    assert "other files (not finished submissions; look at them): 3" in out


def test_lists_exactly_what_open_would_try_and_names_the_rest_as_open_does(
    spool_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both commands sort the folder by one rule: a backup copy that starts like a spool
    file (`x.sealed~`) is not opened, so it must not be listed as a finished submission
    the operator would then delete with the rest."""
    _, secret_path = keys.write_key_pair(tmp_path, "passphrase", keys.KdfCost.MIN)
    monkeypatch.setenv("SEALDROP_PASSPHRASE", "passphrase")
    spool = Spool(spool_dir, keys.load_secret_key(secret_path, "passphrase").public_key)
    spool.fill_pool(POOL_SIZE)
    with spool.begin() as submission:
        submission.add_message("hello")
        submission.commit()
    [good] = [p for p in spool_dir.iterdir() if p.name.endswith(".sealed")]
    sealed = good.read_bytes()
    (spool_dir / (good.name + "~")).write_bytes(sealed)  # cp --backup
    (spool_dir / (good.name + ".part")).write_bytes(sealed[:100])  # unfinished copy
    (spool_dir / "UPPER.SEALED").write_bytes(sealed)  # a FAT stick's name
    (spool_dir / "UPPER.SEALED.PART").write_bytes(sealed[:100])
    (spool_dir / f"._{good.name}").write_bytes(b"\x00\x05\x16\x07" + bytes(100))
    (spool_dir / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (spool_dir / "link.sealed").symlink_to(good)
    (spool_dir / "copy").mkdir()
    (spool_dir / "notes.txt").write_text("not ours")

    assert main(["spool", str(spool_dir)]) == 0
    listing = capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["open", str(spool_dir), "--key", str(secret_path), "--out", str(out)]) == 1
    opened = capsys.readouterr()

    # What the run tried: every name it recorded as opened (a copy too, as a copy).
    ledger = (out / ".opened").read_bytes().splitlines()
    tried = {urllib.parse.unquote(line.split(b"\t")[0].decode()) for line in ledger}
    submissions = {row.split()[0] for row in listing.splitlines() if " submission " in row}
    assert submissions == tried == {good.name, "UPPER.SEALED"}
    assert "finished submissions: 2 (sealed to 1 key: 2)" in listing
    assert ".part files (upload in progress, or left by a crash): 2" in listing
    assert row_for(listing, good.name + "~").split()[1:3] == ["NOT", "OPENED"]

    def named(text: str) -> list[str]:
        return sorted(
            line for line in text.splitlines() if line.startswith(("NOT OPENED '", "Ignored '"))
        )

    assert named(listing) == named(opened.out)
    assert len([line for line in named(listing) if line.startswith("NOT OPENED")]) == 4
    assert f"Ignored '{POOL_DIR}': " in listing


def test_columns_are_aligned(spool_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (spool_dir / "a").write_bytes(b"x")
    (spool_dir / "a-much-longer-name.part").write_bytes(b"")

    main(["spool", str(spool_dir)])

    lines = capsys.readouterr().out.splitlines()
    table = [line for line in lines[2:] if line][:3]
    assert table[0].startswith("NAME")
    kind_columns = {
        line.index(word)
        for line, word in zip(table, ["KIND", "NOT OPENED", "in progress"], strict=True)
    }
    assert len(kind_columns) == 1


def test_empty_spool(spool_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spool", str(spool_dir)]) == 0
    assert "finished submissions: 0" in capsys.readouterr().out


def test_listing_changes_nothing(spool_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = spool_dir / "left.sealed.part"
    stale.write_bytes(b"crash")
    before = stale.stat()

    main(["spool", str(spool_dir)])

    assert stale.stat().st_mtime_ns == before.st_mtime_ns
    assert os.listdir(spool_dir) == ["left.sealed.part"]


def test_missing_folder_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["spool", str(tmp_path / "absent")])

    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert "does not exist" in captured.err and str(tmp_path / "absent") in captured.err


def test_a_file_instead_of_a_folder_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "one.sealed"
    a_file.write_bytes(b"")

    assert main(["spool", str(a_file)]) == 1
    assert "not a spool folder" in capsys.readouterr().err


def test_shows_how_many_keys_each_file_is_sealed_to_without_any_key(
    spool_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """During a key rotation: files of the old configuration stand out by their count."""
    team = [PrivateKey.generate().public_key for _ in range(3)]
    for recipients in (team[:2], team, team):
        with Spool(spool_dir, recipients).begin() as submission:
            submission.add_message("hello")
            submission.commit()
    damaged = spool_dir / ("d" * 32 + ".sealed")
    damaged.write_bytes(crypto.MAGIC + bytes([crypto.RECIPIENTS_VERSION, 0]) + bytes(300))

    assert main(["spool", str(spool_dir)]) == 0

    out = capsys.readouterr().out
    written = [p.name for p in spool_dir.glob("*.sealed") if p != damaged]
    counts = sorted(row_for(out, name).split()[2] for name in written)
    assert counts == ["2", "3", "3"]
    assert row_for(out, damaged.name).split()[1:3] == ["damaged", "header"]
    assert "finished submissions: 3 (sealed to 2 keys: 1; to 3 keys: 2)" in out


def test_a_cut_submission_lists_exactly_like_a_complete_one(
    spool_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without the key nothing can say an upload was cut, and the listing must not guess.
    spool = Spool(spool_dir, PrivateKey.generate().public_key)
    with spool.begin() as submission:
        submission.add_message("the whole message")
        submission.commit()
    with spool.begin() as submission:
        submission.add_message("half a mess")
        assert submission.commit_partial(in_message=True)

    assert main(["spool", str(spool_dir)]) == 0

    out = capsys.readouterr().out
    rows = [row_for(out, name).split()[1:] for name in sorted(os.listdir(spool_dir))]
    assert len(rows) == 2 and rows[0] == rows[1]
    listing = out.replace(str(spool_dir), "SPOOL").lower()
    assert "partial" not in listing and "cut" not in listing
