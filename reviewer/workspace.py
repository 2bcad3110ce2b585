"""The output folder of `sealdrop open`: locked for one run, and its record.

Each submission is written into a hidden ``.incoming-*`` folder and renamed into
view only once its whole payload is verified, so a folder in view is always
complete; an interrupted run's ``.incoming-*`` folders are removed by the next.
An upload the source's connection cut off (a CUT record) holds what arrived and
is marked: ``<day>_<short id>_PARTIAL``, its cut file ending in ``.partial``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from .. import durable
from .ledger import Ledger
from .unpack import DIR_MODE, FILE_MODE

LOCK_FILE = ".lock"
INCOMING_PREFIX = ".incoming-"
# The spool writer draws 128-bit hex names; copy tools add to them, rarely remove.
_SPOOL_ID = re.compile(r"[0-9a-f]{32}")
_SHORT_ID_CHARS = 8
# Ends the folder name of a submission whose upload was cut off.
PARTIAL_MARK = "_PARTIAL"


def short_id(spool_name: str) -> str:
    """Eight characters that name a submission's folder after its spool file.

    The start of the server's hex name wherever a copy tool left it in the name
    (``Copy of 3fa2...sealed`` gives ``3fa2c1d0``); for any other name, the start of
    its SHA-256, since a spool file's name may hold anything a folder name must not.
    manifest.json keeps the spool file's name exactly.
    """
    found = _SPOOL_ID.search(spool_name)
    if found:
        return found.group()[:_SHORT_ID_CHARS]
    return hashlib.sha256(os.fsencode(spool_name)).hexdigest()[:_SHORT_ID_CHARS]


class OutputUnusable(Exception):
    """The output folder cannot be created, locked or written; nothing can be opened.

    The message, for the reviewer, names the folder and what to fix.
    """


class Workspace:
    """The output folder: locked for one run, and its record of opened files."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.ledger = Ledger(out)
        self.removed_stale = 0
        self._lock_fd: int | None = None

    def prepare(self) -> None:
        """Create and lock the folder, clear an interrupted run's leftovers, read the record."""
        try:
            self.out.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            self._lock_fd = os.open(
                self.out / LOCK_FILE,
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                FILE_MODE,
            )
        except OSError as err:
            raise OutputUnusable(
                f"cannot use the output folder {self.out} ({err.strerror}); choose a folder "
                "you can write to with --out"
            ) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._release()
            raise OutputUnusable(
                f"another `sealdrop open` is writing into {self.out}; wait for it to finish"
            ) from None
        try:
            self.removed_stale = self._remove_stale_incoming()
            self.ledger.read()
        except OSError as err:
            self._release()
            raise OutputUnusable(
                f"cannot prepare the output folder {self.out} ({err.strerror}); check its "
                "owner and permissions"
            ) from None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._release()

    def new_incoming(self) -> Path:
        # mkdtemp makes it 0700 and unguessable; the dot keeps it out of casual listings.
        return Path(tempfile.mkdtemp(prefix=INCOMING_PREFIX, dir=self.out))

    def publish(
        self,
        incoming: Path,
        day: str,
        spool_name: str,
        parent: Path | None = None,
        *,
        partial: bool = False,
    ) -> Path:
        """Rename the finished folder into view (in `parent`, a source folder, or DIR)
        under a name not yet taken; fsync the folder it went into."""
        where = self.out if parent is None else parent
        base = f"{day}_{short_id(spool_name)}{PARTIAL_MARK if partial else ''}"
        final = where / base
        counter = 1
        # Only this run writes here (the lock), so checking then renaming cannot race;
        # rename alone would silently replace an empty folder of the same name.
        while os.path.lexists(final):
            counter += 1
            final = where / f"{base}-{counter}"
        os.rename(incoming, final)
        durable.fsync_directory(where)
        return final

    def _remove_stale_incoming(self) -> int:
        removed = 0
        with os.scandir(self.out) as scan:
            stale = [
                e.path
                for e in scan
                if e.name.startswith(INCOMING_PREFIX) and e.is_dir(follow_symlinks=False)
            ]
        for path in stale:
            shutil.rmtree(path)
            removed += 1
        return removed

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
