"""Daily counts of uploads that failed, for the operator, dated no finer than the day.

A refused or lost upload is not logged: a timestamped line per failure would date a
source's visit, and an attacker who fills the disk down to the reserve would make
every later visit leave one. A worker instead adds one to a counter in memory it
shares with the gunicorn master (an anonymous shared mapping made before workers
fork); nothing reaches the disk then. The master's sweep (storage/sweep.py) adds the
new counts to the current day's line of ``failures.json`` in the state folder,
rewriting the file in place: its birth time is the first start, its other times
the sweep's, and its content days and counts. `sealdrop check` reads it.
"""

from __future__ import annotations

import json
import mmap
import multiprocessing
import os
import struct
from pathlib import Path

from .. import durable
from .spool import midnight_utc, utc_day

REFUSED_FULL = "refused_full"  # free space below the reserve, or the disk full
LOST = "lost"  # the spool could not take or keep an upload (an I/O or permission error)
WORKER_DIED = "worker_died"  # a worker was killed (out of memory?) or crashed mid-request
KINDS = (REFUSED_FULL, LOST, WORKER_DIED)
COUNTERS_FILE = "failures.json"
KEEP_DAYS = 30
_SLOT = struct.Struct("<q")
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_FILE_BYTES = 64 * 1024


class FailureCounters:
    """Counters shared by the master and every worker it forks."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, _SLOT.size * len(KINDS))  # MAP_SHARED | MAP_ANONYMOUS
        self._lock = multiprocessing.get_context("fork").Lock()
        self._flushed = [0] * len(KINDS)

    def add(self, kind: str) -> None:
        """Count one failure of `kind` (one of KINDS): memory only, no disk, no time."""
        offset = KINDS.index(kind) * _SLOT.size
        with self._lock:
            (value,) = _SLOT.unpack_from(self._memory, offset)
            _SLOT.pack_into(self._memory, offset, value + 1)

    def totals(self) -> dict[str, int]:
        """Every count since the master started."""
        with self._lock:
            return {
                kind: _SLOT.unpack_from(self._memory, index * _SLOT.size)[0]
                for index, kind in enumerate(KINDS)
            }

    def flush(self, state_dir: Path) -> None:
        """Add what was counted since the last flush to today's line of the file (master)."""
        totals = self.totals()
        new = {kind: totals[kind] - self._flushed[i] for i, kind in enumerate(KINDS)}
        path = state_dir / COUNTERS_FILE
        fd = os.open(path, _OPEN_FLAGS, 0o600)
        try:
            days = _parse(os.pread(fd, _MAX_FILE_BYTES, 0))
            if any(new.values()):
                today = days.setdefault(utc_day(), {})
                for kind, count in new.items():
                    if count:
                        today[kind] = today.get(kind, 0) + count
                kept = dict(sorted(days.items())[-KEEP_DAYS:])
                data = (json.dumps(kept, sort_keys=True, indent=1) + "\n").encode()
                # In place, not a new file: a new inode's birth time would date the change.
                os.ftruncate(fd, 0)
                durable.write_all(fd, data)
                os.fsync(fd)
            midnight = midnight_utc(utc_day())
            os.utime(fd, (midnight, midnight))
        finally:
            os.close(fd)
        self._flushed = [totals[kind] for kind in KINDS]


def read_counts(state_dir: Path) -> dict[str, dict[str, int]]:
    """{day: {kind: count}} from the state folder; empty when nothing was counted.

    Raises OSError when the file exists but cannot be read, ValueError when it is
    damaged (a crash while it was rewritten; the next count rewrites it whole).
    """
    try:
        data = (state_dir / COUNTERS_FILE).read_bytes()
    except FileNotFoundError:
        return {}
    if not data.strip():
        return {}
    days = _parse(data, strict=True)
    return days


def _parse(data: bytes, strict: bool = False) -> dict[str, dict[str, int]]:
    try:
        value = json.loads(data.decode("utf-8")) if data.strip() else {}
        if not isinstance(value, dict) or not all(
            isinstance(counts, dict)
            and all(isinstance(k, str) and isinstance(n, int) for k, n in counts.items())
            for counts in value.values()
        ):
            raise ValueError("not a mapping of days to counts")
    except ValueError:
        if strict:
            raise ValueError(f"{COUNTERS_FILE} is damaged") from None
        return {}
    return value
