"""`sealdrop open SPOOL --key FILE --out DIR`: decrypt spool files into folders, offline.

Each submission is written into a hidden ``.incoming-*`` folder in DIR and
renamed to ``<day>_<short id>`` only once its whole payload is verified, so a
folder in view is always complete. An upload the source's connection cut off
(a CUT record) holds what arrived and is marked: ``<day>_<short id>_PARTIAL``,
its cut file ending in ``.partial``; it is not damage (exit status 0). A spool
file that fails any check moves to ``DIR/quarantine`` and the run goes on.
``DIR/.opened`` records, one name a line, the spool files already opened, so a
second run (or one after a crash) skips them; ``--remove`` deletes a spool file
only after that record is durable.

Exit status: 0 all opened, 1 some file could not be opened (quarantined or
unreadable), 2 nothing could be done or the run had to stop (key, output folder).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from nacl.public import PrivateKey

from .. import durable
from ..crypto import (
    MalformedStream,
    NotASealdropFile,
    SpoolFileError,
    TamperedChunk,
    TamperedHeader,
    TrailingData,
    TruncatedFile,
    UnsupportedVersion,
    WrongKey,
    open_payload,
)
from ..keys import KeyFileError, load_secret_key
from ..records.layout import MalformedPayload
from ..records.reader import read_payload
from ..records.source import SourceIdentity
from .passphrase import PassphraseError, read_passphrase
from .prefetch import prefetched
from .progress import Progress, human_size
from .sources import SourceFolderError, folder_for, kind_name, refresh_order
from .unpack import CUT_WHERE, DIR_MODE, FILE_MODE, Unpacked, unpack

SEALED_SUFFIX = ".sealed"
PART_SUFFIX = ".part"
QUARANTINE_DIR = "quarantine"
OPENED_RECORD = ".opened"
LOCK_FILE = ".lock"
INCOMING_PREFIX = ".incoming-"
# The spool writer draws 128-bit hex names; "-N" is what quarantine adds on a clash.
_SPOOL_NAME = re.compile(r"[0-9a-f]{32}(-[0-9]+)?\.sealed")
_SHORT_ID_CHARS = 8
# Ends the folder name of a submission whose upload was cut off.
PARTIAL_MARK = "_PARTIAL"

# Why a file was refused, in words for the reviewer, with what to do about it.
ADVICE: dict[type[SpoolFileError], str] = {
    NotASealdropFile: (
        "it does not start with sealdrop's marker, so it is not a spool file; "
        "check what was copied into the spool folder"
    ),
    UnsupportedVersion: (
        "it was written in a newer sealdrop format; upgrade sealdrop on this machine "
        "and open the quarantine folder again"
    ),
    WrongKey: (
        "it does not open with this secret key: it was sealed to another reviewer key, "
        "or its header was damaged; open the quarantine folder with the matching key"
    ),
    TamperedHeader: (
        "its header (the keys it is sealed to) was altered after sealing, or it was "
        "written by a hostile writer; copy it again from the server, and if it fails "
        "again keep it for investigation"
    ),
    TruncatedFile: ("the file ends before its final chunk; copy it again from the server"),
    TamperedChunk: (
        "part of it fails authentication: it was damaged or altered after sealing; "
        "copy it again from the server, and if it fails again treat the server as suspect"
    ),
    TrailingData: (
        "bytes were appended after its final chunk; copy it again from the server, and "
        "if it fails again treat the server as suspect"
    ),
    MalformedStream: (
        "it decrypts but its chunks break the format, which only a faulty or hostile "
        "writer holding its key can cause; keep it for investigation"
    ),
    MalformedPayload: (
        "it decrypts but its contents break the format, which only a faulty or hostile "
        "writer holding its key can cause; keep it for investigation"
    ),
}


class OutputUnusable(Exception):
    """The output folder cannot be created, locked or written; nothing can be opened."""


class SpoolUnreadable(Exception):
    """Reading a spool file failed in the operating system (I/O error, permission).

    The file itself may be fine, so it is left where it is, not quarantined.
    """


@dataclass
class Report:
    """What happened to every spool file, for the summary and the exit status."""

    opened: list[str] = field(default_factory=list)
    # Of those opened, the ones whose upload was cut off (folder names, as in `opened`).
    partial: list[str] = field(default_factory=list)
    already_opened: int = 0
    removed: int = 0
    parts: int = 0
    ignored: list[str] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    stale_incoming: int = 0
    # Source folder name -> its submissions in order, for the sources opened this run.
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return 1 if self.quarantined or self.unreadable else 0


def run_open(args: argparse.Namespace) -> int:
    spool: Path = args.spool
    out: Path = args.out
    try:
        names, parts, ignored = list_spool(spool)
    except OSError as err:
        _say(
            f"cannot read the spool folder {spool} ({err.strerror}); give the folder "
            "holding the .sealed files copied from the server"
        )
        return 2
    try:
        key = load_secret_key(args.key, read_passphrase(confirm=False))
    except (KeyFileError, PassphraseError) as err:
        _say(f"{err}\nNothing was opened or written.")
        return 2
    report = Report(parts=len(parts), ignored=ignored)
    workspace = Workspace(out)
    try:
        workspace.prepare()
    except OutputUnusable as err:
        _say(f"{err}\nNothing was opened or written.")
        return 2
    report.stale_incoming = workspace.removed_stale
    try:
        with workspace:
            progress = Progress(
                sys.stderr,
                sum(1 for n in names if n not in workspace.opened),
                sys.stderr.isatty(),
            )
            opener = Opener(spool, key, workspace, progress, report, remove=args.remove)
            for name in names:
                opener.handle(name)
    except OutputUnusable as err:
        _say(str(err))
        print(format_summary(report, out))
        return 2
    if getattr(args, "strip_metadata", False):
        from .metadata import strip_opened

        strip_opened(out, report.opened, print)
    print(format_summary(report, out))
    return report.status


def list_spool(spool: Path) -> tuple[list[str], list[str], list[str]]:
    """Spool file names to open, unfinished `.part` names, and other `.sealed` names."""
    if spool.is_file():
        entries = [spool.name]
    else:
        with os.scandir(spool) as scan:
            entries = sorted(e.name for e in scan if e.is_file(follow_symlinks=False))
    names = [n for n in entries if _SPOOL_NAME.fullmatch(n)]
    parts = [n for n in entries if n.endswith(PART_SUFFIX)]
    ignored = [n for n in entries if n.endswith(SEALED_SUFFIX) and n not in names]
    return names, parts, ignored


class Workspace:
    """The output folder: locked for one run, its record of opened files, its quarantine."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.quarantine = out / QUARANTINE_DIR
        self.opened: set[str] = set()
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
            self.opened = self._read_opened()
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
        base = f"{day}_{spool_name[:_SHORT_ID_CHARS]}{PARTIAL_MARK if partial else ''}"
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

    def record_opened(self, spool_name: str) -> None:
        fd = os.open(
            self.out / OPENED_RECORD,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            FILE_MODE,
        )
        try:
            os.write(fd, f"{spool_name}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        self.opened.add(spool_name)

    def move_to_quarantine(self, path: Path) -> Path:
        """Move a refused spool file into quarantine, never replacing a file there."""
        self.quarantine.mkdir(mode=DIR_MODE, exist_ok=True)
        if _same_directory(path.parent, self.quarantine):
            return path
        stem = path.name.removesuffix(SEALED_SUFFIX)
        counter = 1
        while True:
            suffix = "" if counter == 1 else f"-{counter}"
            target = self.quarantine / f"{stem}{suffix}{SEALED_SUFFIX}"
            try:
                _move_without_replacing(path, target)
            except FileExistsError:
                counter += 1
                continue
            # A hard link keeps the mode the file had in the spool copy; keep it private.
            os.chmod(target, FILE_MODE)
            durable.fsync_directory(self.quarantine)
            return target

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

    def _read_opened(self) -> set[str]:
        try:
            with open(self.out / OPENED_RECORD, encoding="ascii", errors="replace") as record:
                return {line.strip() for line in record if line.strip()}
        except FileNotFoundError:
            return set()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class Opener:
    """Opens spool files one at a time into the workspace, filling in the report."""

    def __init__(
        self,
        spool: Path,
        key: PrivateKey,
        workspace: Workspace,
        progress: Progress,
        report: Report,
        *,
        remove: bool,
    ) -> None:
        self._spool_dir = spool if spool.is_dir() else spool.parent
        self._key = key
        self._workspace = workspace
        self._progress = progress
        self._report = report
        self._remove = remove

    def handle(self, name: str) -> None:
        path = self._spool_dir / name
        if name in self._workspace.opened:
            self._report.already_opened += 1
            if self._remove:
                self._remove_spool_file(path)
            return
        try:
            size = os.stat(path).st_size
        except OSError as err:
            self._unreadable(name, err)
            return
        self._progress.start_file(name, size)
        try:
            unpacked, folder = self._open_into_workspace(path)
        except SpoolFileError as err:
            self._quarantine(path, err)
            return
        except SpoolUnreadable as err:
            self._unreadable(name, err.__cause__)
            return
        except OSError as err:
            raise OutputUnusable(
                f"writing into {self._workspace.out} failed ({err.strerror}) while opening "
                f"{name}; nothing of it was kept. Fix the output folder (free space?) and run "
                "again: files already opened are skipped"
            ) from None
        try:
            self._workspace.record_opened(name)
        except OSError as err:
            raise OutputUnusable(
                f"{name} was opened into {folder} but recording it in "
                f"{self._workspace.out / OPENED_RECORD} failed ({err.strerror}); fix the output "
                "folder and run again (it will be opened once more, into a new folder)"
            ) from None
        shown = str(folder.relative_to(self._workspace.out))
        self._report.opened.append(shown)
        if unpacked.cut is not None:
            self._report.partial.append(shown)
        if folder.parent != self._workspace.out:
            self._report.sources[folder.parent.name] = refresh_order(folder.parent)
        count = len(unpacked.attachments)
        kind = "" if unpacked.source is None else f", {kind_name(unpacked.source.kind)}"
        self._progress.finish_file(
            "opened",
            f"{shown} ({count} file{'' if count == 1 else 's'}{kind}, "
            f"{human_size(unpacked.total_bytes)}){describe_cut(unpacked)}",
        )
        if self._remove:
            self._remove_spool_file(path)

    def _open_into_workspace(self, path: Path) -> tuple[Unpacked, Path]:
        incoming = self._workspace.new_incoming()
        try:
            try:
                raw = open(path, "rb")
            except OSError as err:
                raise SpoolUnreadable(str(path)) from err
            with raw:
                reader = _ReportingReader(raw, self._progress.advance)
                payload = open_payload(cast(BinaryIO, reader), self._key)
                chunks = prefetched(payload)
                try:
                    events = read_payload(chunks, payload.version)
                    unpacked = unpack(events, incoming, path.name, reader.report)
                finally:
                    # Stop the decrypting thread before the file it reads is closed.
                    chunks.close()
            parent = None
            if unpacked.source is not None:
                parent = self._source_folder(unpacked.source)
            folder = self._workspace.publish(
                incoming, unpacked.day, path.name, parent, partial=unpacked.cut is not None
            )
        except BaseException:
            # Ctrl-C, a refused file or a full disk: nothing half-written stays behind.
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        return unpacked, folder

    def _source_folder(self, source: SourceIdentity) -> Path:
        try:
            return folder_for(self._workspace.out, source)
        except SourceFolderError as err:
            raise OutputUnusable(f"{err}; nothing of this submission was kept") from None

    def _quarantine(self, path: Path, err: SpoolFileError) -> None:
        advice = ADVICE.get(type(err), "it could not be opened")
        try:
            target = self._workspace.move_to_quarantine(path)
            where = "left in quarantine" if target == path else f"moved to {target}"
        except OSError as move_err:
            where = f"left at {path}: moving it to quarantine failed ({move_err.strerror})"
        self._report.quarantined.append((path.name, err.cause))
        self._progress.finish_file("quarantined", f"{path.name} — {err.cause}: {advice} ({where})")

    def _unreadable(self, name: str, err: BaseException | None) -> None:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else "read error"
        self._report.unreadable.append(name)
        self._progress.note(
            f"could not read {name} ({reason}); it was left where it is. Check the disk or "
            "copy it again, then run again"
        )

    def _remove_spool_file(self, path: Path) -> None:
        try:
            os.unlink(path)
            durable.fsync_directory(path.parent)
        except FileNotFoundError:
            return
        except OSError as err:
            self._progress.note(f"could not remove {path} ({err.strerror}); remove it by hand")
            return
        self._report.removed += 1


class _ReportingReader:
    """A spool file reader that reports how far it got and tells read errors apart.

    An OSError while reading is the medium's fault, not the file's: it becomes
    SpoolUnreadable so it is never mistaken for an output-folder failure.
    """

    def __init__(self, raw: BinaryIO, on_progress: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_progress = on_progress
        self._done = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._raw.read(size)
        except OSError as err:
            raise SpoolUnreadable(str(err)) from err
        self._done += len(data)
        return data

    def report(self) -> None:
        self._on_progress(self._done)


def describe_cut(unpacked: Unpacked) -> str:
    """`` PARTIAL: ...`` for a submission whose upload was cut off, else nothing."""
    cut = unpacked.cut
    if cut is None:
        return ""
    where = CUT_WHERE[cut.where]
    if where == "attachment":
        saved = unpacked.attachments[cut.index].saved_as
        place = f"in file {cut.index + 1} ({saved}) after {human_size(cut.received)}"
    elif where == "message":
        place = f"in the message after {human_size(cut.received)}"
    else:
        place = f"after {len(unpacked.attachments)} whole file(s)"
    return f" PARTIAL: upload cut off {place}"


def format_summary(report: Report, out: Path) -> str:
    rows: list[tuple[str, str]] = [("opened", str(len(report.opened)))]
    if report.partial:
        rows.append(("  of which PARTIAL (cut off)", str(len(report.partial))))
    rows.append(("skipped, already opened", str(report.already_opened)))
    if report.removed:
        rows.append(("spool files removed", str(report.removed)))
    if report.parts:
        rows.append(("skipped, unfinished .part", str(report.parts)))
    if report.ignored:
        rows.append(("ignored, unexpected name", str(len(report.ignored))))
    rows.append(("quarantined", str(len(report.quarantined))))
    for cause, count in sorted(Counter(c for _, c in report.quarantined).items()):
        rows.append((f"  {cause}", str(count)))
    if report.unreadable:
        rows.append(("could not read", str(len(report.unreadable))))
    width = max(len(label) for label, _ in rows)
    lines = [f"Summary ({out})"] + [f"  {label:<{width}}  {value:>5}" for label, value in rows]
    for name, order in sorted(report.sources.items()):
        lines.append(f"Source {name}: {len(order)} submission(s), in order: {', '.join(order)}")
    if report.sources:
        lines.append(
            "Submissions sent with the same codename are in one source folder; answer one "
            "with `sealdrop reply SOURCE_FOLDER --out DIR`."
        )
    if report.partial:
        lines.append(
            "PARTIAL submissions hold what arrived before the source's connection broke "
            "(their folders end in _PARTIAL, the cut file in .partial; manifest.json says "
            "where the cut came). The source may have sent everything again in another "
            "submission."
        )
    if report.stale_incoming:
        lines.append(
            f"Removed {report.stale_incoming} unfinished folder(s) left by an interrupted run."
        )
    if report.parts:
        lines.append(
            ".part files are uploads still in progress (or abandoned) on the server; copy "
            "them again once they end in .sealed."
        )
    for name in report.ignored:
        lines.append(
            f"Ignored {name!r}: spool files are named <32 hex digits>.sealed; give it back "
            "its original name to open it."
        )
    if report.quarantined:
        lines.append(f"Quarantined files are in {out / QUARANTINE_DIR}; see the reasons above.")
    return "\n".join(lines)


def _say(message: str) -> None:
    print(f"sealdrop open: {message}", file=sys.stderr)


def _same_directory(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _move_without_replacing(source: Path, target: Path) -> None:
    """Move `source` to `target`; FileExistsError if `target` exists. Never overwrites.

    A hard link fails on an existing name, unlike rename; across file systems
    (a USB stick) the bytes are copied into a file created with O_EXCL.
    """
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        _copy_exclusive(source, target)
    os.unlink(source)


def _copy_exclusive(source: Path, target: Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb", closefd=False) as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
            dst.flush()
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(target)
        raise
    os.close(fd)
