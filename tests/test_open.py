from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from nacl import bindings
from nacl.public import PrivateKey, PublicKey

from sealdrop import cli, crypto, durable, keys, records
from sealdrop.reviewer.progress import Progress
from sealdrop.storage.spool import Spool

DAY = "2026-11-29"
RECEIPT = "1234-5678-9012-3456"
PASSPHRASE = "correct horse battery staple"
FIRST = "0" * 32 + ".sealed"
GOOD = "3fa2c1d0" + "f" * 24 + ".sealed"
LAST = "f" * 32 + ".sealed"

Attachment = tuple[str, str, bytes]


def seal(
    path: Path,
    recipient: PublicKey,
    message: str = "",
    attachments: Sequence[Attachment] = (),
    optional: Sequence[tuple[int, bytes]] = (),
) -> Path:
    sealer = crypto.PayloadSealer(recipient)
    with open(path, "wb") as out:
        out.write(sealer.header)
        writer = records.PayloadWriter(lambda data: out.write(sealer.update(data)), DAY, RECEIPT)
        if message:
            writer.message(message)
        for record_type, body in optional:
            writer._record(record_type, body)
        for name, media_type, data in attachments:
            writer.begin_attachment(name, media_type)
            writer.attachment_data(data)
            writer.end_attachment()
        writer.close()
        out.write(sealer.finalize())
    return path


@pytest.fixture
def key_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, PrivateKey]:
    directory = tmp_path / "keys"
    directory.mkdir()
    _, secret_path = keys.write_key_pair(directory, PASSPHRASE, keys.KdfCost.MIN)
    monkeypatch.setenv("SEALDROP_PASSPHRASE", PASSPHRASE)
    return secret_path, keys.load_secret_key(secret_path, PASSPHRASE)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    directory = tmp_path / "spool"
    directory.mkdir()
    return directory


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def run(key_pair: tuple[Path, PrivateKey], spool: Path, out: Path) -> Callable[..., int]:
    def run_open(*extra: str, key: Path | None = None) -> int:
        argv = ["open", str(spool), "--key", str(key or key_pair[0]), "--out", str(out)]
        return cli.main([*argv, *extra])

    return run_open


@pytest.fixture
def public(key_pair: tuple[Path, PrivateKey]) -> PublicKey:
    return key_pair[1].public_key


def visible(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


def test_opens_a_good_submission_exactly(
    run: Callable[..., int], spool: Path, out: Path, public: PublicKey
) -> None:
    photo = bytes(range(256)) * 300  # 76800 bytes: more than one chunk
    seal(
        spool / GOOD,
        public,
        message="Logging trucks at night, km 42.\nФото прилагаю.",
        attachments=[("photo.jpg", "image/jpeg", photo), ("empty.txt", "text/plain", b"")],
        optional=[(0x82, b"future")],  # a type no reader knows (0x81 is LANGUAGE)
    )

    assert run() == 0

    folder = out / f"{DAY}_3fa2c1d0"
    assert visible(out) == [folder.name]
    message = (folder / "message.txt").read_text("utf-8")
    assert message == "Logging trucks at night, km 42.\nФото прилагаю."
    assert sorted(p.name for p in (folder / "files").iterdir()) == ["empty.txt", "photo.jpg"]
    assert (folder / "files" / "photo.jpg").read_bytes() == photo
    assert (folder / "files" / "empty.txt").read_bytes() == b""
    manifest = json.loads((folder / "manifest.json").read_text("ascii"))
    assert manifest["receipt"] == RECEIPT
    assert manifest["day"] == DAY
    assert manifest["spool_file"] == GOOD
    assert manifest["message_bytes"] == len(message.encode("utf-8"))
    assert manifest["attachments"] == [
        {
            "index": 0,
            "original_name": "photo.jpg",
            "saved_as": "files/photo.jpg",
            "declared_media_type": "image/jpeg",
            "size": len(photo),
            "sha256": hashlib.sha256(photo).hexdigest(),
        },
        {
            "index": 1,
            "original_name": "empty.txt",
            "saved_as": "files/empty.txt",
            "declared_media_type": "text/plain",
            "size": 0,
            "sha256": hashlib.sha256(b"").hexdigest(),
        },
    ]
    assert manifest["skipped_optional_records"] == [{"type": "0x82", "length": 6}]
    sealed = (spool / GOOD).read_bytes()
    file_id = hashlib.sha256(sealed[: crypto.HEADER_BYTES] + len(sealed).to_bytes(8, "big"))
    assert (out / ".opened").read_text() == f"{GOOD}\t{file_id.hexdigest()}\n"
    assert (spool / GOOD).exists()


def test_a_single_spool_file_can_be_given(
    key_pair: tuple[Path, PrivateKey], spool: Path, out: Path, public: PublicKey
) -> None:
    seal(spool / GOOD, public, "just this one")
    seal(spool / LAST, public, "not this one")

    argv = ["open", str(spool / GOOD), "--key", str(key_pair[0]), "--out", str(out)]
    assert cli.main(argv) == 0

    assert visible(out) == [f"{DAY}_3fa2c1d0"]

    # Named on the command line, a file is opened whatever it is called: the reviewer chose it.
    backup = spool / (LAST + "~")
    (spool / LAST).rename(backup)
    argv = ["open", str(backup), "--key", str(key_pair[0]), "--out", str(out)]
    assert cli.main(argv) == 0
    assert visible(out) == [f"{DAY}_3fa2c1d0", f"{DAY}_ffffffff"]


def test_output_is_private_to_the_reviewer(
    run: Callable[..., int], spool: Path, out: Path, public: PublicKey
) -> None:
    seal(spool / GOOD, public, "m", [("a.bin", "application/octet-stream", b"a")])
    old_umask = os.umask(0o022)
    try:
        assert run() == 0
    finally:
        os.umask(old_umask)
    folder = out / f"{DAY}_3fa2c1d0"
    for path in [out, folder, folder / "files"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in [folder / "message.txt", folder / "manifest.json", folder / "files" / "a.bin"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((out / ".opened").stat().st_mode) == 0o600


def test_hostile_names_stay_inside_the_folder(
    run: Callable[..., int], spool: Path, out: Path, public: PublicKey
) -> None:
    hostile = [
        "../../etc/passwd",
        "/abs",
        "..",
        ".bashrc",
        "CON.txt",
        "a\x00b",
        "invoice\u202efdp.exe",
        "x" * 300 + ".pdf",
        "dup.txt",
        "DUP.txt",
        "dup.txt",
        "sub\\..\\..\\win.ini",
    ]
    attachments = [(name, "text/plain", f"body {i}".encode()) for i, name in enumerate(hostile)]
    seal(spool / GOOD, public, "names", attachments)

    assert run() == 0

    folder = out / f"{DAY}_3fa2c1d0"
    files = folder / "files"
    written = {p.name: p.read_bytes() for p in files.iterdir()}
    expected = [
        "passwd",
        "abs",
        "attachment-3",
        "bashrc",
        "_CON.txt",
        "ab",
        "invoicefdp.exe",
        "x" * 196 + ".pdf",
        "dup.txt",
        "DUP (2).txt",
        "dup (3).txt",
        "win.ini",
    ]
    assert sorted(written) == sorted(expected)
    for index, name in enumerate(expected):
        assert written[name] == f"body {index}".encode()
    assert sorted(p.name for p in folder.iterdir()) == ["files", "manifest.json", "message.txt"]
    assert sorted(p.name for p in out.iterdir()) == [".lock", ".opened", folder.name]
    raw_manifest = (folder / "manifest.json").read_text("ascii")
    assert "\u202e" not in raw_manifest and "\\u202e" in raw_manifest
    manifest = json.loads(raw_manifest)
    assert [a["original_name"] for a in manifest["attachments"]] == hostile
    assert [a["saved_as"] for a in manifest["attachments"]] == [f"files/{n}" for n in expected]


def _header_byte_changed(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def _malformed_stream(path: Path, recipient: PublicKey) -> None:
    # A writer holding the file key broke a framing rule: a valid one-chunk payload
    # pushed as an ordinary chunk, then an empty final chunk.
    payload = io.BytesIO()
    writer = records.PayloadWriter(payload.write, DAY, RECEIPT)
    writer.begin_attachment("a", "text/plain")
    writer.attachment_data(b"z" * 64_000)
    writer.end_attachment()
    writer.close()
    assert len(payload.getvalue()) == crypto.CHUNK_SIZE
    sealer = crypto.PayloadSealer(recipient)
    tags = (
        bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
        bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL,
    )
    full = sealer._push(payload.getvalue(), tags[0])
    path.write_bytes(sealer.header + full + sealer._push(b"", tags[1]))


def _malformed_payload(path: Path, recipient: PublicKey) -> None:
    sealer = crypto.PayloadSealer(recipient)
    path.write_bytes(sealer.header + sealer.update(b"\x02junk" * 100) + sealer.finalize())


def _corrupt(change: Callable[[bytes], bytes]) -> Callable[[Path, PublicKey], None]:
    def make(path: Path, recipient: PublicKey) -> None:
        seal(path, recipient, "bad", [("a", "text/plain", b"z" * 100_000)])
        path.write_bytes(change(path.read_bytes()))

    return make


def _appended(path: Path, recipient: PublicKey) -> None:
    # A payload padded to exactly one chunk: the final chunk is full, so bytes after it
    # are told apart from a damaged final chunk.
    seal(path, recipient, "bad", [("a", "text/plain", b"z" * 64_000)])
    assert path.stat().st_size == crypto.sealed_size(crypto.CHUNK_SIZE)
    with open(path, "ab") as tail:
        tail.write(b"extra")


def _other_key(path: Path, recipient: PublicKey) -> None:
    seal(path, PrivateKey.generate().public_key, "for someone else")


def _not_ours(path: Path, recipient: PublicKey) -> None:
    path.write_bytes(b"%PDF-1.7\n" + b"\x00" * 200)


CHUNK_END = crypto.HEADER_BYTES + crypto.ENCRYPTED_CHUNK_BYTES
BAD_FILES = [
    ("not a sealdrop file", _not_ours, "not a spool file"),
    ("unsupported version", _corrupt(lambda d: d[:8] + b"\x09" + d[9:]), "upgrade sealdrop"),
    ("wrong key", _other_key, "not sealed to this key"),
    ("truncated", _corrupt(lambda d: d[:CHUNK_END]), "copy it again from the server"),
    ("tampered", _corrupt(lambda d: _header_byte_changed(d, CHUNK_END - 5)), "damaged or altered"),
    ("trailing data", _appended, "appended"),
    ("malformed stream", _malformed_stream, "keep it for investigation"),
    ("malformed payload", _malformed_payload, "keep it for investigation"),
]


@pytest.mark.parametrize(("cause", "make", "advice"), BAD_FILES, ids=[c for c, _, _ in BAD_FILES])
def test_a_bad_file_is_named_left_in_the_spool_and_the_run_goes_on(
    run: Callable[..., int],
    spool: Path,
    out: Path,
    public: PublicKey,
    capsys: pytest.CaptureFixture[str],
    cause: str,
    make: Callable[[Path, PublicKey], None],
    advice: str,
) -> None:
    make(spool / FIRST, public)
    bad_bytes = (spool / FIRST).read_bytes()
    seal(spool / GOOD, public, "good one", [("ok.txt", "text/plain", b"fine")])

    assert run() == 1

    assert (spool / FIRST).read_bytes() == bad_bytes
    assert visible(out) == [f"{DAY}_3fa2c1d0"]
    assert (out / f"{DAY}_3fa2c1d0" / "files" / "ok.txt").read_bytes() == b"fine"
    sealed = (spool / GOOD).read_bytes()
    file_id = hashlib.sha256(sealed[: crypto.HEADER_BYTES] + len(sealed).to_bytes(8, "big"))
    assert (out / ".opened").read_text() == f"{GOOD}\t{file_id.hexdigest()}\n"
    captured = capsys.readouterr()
    assert f"not opened 1/2: {FIRST} — {cause}: " in captured.err
    assert advice in captured.err and "(left in the spool)" in captured.err
    assert f"    {cause}" in captured.out
    assert not [p for p in out.iterdir() if p.name.startswith(".incoming-")]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every entry's bytes, mode and modification time, and the folder's own."""
    entries = {
        p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns) for p in folder.iterdir()
    }
    entries["."] = (b"", folder.stat().st_mode, folder.stat().st_mtime_ns)
    return entries


def test_a_wrong_key_leaves_the_spool_as_it_was_and_the_right_key_then_opens_it_all(
    run: Callable[..., int],
    spool: Path,
    tmp_path: Path,
    key_pair: tuple[Path, PrivateKey],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One spool, opened by a reviewer whose key it is not for, then by the one it is for."""
    seal(spool / FIRST, key_pair[1].public_key, "first", [("a.txt", "text/plain", b"a")])
    seal(spool / GOOD, key_pair[1].public_key, "second")
    seal(spool / LAST, key_pair[1].public_key, "third", [("c.bin", "x", bytes(70_000))])
    before = snapshot(spool)
    other_dir = tmp_path / "other-keys"
    other_dir.mkdir()
    _, other_key = keys.write_key_pair(other_dir, PASSPHRASE, keys.KdfCost.MIN)
    other_out = tmp_path / "other-out"

    status = cli.main(["open", str(spool), "--key", str(other_key), "--out", str(other_out)])

    assert status == 1
    assert snapshot(spool) == before
    assert visible(other_out) == []
    captured = capsys.readouterr()
    assert captured.err.count("wrong key: it is not sealed to this key") == 3
    assert "not opened, left as is       3" in captured.out
    assert "    wrong key                  3" in captured.out

    assert run() == 0

    assert len(visible(tmp_path / "out")) == 3
    assert snapshot(spool) == before


def test_a_second_run_skips_what_was_opened(
    run: Callable[..., int],
    spool: Path,
    out: Path,
    public: PublicKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seal(spool / GOOD, public, "one")
    assert run() == 0
    seal(spool / LAST, public, "two")
    capsys.readouterr()

    assert run() == 0

    assert visible(out) == [f"{DAY}_3fa2c1d0", f"{DAY}_ffffffff"]
    assert opened_names(out) == [GOOD, LAST]
    summary = capsys.readouterr().out
    assert "opened                       1" in summary
    assert "skipped, already opened      1" in summary


def test_an_existing_folder_is_never_overwritten(
    run: Callable[..., int], spool: Path, out: Path, public: PublicKey
) -> None:
    (out / f"{DAY}_3fa2c1d0").mkdir(parents=True)
    seal(spool / GOOD, public, "new")

    assert run() == 0

    assert list((out / f"{DAY}_3fa2c1d0").iterdir()) == []
    assert (out / f"{DAY}_3fa2c1d0-2" / "message.txt").read_text() == "new"


def test_remove_deletes_only_recorded_spool_files(
    run: Callable[..., int], spool: Path, out: Path, public: PublicKey
) -> None:
    _not_ours(spool / FIRST, public)
    seal(spool / GOOD, public, "one")
    (spool / (LAST + ".part")).write_bytes(b"upload in progress")

    assert run("--remove") == 1

    assert sorted(p.name for p in spool.iterdir()) == [FIRST, LAST + ".part"]
    assert (out / f"{DAY}_3fa2c1d0" / "message.txt").read_text() == "one"
    assert not (out / "quarantine").exists()


def test_remove_on_a_later_run_deletes_files_opened_earlier(
    run: Callable[..., int], spool: Path, out: Path, public: PublicKey
) -> None:
    seal(spool / GOOD, public, "one")
    assert run() == 0
    assert (spool / GOOD).exists()

    assert run("--remove") == 0

    assert not (spool / GOOD).exists()
    assert visible(out) == [f"{DAY}_3fa2c1d0"]


def _fail_on_write(monkeypatch: pytest.MonkeyPatch, after: int, error: BaseException) -> None:
    real = durable.write_all
    calls = 0

    def failing(fd: int, data: bytes | bytearray | memoryview) -> None:
        nonlocal calls
        calls += 1
        if calls > after:
            raise error
        real(fd, data)

    monkeypatch.setattr(durable, "write_all", failing)


def test_a_crash_mid_write_leaves_no_partial_folder(
    run: Callable[..., int],
    spool: Path,
    out: Path,
    public: PublicKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seal(spool / GOOD, public, "msg", [("big.bin", "application/octet-stream", b"q" * 300_000)])
    _fail_on_write(monkeypatch, 3, KeyboardInterrupt())

    assert run() == 130

    assert sorted(p.name for p in out.iterdir()) == [".lock"]
    assert (spool / GOOD).exists()
    monkeypatch.undo()
    monkeypatch.setenv("SEALDROP_PASSPHRASE", PASSPHRASE)
    assert run() == 0
    assert (out / f"{DAY}_3fa2c1d0" / "files" / "big.bin").read_bytes() == b"q" * 300_000


def test_a_full_disk_stops_the_run_and_keeps_nothing(
    run: Callable[..., int],
    spool: Path,
    out: Path,
    public: PublicKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seal(spool / GOOD, public, "msg", [("big.bin", "application/octet-stream", b"q" * 300_000)])
    seal(spool / LAST, public, "next")
    _fail_on_write(monkeypatch, 3, OSError(28, "No space left on device"))

    assert run() == 2

    assert sorted(p.name for p in out.iterdir()) == [".lock"]
    assert (spool / GOOD).exists() and (spool / LAST).exists()
    err = capsys.readouterr().err
    assert "No space left on device" in err and "run again" in err


def test_leftovers_of_an_interrupted_run_are_removed(
    run: Callable[..., int], spool: Path, out: Path, public: PublicKey
) -> None:
    stale = out / ".incoming-abc123"
    (stale / "files").mkdir(parents=True)
    (stale / "files" / "half.bin").write_bytes(b"half")
    seal(spool / GOOD, public, "m")

    assert run() == 0

    assert sorted(p.name for p in out.iterdir()) == [".lock", ".opened", f"{DAY}_3fa2c1d0"]


def test_a_wrong_passphrase_writes_nothing(
    run: Callable[..., int],
    spool: Path,
    out: Path,
    public: PublicKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key_pair: tuple[Path, PrivateKey],
) -> None:
    seal(spool / GOOD, public, "m")
    monkeypatch.setenv("SEALDROP_PASSPHRASE", "not it")

    assert run() == 2

    assert not out.exists()
    assert (spool / GOOD).exists()
    err = capsys.readouterr().err
    assert str(key_pair[0]) in err and "passphrase" in err


def test_the_public_key_is_refused_by_name(
    run: Callable[..., int],
    spool: Path,
    out: Path,
    key_pair: tuple[Path, PrivateKey],
    capsys: pytest.CaptureFixture[str],
) -> None:
    public_file = key_pair[0].parent / keys.PUBLIC_KEY_FILENAME

    assert run(key=public_file) == 2

    assert not out.exists()
    err = capsys.readouterr().err
    assert str(public_file) in err and "secret key" in err


def test_a_second_concurrent_run_is_refused(
    run: Callable[..., int], spool: Path, out: Path, public: PublicKey
) -> None:
    seal(spool / GOOD, public, "m")
    out.mkdir()
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert run() == 2
    finally:
        os.close(fd)
    assert visible(out) == []


def opened_names(out: Path) -> list[str]:
    """The spool file names recorded in `.opened`, decoded as the format there says."""
    lines = (out / ".opened").read_bytes().splitlines()
    return [os.fsdecode(urllib.parse.unquote_to_bytes(line.split(b"\t")[0])) for line in lines]


# The names copy tools give a spool file: browsers and Windows Explorer, macOS Finder,
# old Windows, a script's counter, a reviewer's own label, an upper-case FAT copy, and
# names no file manager makes but a file system allows (newline, escape, not UTF-8).
COPY_TOOL_NAMES = [
    "3fa2c1d0" + "f" * 24 + " (1).sealed",
    "3fa2c1d0" + "f" * 24 + " - Copy.sealed",
    "3fa2c1d0" + "f" * 24 + " - Copy (2).sealed",
    "3fa2c1d0" + "f" * 24 + " copy.sealed",
    "3fa2c1d0" + "f" * 24 + " 2.sealed",
    "Copy of " + "a" * 32 + ".sealed",
    "x-1.sealed",
    "dépôt forêt 森林.sealed",
    "UPPER" + "B" * 27 + ".SEALED",
    ".hidden.sealed",
    "line\nbreak\x1b[2J.sealed",
    os.fsdecode(b"not-utf8-\xff\xfe.sealed"),
]


def test_every_sealed_file_opens_whatever_a_copy_tool_named_it(
    run: Callable[..., int],
    spool: Path,
    out: Path,
    public: PublicKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for number, name in enumerate(COPY_TOOL_NAMES):
        seal(spool / name, public, f"message {number}")

    assert run() == 0

    folders = visible(out)
    assert len(folders) == len(COPY_TOOL_NAMES)
    messages = sorted((out / f / "message.txt").read_text() for f in folders)
    assert messages == sorted(f"message {n}" for n in range(len(COPY_TOOL_NAMES)))
    assert f"{DAY}_3fa2c1d0" in folders and f"{DAY}_aaaaaaaa" in folders
    assert all(set(f) <= set("0123456789-_abcdef") for f in folders)
    spool_names = {
        json.loads((out / f / "manifest.json").read_text())["spool_file"] for f in folders
    }
    assert spool_names == set(COPY_TOOL_NAMES)
    assert sorted(opened_names(out)) == sorted(COPY_TOOL_NAMES)
    captured = capsys.readouterr()
    # A name is printed with its controls escaped: it cannot clear the reviewer's screen.
    assert "\x1b" not in captured.out + captured.err
    assert "from 'line\\nbreak\\x1b[2J.sealed'" in captured.err

    assert run() == 0
    assert len(visible(out)) == len(COPY_TOOL_NAMES)
    assert f"skipped, already opened     {len(COPY_TOOL_NAMES):>2}" in capsys.readouterr().out


def test_a_renamed_copy_of_an_opened_file_is_not_unpacked_twice(
    run: Callable[..., int],
    spool: Path,
    out: Path,
    public: PublicKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seal(spool / GOOD, public, "once")
    assert run() == 0
    copy_name = GOOD.replace(".sealed", " (1).sealed")
    (spool / copy_name).write_bytes((spool / GOOD).read_bytes())
    (spool / "Copy of it.sealed").write_bytes((spool / GOOD).read_bytes())
    capsys.readouterr()

    assert run("--remove") == 0

    assert visible(out) == [f"{DAY}_3fa2c1d0"]
    summary = capsys.readouterr().out
    assert "skipped, copy of one opened" in summary
    assert f"'{copy_name}' is a copy of '{GOOD}', already opened" in summary
    assert sorted(opened_names(out)) == sorted([GOOD, copy_name, "Copy of it.sealed"])
    assert list(spool.iterdir()) == []


def test_a_damaged_copy_of_an_opened_file_is_still_refused(
    run: Callable[..., int],
    spool: Path,
    out: Path,
    public: PublicKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seal(spool / GOOD, public, "once", [("a.bin", "x", bytes(70_000))])
    assert run() == 0
    data = (spool / GOOD).read_bytes()
    damaged = bytearray(data)
    damaged[crypto.HEADER_BYTES + 100] ^= 1  # same header and size, one chunk altered
    (spool / "Copy of it.sealed").write_bytes(bytes(damaged))
    (spool / "cut.sealed").write_bytes(data[:-1])

    capsys.readouterr()

    assert run() == 1

    err = capsys.readouterr().err
    assert "not opened 1/2: Copy of it.sealed — tampered" in err
    assert "not opened 2/2: cut.sealed — " in err
    assert sorted(p.name for p in spool.iterdir()) == sorted(
        [GOOD, "Copy of it.sealed", "cut.sealed"]
    )


def test_what_is_not_opened_is_named_and_fails_the_run(
    run: Callable[..., int],
    spool: Path,
    out: Path,
    public: PublicKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seal(spool / GOOD, public, "m")
    data = (spool / GOOD).read_bytes()
    (spool / (GOOD + "~")).write_bytes(data)  # cp --backup / rsync --backup
    (spool / f".{GOOD}.Xy12Ab").write_bytes(data[:100])  # an interrupted rsync
    (spool / "notes.txt").write_text("which stick is this?")
    (spool / "link.sealed").symlink_to(spool / GOOD)
    (spool / "spool").mkdir()  # `cp -r spool stick/spool` run twice

    assert run() == 1

    assert visible(out) == [f"{DAY}_3fa2c1d0"]
    summary = capsys.readouterr().out
    assert "NOT OPENED, see below        5" in summary
    for name in (GOOD + "~", f".{GOOD}.Xy12Ab", "notes.txt", "link.sealed", "spool"):
        assert f"NOT OPENED '{name}': " in summary
    assert "rename it to end in .sealed" in summary
    assert "symbolic link" in summary


def test_part_files_and_file_manager_litter_are_explained_not_opened(
    run: Callable[..., int],
    spool: Path,
    out: Path,
    public: PublicKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seal(spool / GOOD, public, "m")
    (spool / (LAST + ".part")).write_bytes(b"sealdrop\x02partial")
    # What Finder writes next to each file it copies to a FAT stick: it ends in .sealed,
    # and is told apart by its bytes, not its name.
    (spool / f"._{GOOD}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00" + bytes(4088))
    (spool / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (spool / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (spool / "System Volume Information").mkdir()

    assert run() == 0

    assert visible(out) == [f"{DAY}_3fa2c1d0"]
    summary = capsys.readouterr().out
    assert "skipped, unfinished .part" in summary
    assert "ignored, file manager litter      4" in summary
    assert f"Ignored '._{GOOD}': macOS metadata (AppleDouble), not a spool file." in summary
    assert "NOT OPENED" not in summary


def test_plain_progress_lines_when_not_on_a_terminal(
    run: Callable[..., int],
    spool: Path,
    public: PublicKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seal(spool / GOOD, public, "m", [("a", "x/y", b"1" * 1500), ("b", "x/y", b"2" * 1500)])
    seal(spool / LAST, public, "m", [("a", "x/y", b"1" * 5)])

    assert run() == 0

    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"sealdrop open: opening with reviewer.key: {keys.encode_public_key(public)}",
        f"opened 1/2: {DAY}_3fa2c1d0 (2 files, 2.9 KiB)",
        f"opened 2/2: {DAY}_ffffffff (1 file, 6 B)",
    ]


def test_progress_bar_on_a_terminal() -> None:
    stream = io.StringIO()
    now = [0.0]
    progress = Progress(stream, 2, tty=True, clock=lambda: now[0])
    progress.start_file("x.sealed", 1000)
    now[0] = 1.0
    progress.advance(500)
    progress.advance(600)  # too soon after the last redraw: skipped
    progress.finish_file("opened", "folder (1 file, 1 kB)")
    text = stream.getvalue()
    assert "\r1/2 [" + "#" * 15 + "-" * 15 + "]  50% 500 B / 1000 B" in text
    assert "600 B" not in text
    assert text.endswith("\r\x1b[Kopened 1/2: folder (1 file, 1 kB)\n")


def test_opens_what_the_spool_writer_wrote(
    run: Callable[..., int], spool: Path, out: Path, public: PublicKey
) -> None:
    with Spool(spool, public).begin() as submission:
        submission.add_message("from the web form")
        submission.begin_attachment("scan.pdf", "application/pdf")
        submission.write(b"%PDF" * 50_000)
        submission.end_attachment()
        receipt = submission.commit()

    assert run() == 0

    (folder,) = [out / name for name in visible(out)]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["receipt"] == receipt
    assert (folder / "files" / "scan.pdf").read_bytes() == b"%PDF" * 50_000


GIB = 1024 * 1024 * 1024
PIECE = 1024 * 1024


def _pattern(index: int) -> bytes:
    return hashlib.sha256(index.to_bytes(8, "big")).digest() * (PIECE // 32)


@pytest.mark.slow
def test_a_1_gib_attachment_opens_in_bounded_memory(
    key_pair: tuple[Path, PrivateKey], spool: Path, out: Path
) -> None:
    started = time.monotonic()
    expected = hashlib.sha256()
    sealer = crypto.PayloadSealer(key_pair[1].public_key)
    with open(spool / GOOD, "wb") as sink:
        sink.write(sealer.header)
        writer = records.PayloadWriter(lambda d: sink.write(sealer.update(d)), DAY, RECEIPT)
        writer.message("a big one")
        writer.begin_attachment("forest.mp4", "video/mp4")
        for index in range(GIB // PIECE):
            piece = _pattern(index)
            expected.update(piece)
            writer.attachment_data(piece)
        writer.end_attachment()
        writer.close()
        sink.write(sealer.finalize())
    sealed_at = time.monotonic()

    # VmHWM is this process's own peak RSS since exec; ru_maxrss on Linux would also
    # count the forking parent (this test process), which holds far more.
    script = (
        "import re, sys\n"
        "from pathlib import Path\n"
        "from sealdrop.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "status_text = Path('/proc/self/status').read_text()\n"
        "print('peak_kib', re.search(r'VmHWM:\\s*(\\d+) kB', status_text).group(1))\n"
        "sys.exit(status)\n"
    )
    argv = ["open", str(spool), "--key", str(key_pair[0]), "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, check=False
    )
    opened_at = time.monotonic()

    assert result.returncode == 0, result.stderr
    peak_kib = int(result.stdout.split("peak_kib")[1])
    written = out / f"{DAY}_3fa2c1d0" / "files" / "forest.mp4"
    actual = hashlib.sha256()
    with open(written, "rb") as stream:
        while block := stream.read(PIECE):
            actual.update(block)
    assert written.stat().st_size == GIB
    assert actual.hexdigest() == expected.hexdigest()
    print(
        f"seal {sealed_at - started:.1f}s, open {opened_at - sealed_at:.1f}s, "
        f"opener peak RSS {peak_kib / 1024:.1f} MiB"
    )
    assert peak_kib < 64 * 1024


def test_a_cut_upload_opens_marked_partial_beside_complete_ones(
    run: Callable[..., int],
    spool: Path,
    out: Path,
    public: PublicKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    video = os.urandom(100_000)
    with Spool(spool, public).begin() as submission:
        submission.add_message("the truck")
        submission.begin_attachment("permit.jpg", "image/jpeg")
        submission.write(b"permit")
        submission.end_attachment()
        submission.begin_attachment("video.mp4", "video/mp4")
        submission.write(video)
        assert submission.commit_partial()
    with Spool(spool, public).begin() as submission:
        submission.add_message("whole")
        submission.commit()

    assert run() == 0

    folders = [out / name for name in visible(out)]
    (partial,) = [f for f in folders if f.name.endswith("_PARTIAL")]
    (whole,) = [f for f in folders if f != partial]
    assert sorted(p.name for p in (partial / "files").iterdir()) == [
        "permit.jpg",
        "video.mp4.partial",
    ]
    assert (partial / "files" / "video.mp4.partial").read_bytes() == video
    assert (partial / "message.txt").read_text() == "the truck"
    manifest = json.loads((partial / "manifest.json").read_text())
    assert manifest["partial"]["cut_in"] == "attachment"
    assert manifest["partial"]["attachment_index"] == 1
    assert manifest["partial"]["bytes_received"] == len(video)
    assert manifest["partial"]["note"].startswith("PARTIAL")
    cut_entry = manifest["attachments"][1]
    assert cut_entry["saved_as"] == "files/video.mp4.partial"
    assert cut_entry["partial"] is True and "partial" not in manifest["attachments"][0]
    assert cut_entry["sha256"] == hashlib.sha256(video).hexdigest()
    assert json.loads((whole / "manifest.json").read_text())["partial"] is None
    printed = capsys.readouterr()
    assert "of which PARTIAL (cut off)      1" in printed.out
    assert "PARTIAL: upload cut off in file 2 (files/video.mp4.partial)" in printed.err


def test_a_cut_message_and_a_cut_follow_up_are_marked_and_filed(
    run: Callable[..., int], spool: Path, out: Path, public: PublicKey
) -> None:
    with Spool(spool, public).begin() as submission:
        submission.add_message("half a sent")
        assert submission.commit_partial(in_message=True)
    reply_key = PrivateKey.generate().public_key
    source = records.SourceIdentity.for_key(records.FOLLOW_UP, bytes(reply_key))
    with Spool(spool, public).begin(source) as submission:
        submission.begin_attachment("scan.pdf", "application/pdf")
        submission.write(b"%PDF-1.4")
        assert submission.commit_partial()

    assert run() == 0

    (message_folder,) = [out / n for n in visible(out) if n.endswith("_PARTIAL")]
    manifest = json.loads((message_folder / "manifest.json").read_text())
    assert manifest["partial"]["cut_in"] == "message"
    assert manifest["partial"]["bytes_received"] == len("half a sent")
    (source_folder,) = [out / n for n in visible(out) if n.startswith("source_")]
    (follow_up,) = [p for p in source_folder.iterdir() if p.is_dir()]
    assert follow_up.name.endswith("_PARTIAL")
    assert (follow_up / "files" / "scan.pdf.partial").read_bytes() == b"%PDF-1.4"
