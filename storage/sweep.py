"""The sweep: once per server, every few minutes, wipe the times uploads and visits left.

The kernel sets a file's change time (ctime) whenever its name, content or times
change, and no system call can set it back. A spool file's ctime is the moment it
was renamed into place, the spool folder's the latest arrival, a reply folder's the
latest deletion. The sweep changes the times of all of them at once (to midnight
of the day each already shows), so afterwards every ctime is the sweep's: only what
happened since the last sweep keeps a finer time, and `sweep_interval_seconds` is
that exposure window. It also fills the spool's pool of empty files (storage/spool.py)
once a day, unlinks the replies sources deleted and adopts reply files the operator
copied in as another user (storage/replies.py), and writes the failure counters
(storage/counters.py).

One sweeper runs in the gunicorn master, started once the server is ready and
stopped (with a last sweep) when it exits: never one per worker. Nothing here logs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from ..spool_names import SERVER_NAME
from .counters import FailureCounters
from .replies import RepliesError, ReplyBox
from .spool import (
    POOL_SIZE,
    Spool,
    StorageError,
    day_of,
    list_quietly,
    midnight_utc,
    utc_day,
)


class Sweeper:
    """Runs `sweep` every `interval` seconds in a thread of the process that starts it."""

    def __init__(
        self,
        spool: Spool,
        interval: float,
        replies: ReplyBox | None = None,
        state_dir: Path | None = None,
        counters: FailureCounters | None = None,
    ) -> None:
        self.spool = spool
        self.interval = interval
        self.replies = replies
        self.state_dir = state_dir
        self.counters = counters
        self._filled_day: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> str | None:
        """Sweep now, then every `interval` seconds until `stop`.

        Returns why the first sweep failed (for the operator, at start-up), or None;
        the thread runs either way and tries again at every interval.
        """
        problem = None
        try:
            self.sweep()
        except (OSError, StorageError, RepliesError) as err:
            problem = f"the first sweep of file times failed ({err}); run `sealdrop check`"
        self._thread = threading.Thread(target=self._run, name="sealdrop-sweep", daemon=True)
        self._thread.start()
        return problem

    def stop(self) -> None:
        """Stop the thread and sweep one last time: a stopped server keeps no finer time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with contextlib.suppress(OSError, StorageError, RepliesError):
            self.sweep()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            # A failure (a full disk, a folder made unreadable) must not end the thread;
            # `sealdrop check` names such problems, and the next sweep tries again.
            with contextlib.suppress(OSError, StorageError, RepliesError):
                self.sweep()

    def sweep(self) -> None:
        """One pass: pool, adopted replies, counters, then every time at once."""
        today = utc_day()
        # Once a day, not at every sweep: a pool file's birth time is a moment before
        # its upload, and a day-old one says no more than the day the file records.
        if self._filled_day != today or self.spool.pool_count() < POOL_SIZE // 4:
            self.spool.fill_pool()
            self._filled_day = today
        if self.replies is not None:
            self.replies.remove_deleted()
            self.replies.adopt_foreign()
        if self.counters is not None and self.state_dir is not None and self.state_dir.is_dir():
            self.counters.flush(self.state_dir)
        reset_times(self.paths())

    def paths(self) -> list[Path]:
        """Every file and folder whose change time an upload or a visit may have set."""
        paths = [self.spool.directory, self.spool.pool]
        paths += _entries(
            self.spool.directory, lambda name: SERVER_NAME.fullmatch(name) is not None
        )
        if self.replies is not None:
            paths.append(self.replies.directory)
            paths += _entries(self.replies.directory, lambda name: not name.startswith("."))
        return paths


def reset_times(paths: list[Path]) -> None:
    """Set each path's access and modification times to midnight of the day its
    modification time shows, in random order: all change times become this moment,
    and their order among themselves (nanoseconds apart) says nothing."""
    order = list(paths)
    secrets.SystemRandom().shuffle(order)
    for path in order:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue  # collected or deleted meanwhile
        midnight = midnight_utc(day_of(info.st_mtime))
        # Not the service's own (a reply that could not be adopted): `sealdrop check`
        # names it; the others are still swept.
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.utime(path, (midnight, midnight), follow_symlinks=False)


def _entries(directory: Path, keep: Callable[[str], bool]) -> list[Path]:
    try:
        names = list_quietly(directory)
    except FileNotFoundError:
        return []
    return [directory / name for name in names if keep(name)]
