from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from sealdrop import crypto, records
from sealdrop.storage import Spool, SpoolUnusable, StorageError, StorageFull
from sealdrop.storage import spool as spool_module

MiB = 1024 * 1024


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "spool"
    directory.mkdir()
    directory.chmod(0o700)
    return directory


@pytest.fixture
def spool(spool_dir: Path, key: PrivateKey) -> Spool:
    return Spool(spool_dir, key.public_key)


def today_midnight() -> int:
    today = datetime.now(UTC).date()
    return int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp())


def read_events(path: Path, key: PrivateKey) -> list[records.Event | records.Receipt]:
    with path.open("rb") as source:
        payload = crypto.open_payload(source, key)
        return list(records.read_payload(payload, payload.version))


def only_file(directory: Path) -> Path:
    names = os.listdir(directory)
    assert len(names) == 1, names
    return directory / names[0]


def test_round_trip_recovers_message_names_types_and_bytes(
    spool: Spool, spool_dir: Path, key: PrivateKey
) -> None:
    photo = os.urandom(200_000)
    with spool.begin() as submission:
        submission.add_message("Logging trucks at night, ")
        submission.add_message("see photos. ünïcødé")
        submission.begin_attachment("IMG 0001.jpg", "image/jpeg")
        for start in range(0, len(photo), 70_000):
            submission.write(memoryview(photo)[start : start + 70_000])
        submission.end_attachment()
        submission.begin_attachment("empty.txt", "text/plain")
        submission.end_attachment()
        receipt = submission.commit()

    events = read_events(only_file(spool_dir), key)

    assert events[0] == records.Day(datetime.now(UTC).date().isoformat())
    assert events[1] == records.Receipt(receipt)
    message = "".join(e.text for e in events if isinstance(e, records.MessageText))
    assert message == "Logging trucks at night, see photos. ünïcødé"
    starts = [e for e in events if isinstance(e, records.AttachmentStart)]
    assert [(s.name, s.media_type) for s in starts] == [
        ("IMG 0001.jpg", "image/jpeg"),
        ("empty.txt", "text/plain"),
    ]
    body = b"".join(e.data for e in events if isinstance(e, records.AttachmentBytes))
    assert body == photo
    assert isinstance(events[-1], records.PayloadEnd)
    assert [a.size for a in events[-1].attachments] == [len(photo), 0]


def test_receipt_is_digits_in_groups_and_differs_each_time(spool: Spool) -> None:
    receipts = set()
    for _ in range(5):
        with spool.begin() as submission:
            receipts.add(submission.receipt)
    assert len(receipts) == 5
    assert all(re.fullmatch(r"\d{4}-\d{4}-\d{4}-\d{4}", r) for r in receipts)


def test_committed_file_is_private_renamed_and_dated_to_midnight(
    spool: Spool, spool_dir: Path
) -> None:
    with spool.begin() as submission:
        submission.add_message("x")
        submission.commit()

    path = only_file(spool_dir)
    info = path.stat()
    assert re.fullmatch(r"[0-9a-f]{32}\.sealed", path.name)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_mtime == info.st_atime == today_midnight()
    assert spool_dir.stat().st_mtime == today_midnight()
    # Padding makes even a one-letter message as big as any short one.
    assert info.st_size == crypto.sealed_size(
        records.MIN_PADDED_PAYLOAD, version=crypto.RECIPIENTS_VERSION
    )


def test_no_plaintext_reaches_the_disk(spool: Spool, spool_dir: Path) -> None:
    marker = b"ELEPHANT-IVORY-CONTAINER-7731"
    with spool.begin() as submission:
        submission.add_message(marker.decode())
        submission.begin_attachment("ivory-route.txt", "text/plain")
        submission.write(marker * 5000)
        submission.end_attachment()
        submission.commit()

    sealed = only_file(spool_dir).read_bytes()
    for secret in (marker, b"ivory-route", b"ELEPHANT"):
        assert secret not in sealed


def test_part_file_is_private_while_writing(spool: Spool, spool_dir: Path) -> None:
    with spool.begin():
        part = only_file(spool_dir)
        assert part.name.endswith(".sealed.part")
        assert stat.S_IMODE(part.stat().st_mode) == 0o600


def test_abort_leaves_nothing_and_is_idempotent(spool: Spool, spool_dir: Path) -> None:
    submission = spool.begin()
    submission.add_message("hello")
    submission.begin_attachment("a", "application/octet-stream")
    submission.write(b"z" * (3 * MiB))

    submission.abort()
    submission.abort()

    assert os.listdir(spool_dir) == []
    with pytest.raises(RuntimeError):
        submission.write(b"more")


def test_abort_after_commit_keeps_the_file(spool: Spool, spool_dir: Path) -> None:
    submission = spool.begin()
    submission.commit()
    submission.abort()
    assert only_file(spool_dir).name.endswith(".sealed")


def test_abort_does_not_raise_when_the_file_is_already_gone(spool: Spool, spool_dir: Path) -> None:
    submission = spool.begin()
    only_file(spool_dir).unlink()
    submission.abort()
    assert os.listdir(spool_dir) == []


def test_exception_inside_with_aborts(spool: Spool, spool_dir: Path) -> None:
    with pytest.raises(ValueError, match="client went away"), spool.begin() as submission:
        submission.add_message("half a message")
        raise ValueError("client went away")
    assert os.listdir(spool_dir) == []


def test_leaving_with_without_commit_aborts(spool: Spool, spool_dir: Path) -> None:
    with spool.begin() as submission:
        submission.add_message("never committed")
    assert os.listdir(spool_dir) == []


def test_stale_parts_are_removed_but_live_ones_and_others_kept(
    spool: Spool, spool_dir: Path
) -> None:
    live = spool.begin()
    live_name = only_file(spool_dir).name
    (spool_dir / "0123.sealed.part").write_bytes(b"crashed upload")
    (spool_dir / "4567.sealed.part").write_bytes(b"")
    (spool_dir / "dangling.part").symlink_to(spool_dir / "nowhere")
    (spool_dir / "keep.sealed").write_bytes(b"finished")

    assert spool.remove_stale_parts() == 3

    assert sorted(os.listdir(spool_dir)) == sorted(["keep.sealed", live_name])
    live.commit()  # the live upload in "another worker" is unharmed
    assert len(os.listdir(spool_dir)) == 2


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701, 0o770])
def test_check_refuses_a_folder_open_to_others(spool_dir: Path, key: PrivateKey, mode: int) -> None:
    spool_dir.chmod(mode)
    with pytest.raises(SpoolUnusable, match=rf"chmod 700 {re.escape(str(spool_dir))}"):
        Spool(spool_dir, key.public_key).check()


def test_check_refuses_a_missing_folder(tmp_path: Path, key: PrivateKey) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(SpoolUnusable, match="does not exist.*install -d -m 700"):
        Spool(missing, key.public_key).check()


def test_check_refuses_a_file(tmp_path: Path, key: PrivateKey) -> None:
    a_file = tmp_path / "spool"
    a_file.write_bytes(b"")
    a_file.chmod(0o600)
    with pytest.raises(SpoolUnusable, match="not a folder"):
        Spool(a_file, key.public_key).check()


def test_check_accepts_a_private_folder(spool: Spool) -> None:
    spool.check()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_check_refuses_a_read_only_folder(spool_dir: Path, key: PrivateKey) -> None:
    spool_dir.chmod(0o500)
    with pytest.raises(SpoolUnusable, match="not writable"):
        Spool(spool_dir, key.public_key).check()


def test_planted_symlink_at_the_part_name_is_never_followed(
    spool: Spool, spool_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "victim"
    target.write_bytes(b"untouched")
    monkeypatch.setattr(spool_module, "random_name", lambda: "fixed")
    (spool_dir / "fixed.sealed.part").symlink_to(target)

    with pytest.raises(StorageError):
        spool.begin()

    assert target.read_bytes() == b"untouched"
    assert os.listdir(spool_dir) == ["fixed.sealed.part"]


def test_planted_dangling_symlink_is_not_created_through(
    spool: Spool, spool_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "would-be-created"
    monkeypatch.setattr(spool_module, "random_name", lambda: "fixed")
    (spool_dir / "fixed.sealed.part").symlink_to(target)

    with pytest.raises(StorageError):
        spool.begin()

    assert not target.exists()


def test_planted_file_at_the_final_name_is_refused(
    spool: Spool, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "random_name", lambda: "fixed")
    (spool_dir / "fixed.sealed").write_bytes(b"planted")

    with pytest.raises(StorageError, match="already exists"):
        spool.begin()

    assert os.listdir(spool_dir) == ["fixed.sealed"]


def test_reserve_refuses_to_begin(spool_dir: Path, key: PrivateKey) -> None:
    spool = Spool(spool_dir, key.public_key, reserve_bytes=2**62)
    with pytest.raises(StorageFull, match="reserve"):
        spool.begin()
    assert os.listdir(spool_dir) == []


def test_reserve_is_checked_while_writing(
    spool_dir: Path, key: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(spool_dir, key.public_key, reserve_bytes=100 * MiB)
    free = [200 * MiB]

    def shrinking_free_bytes() -> int:
        free[0] -= 16 * MiB
        return free[0]

    monkeypatch.setattr(spool, "free_bytes", shrinking_free_bytes)
    submission = spool.begin()
    submission.begin_attachment("big", "application/octet-stream")
    piece = bytes(MiB)
    with pytest.raises(StorageFull, match="reserve"):
        for _ in range(200):
            submission.write(piece)

    assert os.listdir(spool_dir) == []
    # It gave up long before 200 MiB: checks come every RESERVE_CHECK_INTERVAL.
    assert submission.bytes_written < 100 * MiB
    submission.abort()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_while_writing_raises_storage_full_and_leaves_nothing(
    spool: Spool, spool_dir: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    submission = spool.begin()
    submission.begin_attachment("a", "application/octet-stream")

    def full(fd: int, data: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageFull, match="full"):
        submission.write(bytes(MiB))
    monkeypatch.undo()

    assert os.listdir(spool_dir) == []
    submission.abort()
    with pytest.raises(RuntimeError):
        submission.commit()


def test_disk_full_at_fsync_raises_storage_full_and_leaves_nothing(
    spool: Spool, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageFull), spool.begin() as submission:
        submission.add_message("hello")
        submission.commit()
    assert os.listdir(spool_dir) == []


def test_short_writes_are_completed(
    spool: Spool, spool_dir: Path, key: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def dribble(fd: int, data: bytes | memoryview) -> int:
        return real_write(fd, bytes(data)[:1000])

    monkeypatch.setattr(os, "write", dribble)
    with spool.begin() as submission:
        submission.begin_attachment("a", "application/octet-stream")
        submission.write(b"q" * 300_000)
        submission.end_attachment()
        submission.commit()
    monkeypatch.undo()

    events = read_events(only_file(spool_dir), key)
    assert b"".join(e.data for e in events if isinstance(e, records.AttachmentBytes)) == (
        b"q" * 300_000
    )


def test_other_io_errors_raise_storage_error_not_full(
    spool: Spool, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    submission = spool.begin()

    def broken(fd: int, data: object) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "write", broken)
    with pytest.raises(StorageError, match="Input/output error") as raised:
        submission.add_message("x" * 100_000)
    monkeypatch.undo()
    assert not isinstance(raised.value, StorageFull)
    assert os.listdir(spool_dir) == []


def test_failed_directory_fsync_takes_the_file_back(
    spool: Spool, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def fail_on_directories(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fail_on_directories)
    with pytest.raises(StorageError), spool.begin() as submission:
        submission.commit()
    assert os.listdir(spool_dir) == []


def test_memory_stays_bounded_for_a_large_upload(spool: Spool, spool_dir: Path) -> None:
    piece = os.urandom(MiB)
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with spool.begin() as submission:
            submission.begin_attachment("video.mp4", "video/mp4")
            for _ in range(200):
                submission.write(piece)
            submission.end_attachment()
            submission.commit()
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB in {elapsed:.1f} s"
    assert only_file(spool_dir).stat().st_size > 200 * MiB


def test_foreign_header_check_on_the_written_file(spool: Spool, spool_dir: Path) -> None:
    with spool.begin() as submission:
        submission.commit()
    with only_file(spool_dir).open("rb") as source:
        assert crypto.read_prefix(source) == crypto.MAGIC + bytes([crypto.RECIPIENTS_VERSION])
        source.seek(0)
        assert crypto.read_recipient_count(source) == 1


def test_commit_fsyncs_the_file_before_rename_and_the_folder_after(
    spool: Spool, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync, real_rename = os.fsync, os.rename
    calls: list[str] = []

    def recording_fsync(fd: int) -> None:
        calls.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def recording_rename(source: Path, target: Path) -> None:
        calls.append(f"rename {Path(source).name} -> {Path(target).name}")
        real_rename(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "rename", recording_rename)
    with spool.begin() as submission:
        submission.commit()
    monkeypatch.undo()

    name = only_file(spool_dir).name
    assert calls == ["fsync file", f"rename {name}.part -> {name}", "fsync folder"]


# --- a submission the client cut off ---------------------------------------------------------


def test_a_cut_submission_keeps_what_arrived_like_a_complete_one(
    spool: Spool, spool_dir: Path, key: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = os.urandom(150_000)
    real_fsync, real_rename = os.fsync, os.rename
    calls: list[str] = []

    def recording_fsync(fd: int) -> None:
        calls.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def recording_rename(source: Path, target: Path) -> None:
        calls.append("rename")
        real_rename(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "rename", recording_rename)
    with spool.begin() as submission:
        submission.add_message("the truck, the port")
        submission.begin_attachment("video.mp4", "video/mp4")
        submission.write(video)
        assert submission.commit_partial()
    monkeypatch.undo()

    path = only_file(spool_dir)
    assert calls == ["fsync file", "rename", "fsync folder"]
    assert re.fullmatch(r"[0-9a-f]{32}\.sealed", path.name)
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_mtime == info.st_atime == today_midnight()
    events = read_events(path, key)
    end = events[-1]
    assert isinstance(end, records.PayloadEnd)
    assert end.cut == records.UploadCut(records.CUT_IN_ATTACHMENT, 0, len(video))
    assert end.attachments == (
        records.AttachmentSummary(len(video), hashlib.sha256(video).digest()),
    )


def test_a_cut_submission_without_content_leaves_nothing(spool: Spool, spool_dir: Path) -> None:
    with spool.begin() as submission:
        submission.begin_attachment("video.mp4", "video/mp4")
        assert not submission.holds_content
        assert not submission.commit_partial()
    assert os.listdir(spool_dir) == []
    with pytest.raises(RuntimeError):
        submission.commit()


def test_a_cut_submission_still_honours_the_reserve(
    spool_dir: Path, key: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(spool_dir, key.public_key, reserve_bytes=100 * MiB)
    submission = spool.begin()
    submission.add_message("m")
    monkeypatch.setattr(spool, "free_bytes", lambda: 0)
    monkeypatch.setattr(spool_module, "RESERVE_CHECK_INTERVAL", 1)
    with pytest.raises(StorageFull, match="reserve"):
        submission.commit_partial(in_message=True)
    assert os.listdir(spool_dir) == []
