"""The spool writer: the only code that creates, writes, renames or deletes spool files.

A submission is sealed as it arrives into ``<random>.sealed.part`` and becomes
``<random>.sealed`` only once complete: the payload is closed (manifest and
padding), the last chunk written, the file fsync'd, renamed, and the directory
fsync'd. A failed submission leaves nothing behind; one the client cut off
keeps what arrived, closed by a CUT record and published the same way
(`Submission.commit_partial`).

Time is the enemy here: a spool file's timestamps could tie an upload to a
moment a source was seen online. So the finished file's atime/mtime and the
directory's are set back to midnight UTC of the day, and the payload records
only that day. Two times no system call can set remain: the birth time (btime)
and inode number, fixed when a file is created, and the change time (ctime),
set by the kernel at every rename or timestamp change. So a submission never
creates its file: it takes an empty one, at random, from a pool (``.pool/``)
made at moments unrelated to any upload (`fill_pool`, run by storage/sweep.py at
start-up and once a day), and the sweep resets every ctime at once. A file's
btime and inode then say only which pool it came from, and its ctime only when
the last sweep ran; docs/SEIZURE.md lists what is left.

Nothing here logs, and no message names a source, a content or a time.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time
from pathlib import Path
from types import TracebackType
from typing import NoReturn

from nacl.public import PublicKey

from .. import durable
from ..blocking import Pending, off_loop, start_off_loop
from ..crypto import RECIPIENTS_VERSION, PayloadSealer, check_recipients
from ..private_folder import folder_problem
from ..records.source import SourceIdentity
from ..records.writer import PayloadWriter
from ..spool_names import POOL_DIR, is_part, part_name, random_name, sealed_name
from ..wipe import zero

# Empty files made ahead of time (see the module docstring).
POOL_SIZE = 64
# How much may be written between two checks of the free space against the reserve.
RESERVE_CHECK_INTERVAL = 8 * 1024 * 1024
# An attachment piece this large or larger is sealed while the next arrives
# (Submission.write): an upload read fast comes in 1 MiB pieces, one trickling in
# small ones, which are not worth a copy and would each hold a buffer.
PIPELINED_PIECE = 64 * 1024
_RECEIPT_GROUPS = 4

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# O_NOFOLLOW: a symlink planted at the name is refused, never written through.
# O_EXCL: the name must be new, so nothing planted is ever reused.
_CREATE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_PART_MODE = 0o600
# Taking a pool file: it must be written, never created, and never through a link.
_TAKE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# Listing a folder would otherwise stamp its access time with the visit.
_LIST_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class StorageError(Exception):
    """Root of the spool's failures: the spool cannot take or keep a submission.

    Raised on its own when the operating system refuses an operation for a reason
    other than a full disk (an I/O error, permissions changed under the running
    service, a file planted in the spool). The message is for the operator; a
    source must only ever see a calm, generic failure.
    """


class StorageFull(StorageError):
    """The disk (or the user's quota) is full, or free space fell below the reserve.

    Raised by `Spool.begin` when free space is already below the reserve, and by
    a submission's writes or commit on ENOSPC/EDQUOT or when a periodic check finds
    free space below the reserve. The submission is aborted before this is raised.
    """


class SpoolUnusable(StorageError):
    """The spool folder breaks the private-folder rule: missing, not a real folder, open
    to others, not its user's, or not writable.

    Raised by `Spool.check` at start-up; the service must not start.
    """


def random_receipt() -> str:
    """A number the source can quote to the organisation, like ``4821-7730-1159-6603``."""
    digits = f"{secrets.randbelow(10 ** (4 * _RECEIPT_GROUPS)):0{4 * _RECEIPT_GROUPS}d}"
    return "-".join(digits[i : i + 4] for i in range(0, len(digits), 4))


def utc_day() -> str:
    """Today's date in UTC, ``YYYY-MM-DD``: the only time a submission records."""
    return datetime.now(UTC).date().isoformat()


def day_of(seconds: float) -> str:
    """The UTC day, ``YYYY-MM-DD``, of a time in seconds since the epoch."""
    return datetime.fromtimestamp(seconds, UTC).date().isoformat()


def midnight_utc(day: str) -> int:
    """Seconds since the epoch at 00:00 UTC of `day` (``YYYY-MM-DD``)."""
    return int(datetime.combine(datetime.fromisoformat(day).date(), time(), UTC).timestamp())


class Spool:
    """A directory of sealed submissions, written only through this class."""

    def __init__(
        self,
        directory: Path,
        recipients: PublicKey | Sequence[PublicKey],
        *,
        reserve_bytes: int = 0,
    ) -> None:
        if reserve_bytes < 0:
            raise ValueError("reserve_bytes must not be negative")
        self.directory = Path(directory)
        self.reserve_bytes = reserve_bytes
        self._recipients = (recipients,) if isinstance(recipients, PublicKey) else tuple(recipients)
        check_recipients(self._recipients)

    def check(self) -> None:
        """Refuse a spool that breaks the private-folder rule (`private_folder`)."""
        problem = folder_problem(self.directory, "spool folder")
        if problem is not None:
            raise SpoolUnusable(str(problem))

    def free_bytes(self) -> int:
        """Space an unprivileged writer may still use on the spool's file system."""
        try:
            info = os.statvfs(self.directory)
        except OSError as err:
            raise _storage_error(err, "measure the free space of", self.directory) from None
        return info.f_bavail * info.f_frsize

    def ensure_reserve(self) -> None:
        """Raise StorageFull if free space is below the reserve."""
        if self.reserve_bytes and self.free_bytes() < self.reserve_bytes:
            raise StorageFull(
                f"free space in the spool folder {self.directory} is below the reserve of "
                f"{self.reserve_bytes} bytes; collect and remove opened submissions or add "
                "disk space (or lower the reserve)"
            )

    @property
    def pool(self) -> Path:
        """The folder of empty files that submissions take (see the module docstring)."""
        return self.directory / POOL_DIR

    def pool_count(self) -> int:
        """How many empty files the pool holds; 0 when there is no pool yet."""
        try:
            return len(list_quietly(self.pool))
        except FileNotFoundError:
            return 0
        except OSError as err:
            raise _storage_error(err, "list", self.pool) from None

    def fill_pool(self, size: int = POOL_SIZE) -> int:
        """Make empty files in the pool until it holds `size`; return how many were made.

        Called by the sweep (storage/sweep.py) at moments unrelated to any upload, and
        by `begin` only when a burst emptied the pool. A full disk (no inode left)
        stops the filling quietly: `begin` then reports it for the upload at hand.
        """
        try:
            os.mkdir(self.pool, 0o700)
        except FileExistsError:
            pass
        except OSError as err:
            raise _storage_error(err, "create the pool folder in", self.directory) from None
        made = 0
        for _ in range(size - self.pool_count()):
            try:
                os.close(os.open(self.pool / random_name(), _CREATE_FLAGS, _PART_MODE))
            except OSError as err:
                if err.errno in _FULL_ERRNOS:
                    break
                raise _storage_error(err, "fill the pool folder in", self.directory) from None
            made += 1
        try:
            durable.fsync_directory(self.pool)
            _blur_directory_times(self.pool, utc_day())
        except OSError as err:
            raise _storage_error(err, "record the pool folder in", self.directory) from None
        return made

    def _take_from_pool(self, part: Path) -> int | None:
        """Rename a random pool file to `part` and open it; None when there is no pool.

        Several workers may take at once: a name another took first is skipped. A pool
        emptied by a burst is filled again here (those files' btime is then this moment).
        """
        if not self.pool.is_dir():
            return None
        for attempt in range(2):
            try:
                names = list_quietly(self.pool)
            except OSError as err:
                raise _storage_error(err, "list", self.pool) from None
            secrets.SystemRandom().shuffle(names)
            for name in names:
                try:
                    os.rename(self.pool / name, part)
                except FileNotFoundError:
                    continue  # another worker took it
                except OSError as err:
                    raise _storage_error(err, "take a file from", self.pool) from None
                return self._open_taken(part)
            if attempt == 0:
                self.fill_pool()
        return None

    def _open_taken(self, part: Path) -> int:
        try:
            fd = os.open(part, _TAKE_FLAGS)
        except OSError as err:
            _unlink_quietly(part)
            raise _storage_error(err, "open a pool file in", self.directory) from None
        try:
            info = os.fstat(fd)
        except OSError as err:
            _close_quietly(fd)
            raise _storage_error(err, "open a pool file in", self.directory) from None
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_size
            or info.st_nlink != 1
            or (info.st_uid != os.geteuid())
        ):
            _close_quietly(fd)
            _unlink_quietly(part)
            raise StorageError(
                f"a file in the pool folder {self.pool} was not an empty file of this "
                "service's own; someone is placing files in the spool folder: investigate"
            )
        return fd

    def remove_stale_parts(self) -> int:
        """Delete ``*.part`` files left by a crash; return how many were removed.

        A file another process is still writing holds an exclusive lock, and is
        kept: several workers may start while uploads run in others.
        """
        removed = 0
        try:
            entries = list(os.scandir(self.directory))
        except OSError as err:
            raise _storage_error(err, "list", self.directory) from None
        for entry in entries:
            if is_part(entry.name) and self._remove_if_stale(entry):
                removed += 1
        if removed:
            _blur_directory_times(self.directory, utc_day())
        return removed

    def begin(
        self, source: SourceIdentity | None = None, language: str | None = None
    ) -> Submission:
        """Start a submission: create its ``.part`` file and write the sealed header.

        The file is format version 3, sealed to every configured reviewer key. With
        `source` (the reply key and mailbox id a codename stands for) it carries them
        in a SOURCE record inside the sealed payload, nowhere else; with `language`
        (the pages' BCP 47 tag) a LANGUAGE record, likewise sealed and nowhere else.
        """
        # Statting, creating, locking and writing: never on a worker's event loop.
        return off_loop(self._begin, source, language)

    def _begin(self, source: SourceIdentity | None, language: str | None) -> Submission:
        self.ensure_reserve()
        name = sealed_name(random_name())
        final = self.directory / name
        part = self.directory / part_name(name)
        if os.path.lexists(final):
            # 128 random bits never collide: something was planted. Refuse to go near it.
            raise StorageError(
                f"a file named {final} already exists although its name was just drawn at "
                "random; someone is placing files in the spool folder: investigate"
            )
        fd = self._take_from_pool(part)
        if fd is None:
            try:
                fd = os.open(part, _CREATE_FLAGS, _PART_MODE)
            except OSError as err:
                raise _storage_error(err, "create a file in", self.directory) from None
        try:
            # The lock tells remove_stale_parts in other workers that this file is live.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.fchmod(fd, _PART_MODE)  # exact mode whatever the umask
            still_ours = os.lstat(part).st_ino == os.fstat(fd).st_ino
        except OSError as err:
            _close_quietly(fd)
            _unlink_quietly(part)
            raise _storage_error(err, "lock a new file in", self.directory) from None
        if not still_ours:
            # Another worker's remove_stale_parts took the name between create and lock.
            _close_quietly(fd)
            raise StorageError(
                f"a new file in the spool folder {self.directory} was removed as it was "
                "created, by another process cleaning the spool; the next attempt will work"
            )
        day = utc_day()
        try:
            _blur_directory_times(self.directory, day)
            if self.pool.is_dir():
                _blur_directory_times(self.pool, day)
        except OSError as err:
            _close_quietly(fd)
            _unlink_quietly(part)
            raise _storage_error(err, "set the times of", self.directory) from None
        return Submission(self, fd, part, final, random_receipt(), day, source, language)

    def _remove_if_stale(self, entry: os.DirEntry[str]) -> bool:
        path = Path(entry.path)
        try:
            if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                if entry.is_dir(follow_symlinks=False):
                    return False  # never ours; leave it to the operator
                os.unlink(path)  # a planted link or device: remove the name only
                return True
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return False
        except OSError as err:
            raise _storage_error(err, "remove a stale file from", self.directory) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live upload in another process
        except OSError as err:
            raise _storage_error(err, "lock a stale file in", self.directory) from None
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            except OSError as err:
                raise _storage_error(err, "remove a stale file from", self.directory) from None
            return True
        finally:
            _close_quietly(fd)


class Submission:
    """One submission being sealed into the spool. Use as a context manager.

    Memory stays bounded by a few chunks whatever the upload's size: every piece
    goes through the record writer and the sealer straight to the file.
    Leaving the ``with`` block without `commit` aborts: nothing is left behind.
    Each step that seals or writes runs off a worker's event loop (blocking.off_loop):
    the calling request waits for it, the worker's other connections do not. A large
    piece of an attachment is copied to a buffer of the submission's own and sealed
    while the next piece arrives (`write`); every other step waits for it first, and
    its error, if any, is raised by the next step.
    """

    def __init__(
        self,
        spool: Spool,
        fd: int,
        part: Path,
        final: Path,
        receipt: str,
        day: str,
        source: SourceIdentity | None = None,
        language: str | None = None,
    ) -> None:
        self.receipt = receipt
        self._spool = spool
        self._fd: int | None = fd
        self._part = part
        self._final = final
        self._day = day
        self._state = "open"
        self._bytes_written = 0
        self._unchecked_bytes = 0
        # The piece being sealed while the next arrives, and the buffer holding it.
        self._in_flight: Pending[None] | None = None
        self._in_flight_view: memoryview | None = None
        self._spare = bytearray()
        self._sealer = PayloadSealer(spool._recipients, version=RECIPIENTS_VERSION)
        self._file_write(self._sealer.header)
        self._payload = PayloadWriter(_seal_of(self), day, receipt, source, language)

    @property
    def bytes_written(self) -> int:
        """Sealed bytes on disk so far (header included)."""
        self._finish_in_flight()
        return self._bytes_written

    def __enter__(self) -> Submission:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._state != "committed":
            self.abort()

    def add_message(self, text: str) -> None:
        """Add the source's message; may be called several times, before any attachment."""
        self._before_next_step()
        off_loop(self._payload.message, text)

    def begin_attachment(self, name: str, media_type: str) -> None:
        self._before_next_step()
        off_loop(self._payload.begin_attachment, name, media_type)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes to the open attachment. A piece of PIPELINED_PIECE bytes or
        more is copied and, on a worker's event loop, sealed while the caller reads the
        next one: `data` may be reused as soon as this returns, and an error sealing it
        is raised by the next call."""
        self._before_next_step()
        size = len(memoryview(data))
        if size < PIPELINED_PIECE:
            if self._spare:  # the upload slowed down: its large buffer goes
                zero(self._spare)
                self._spare = bytearray()
            off_loop(self._payload.attachment_data, data)
            return
        if len(self._spare) < size:
            zero(self._spare)
            self._spare = bytearray(size)
        view = memoryview(self._spare)[:size]
        view[:] = data
        self._in_flight_view = view
        self._in_flight = start_off_loop(self._payload.attachment_data, view)

    def end_attachment(self) -> None:
        self._before_next_step()
        off_loop(self._payload.end_attachment)

    @property
    def holds_content(self) -> bool:
        """True once a byte of message text or attachment data was sealed."""
        self._finish_in_flight()
        return self._payload.holds_content

    def commit(self) -> str:
        """Finish, fsync and publish the spool file; return the receipt once it is durable."""
        self._before_next_step()
        zero(self._spare)
        return off_loop(self._publish)

    def commit_partial(self, *, in_message: bool = False) -> bool:
        """Keep what arrived of an upload the client cut off; False if nothing had.

        A payload holding at least one byte of message text or attachment data is
        closed with a CUT record (records.PayloadWriter.cut: `in_message` says the body
        ended inside the message) and published exactly like a complete one: manifest,
        padding, fsync, rename, coarse times, reserve checks. One holding nothing is
        aborted. Call it only when the *client* went away: a refused or failed upload
        must be aborted instead.
        """
        self._before_next_step()
        zero(self._spare)
        if not self._payload.holds_content:
            self.abort()
            return False
        off_loop(self._payload.cut, in_message)
        off_loop(self._publish)
        return True

    def _publish(self) -> str:
        self._payload.close()
        self._file_write(self._sealer.finalize())
        fd = self._fd
        assert fd is not None
        midnight = midnight_utc(self._day)
        try:
            os.utime(fd, (midnight, midnight))
            os.fsync(fd)
        except OSError as err:
            self._fail(err, "finish a file in")
        self._fd = None
        try:
            os.close(fd)
            os.rename(self._part, self._final)
        except OSError as err:
            self._fail(err, "finish a file in")
        self._state = "renamed"
        try:
            _blur_directory_times(self._spool.directory, self._day)
            durable.fsync_directory(self._spool.directory)
        except OSError as err:
            # Not provably durable: take it back, so the source is not told it arrived.
            _unlink_quietly(self._final)
            self._fail(err, "record a finished file in")
        self._state = "committed"
        return self.receipt

    def abort(self) -> None:
        """Discard the submission. Safe at any point, any number of times; never raises."""
        # The piece in flight uses the file: let it end (its error no longer matters).
        with contextlib.suppress(Exception):
            self._finish_in_flight()
        zero(self._spare)
        self._abort_now()

    def _abort_now(self) -> None:
        """`abort` without waiting for the piece in flight: for the steps themselves
        (one of which may be that piece) when they fail."""
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        if self._fd is not None:
            _close_quietly(self._fd)
            self._fd = None
        # A name that cannot be removed now is a `.part`, removed at the next start.
        _unlink_quietly(self._part)
        try:
            _blur_directory_times(self._spool.directory, self._day)
        except OSError:
            pass  # the times are a precaution; abort must not raise

    def _before_next_step(self) -> None:
        """Wait for the piece in flight (raising its error), then check the state."""
        self._finish_in_flight()
        self._require_open()

    def _finish_in_flight(self) -> None:
        pending, self._in_flight = self._in_flight, None
        view, self._in_flight_view = self._in_flight_view, None
        try:
            if pending is not None:
                pending.wait()
        finally:
            if view is not None:
                view.release()

    def _require_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"the submission is {self._state}; start a new one")

    def _seal(self, data: bytes | bytearray | memoryview) -> None:
        # Chunk by chunk: joining a piece's chunks first would copy every byte once more.
        for chunk in self._sealer.update_chunks(data):
            self._file_write(chunk)

    def _file_write(self, data: bytes) -> None:
        if not data:
            return
        self._require_open()
        fd = self._fd
        assert fd is not None
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as err:
            self._fail(err, "write a file in")
        self._bytes_written += len(data)
        self._unchecked_bytes += len(data)
        if self._unchecked_bytes >= RESERVE_CHECK_INTERVAL:
            self._unchecked_bytes = 0
            try:
                self._spool.ensure_reserve()
            except StorageError:
                self._abort_now()
                raise

    def _fail(self, err: OSError, doing: str) -> NoReturn:
        self._abort_now()
        raise _storage_error(err, doing, self._spool.directory) from None


def _seal_of(submission: Submission) -> Callable[[bytes | bytearray | memoryview], None]:
    """`submission._seal`, for its PayloadWriter to keep, without keeping `submission`.

    With the bound method the writer and the submission were a reference cycle, which
    only the garbage collector's rare full passes free: every upload left its spare
    buffer (a megabyte, zeroed) and its sealer (holding up to a chunk of plaintext)
    allocated for minutes, and a loaded server's heap grew by a megabyte an upload
    (docs/PERFORMANCE.md, "Reference cycles")."""
    seal = weakref.WeakMethod(submission._seal)

    def call(data: bytes | bytearray | memoryview) -> None:
        method = seal()
        if method is None:
            raise RuntimeError("the submission was freed while its payload was written")
        method(data)

    return call


def _storage_error(err: OSError, doing: str, directory: Path) -> StorageError:
    if err.errno in _FULL_ERRNOS:
        return StorageFull(
            f"the disk holding the spool folder {directory} is full ({err.strerror}); "
            "collect and remove opened submissions or add disk space"
        )
    return StorageError(
        f"could not {doing} the spool folder {directory} ({err.strerror}); check the disk, "
        "the folder's owner and mode (700), and the system log"
    )


def _blur_directory_times(directory: Path, day: str) -> None:
    # Creating, renaming or removing a name sets the directory's mtime to that moment.
    midnight = midnight_utc(day)
    os.utime(directory, (midnight, midnight))


def list_quietly(directory: Path) -> list[str]:
    """The names in `directory`, listed without changing its access time where the
    service owns it (O_NOATIME); raises OSError like os.scandir."""
    try:
        fd = os.open(directory, _LIST_FLAGS | os.O_NOATIME)
    except PermissionError:
        fd = os.open(directory, _LIST_FLAGS)  # O_NOATIME needs the folder's owner
    try:
        with os.scandir(fd) as scan:
            return [entry.name for entry in scan]
    finally:
        os.close(fd)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass  # the descriptor is released by the kernel whatever close reports


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # already gone, or left as `.part` for remove_stale_parts at the next start
