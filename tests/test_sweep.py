"""The times a seizure would read: the spool's pool, the sweep, adopted replies, reading
without access times, and the daily failure counters (tests/test_seizure.py runs them
all together on the real server)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from sealdrop import codename, replies
from sealdrop.server.logs import _Redact
from sealdrop.spool_names import POOL_DIR
from sealdrop.storage.counters import (
    COUNTERS_FILE,
    LOST,
    REFUSED_FULL,
    WORKER_DIED,
    FailureCounters,
    read_counts,
)
from sealdrop.storage.replies import ReplyBox
from sealdrop.storage.spool import POOL_SIZE, Spool, midnight_utc, utc_day
from sealdrop.storage.sweep import Sweeper

SALT = bytes(16)
# File times come from the kernel's coarse clock, a tick (up to 10 ms) behind time_ns.
COARSE_CLOCK_NS = 20_000_000


def spool_with_pool(spool_dir: Path, key: PrivateKey) -> Spool:
    spool = Spool(spool_dir, key.public_key)
    assert spool.fill_pool() == POOL_SIZE
    return spool


def commit_one(spool: Spool, text: str = "a report") -> Path:
    before = set(spool.directory.glob("*.sealed"))
    with spool.begin() as submission:
        submission.add_message(text)
        submission.commit()
    [path] = set(spool.directory.glob("*.sealed")) - before
    return path


def test_a_submission_takes_an_empty_file_made_before_it(
    spool_dir: Path, reviewer_key: PrivateKey
) -> None:
    spool = spool_with_pool(spool_dir, reviewer_key)
    pool_inodes = {p.stat().st_ino for p in (spool_dir / POOL_DIR).iterdir()}
    made = time.time_ns()
    time.sleep(0.05)
    paths = [commit_one(spool, f"report {i}") for i in range(5)]
    assert {p.stat().st_ino for p in paths} <= pool_inodes
    assert spool.pool_count() == POOL_SIZE - 5
    for path in paths:
        info = path.stat()
        assert info.st_mtime_ns == info.st_atime_ns == midnight_utc(utc_day()) * 10**9
        assert info.st_ctime_ns > made  # the rename: until the sweep, the arrival's moment


def test_an_emptied_pool_is_filled_again_and_a_planted_file_is_refused(
    spool_dir: Path, reviewer_key: PrivateKey
) -> None:
    spool = spool_with_pool(spool_dir, reviewer_key)
    for path in (spool_dir / POOL_DIR).iterdir():
        path.unlink()
    commit_one(spool)
    assert spool.pool_count() == POOL_SIZE - 1
    for path in (spool_dir / POOL_DIR).iterdir():
        path.write_bytes(b"planted")
    with pytest.raises(Exception, match="someone is placing files"):
        spool.begin()
    assert not list(spool_dir.glob("*.part"))


def test_without_a_pool_a_submission_makes_its_own_file(
    spool_dir: Path, reviewer_key: PrivateKey
) -> None:
    # The library and the test client (no `serve`, no sweep) keep the old behaviour.
    spool = Spool(spool_dir, reviewer_key.public_key)
    commit_one(spool)
    assert not (spool_dir / POOL_DIR).exists()


def test_the_sweep_gives_every_file_and_folder_the_same_change_time(
    spool_dir: Path, reviewer_key: PrivateKey, tmp_path: Path
) -> None:
    spool = spool_with_pool(spool_dir, reviewer_key)
    replies_dir = tmp_path / "replies"
    replies_dir.mkdir(mode=0o700)
    (replies_dir / replies.reply_file_name(bytes(16))).write_bytes(b"x" * 100)
    paths = []
    for i in range(4):
        paths.append(commit_one(spool, f"report {i}"))
        time.sleep(0.02)
    before = [p.stat().st_ctime_ns for p in paths]
    assert len(set(before)) == 4  # each its arrival
    touched = [*paths, spool_dir, replies_dir, *replies_dir.iterdir()]
    swept_at = time.time_ns() - COARSE_CLOCK_NS
    sweeper = Sweeper(spool, 600, replies=ReplyBox(replies_dir))
    sweeper.sweep()
    ctimes = [p.stat().st_ctime_ns for p in touched]
    assert min(ctimes) >= swept_at and max(ctimes) - min(ctimes) < 10**9
    for path in touched:
        info = path.stat()
        assert info.st_atime_ns % (86_400 * 10**9) == 0, path
        assert info.st_mtime_ns % (86_400 * 10**9) == 0, path


def test_the_sweep_unlinks_the_replies_sources_deleted(
    spool_dir: Path, reviewer_key: PrivateKey, tmp_path: Path
) -> None:
    folder = tmp_path / "replies"
    folder.mkdir(mode=0o700)
    mailbox, reply_id = "ab" * 16, "cd" * 16
    (folder / f"{mailbox}-{reply_id}.reply").write_bytes(b"sealed")
    box = ReplyBox(folder)
    assert box.delete(mailbox, reply_id)
    [hidden] = os.listdir(folder)
    assert hidden.startswith(".") and hidden.endswith(".deleted")
    Sweeper(Spool(spool_dir, reviewer_key.public_key), 600, replies=box).sweep()
    assert os.listdir(folder) == []


def test_the_sweeper_thread_sweeps_and_sweeps_again_when_stopped(
    spool_dir: Path, reviewer_key: PrivateKey
) -> None:
    spool = Spool(spool_dir, reviewer_key.public_key)
    sweeper = Sweeper(spool, 0.2)
    assert sweeper.start() is None
    assert spool.pool_count() == POOL_SIZE  # the first sweep filled the pool
    path = commit_one(spool)
    arrived = path.stat().st_ctime_ns
    time.sleep(0.6)
    assert path.stat().st_ctime_ns > arrived  # a periodic sweep ran
    stopped = time.time_ns() - COARSE_CLOCK_NS
    sweeper.stop()
    assert path.stat().st_ctime_ns >= stopped  # and a last one as it stopped


def test_reading_replies_sets_no_access_time(tmp_path: Path) -> None:
    folder = tmp_path / "replies"
    folder.mkdir(mode=0o700)
    keys = codename.derive(codename.new_codename(), SALT, codename.TEST_COST)
    signer = SigningKey.generate()
    sealed = replies.seal_reply("hello", keys.reply_public_key, utc_day(), "0001-0002")
    path = folder / replies.reply_file_name(keys.mailbox_id)
    path.write_bytes(replies.sign_reply(sealed, keys.mailbox_id, signer))
    old = midnight_utc("2026-01-01")
    os.utime(path, (old, old))
    os.utime(folder, (old, old))
    shown = ReplyBox(folder, (signer.verify_key,)).replies_for(keys.mailbox, keys.reply_key)
    assert [reply.message for reply in shown] == ["hello"]
    assert path.stat().st_atime == old
    assert folder.stat().st_atime == old


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_reply_copied_in_by_another_user_is_adopted_as_the_services_own(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "replies"
    folder.mkdir(mode=0o700)
    path = folder / replies.reply_file_name(bytes(16))
    path.write_bytes(b"sealed reply bytes")
    os.chown(path, 65534, 65534)
    path.chmod(0o644)
    assert ReplyBox(folder).adopt_foreign() == 1
    info = path.stat()
    assert (info.st_uid, info.st_mode & 0o777) == (os.geteuid(), 0o600)
    assert path.read_bytes() == b"sealed reply bytes"
    assert info.st_mtime_ns % (86_400 * 10**9) == 0
    assert [p.name for p in folder.iterdir()] == [path.name]
    assert ReplyBox(folder).adopt_foreign() == 0


def test_failures_are_counted_per_day_in_one_file_rewritten_in_place(tmp_path: Path) -> None:
    counters = FailureCounters()
    counters.flush(tmp_path)  # the first sweep makes the file: its birth is the start
    inode = (tmp_path / COUNTERS_FILE).stat().st_ino
    assert read_counts(tmp_path) == {}
    pid = os.fork()
    if pid == 0:  # a worker counts in memory shared with the master
        counters.add(REFUSED_FULL)
        counters.add(REFUSED_FULL)
        os._exit(0)
    os.waitpid(pid, 0)
    counters.add(LOST)
    counters.flush(tmp_path)
    counters.flush(tmp_path)  # nothing new: nothing added twice
    assert read_counts(tmp_path) == {utc_day(): {REFUSED_FULL: 2, LOST: 1}}
    info = (tmp_path / COUNTERS_FILE).stat()
    assert info.st_ino == inode
    assert info.st_mtime_ns % (86_400 * 10**9) == 0
    (tmp_path / COUNTERS_FILE).write_text("{damaged")
    with pytest.raises(ValueError, match="damaged"):
        read_counts(tmp_path)


def test_a_workers_death_is_counted_not_logged() -> None:
    counters = FailureCounters()
    redact = _Redact(counters)
    death = logging.LogRecord(
        "gunicorn.error",
        logging.ERROR,
        "",
        0,
        "Worker (pid:%s) was sent %s! Perhaps out of memory?",
        (1234, "SIGKILL"),
        None,
    )
    assert redact.filter(death) is False
    assert counters.totals()[WORKER_DIED] == 1
