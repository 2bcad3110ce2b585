"""Opening one spool file into the output folder: decrypt, verify, unpack, file it.

A file that fails any check is refused (``ADVICE`` says why, in words for the
reviewer, and what to do) and, like one the operating system cannot read, left
in the spool exactly as it was: with a team and a backup key, a file this key
cannot open is routine and the next reviewer must still find it. A copy of a
file already opened (however renamed) is not unpacked twice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from nacl.public import PrivateKey

from .. import durable
from ..crypto import (
    HEADER_BYTES,
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
from ..languages import describe_tag
from ..records.layout import MalformedPayload
from ..records.reader import read_payload
from ..records.source import SourceIdentity
from ..units import human_size
from .prefetch import prefetched
from .progress import Progress
from .safe_names import printable_name
from .sources import (
    SourceFolderError,
    folder_for,
    kind_name,
    language_to_answer_in,
    refresh_order,
)
from .summary import Report, describe_cut
from .unpack import Unpacked, unpack
from .workspace import OutputUnusable, Workspace, short_id

# Why a file was refused, in words for the reviewer, with what to do about it.
ADVICE: dict[type[SpoolFileError], str] = {
    NotASealdropFile: (
        "it does not start with sealdrop's marker, so it is not a spool file; "
        "check what was copied into the spool folder"
    ),
    UnsupportedVersion: (
        "it was written in a newer sealdrop format; upgrade sealdrop on this machine "
        "and open the spool again"
    ),
    WrongKey: (
        "it is not sealed to this key: it is for other reviewer keys (a colleague's, "
        "the backup key, or an older key of yours), or its header was damaged; open the "
        "spool with one of those keys"
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


class SpoolUnreadable(Exception):
    """Reading a spool file failed in the operating system (I/O error, permission).

    The file itself may be fine; like every file not opened, it is left where it is. Never
    shown as such: the opener reports the file as unreadable, with the OS reason.
    """


@dataclass(frozen=True)
class _Opened:
    """A spool file unpacked and published as `folder`."""

    unpacked: Unpacked
    folder: Path
    digest: str


@dataclass(frozen=True)
class _Copy:
    """A verified copy of the spool file opened before as `first`: nothing kept."""

    first: str
    digest: str


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
        shown_name = printable_name(name)
        if name in self._workspace.ledger.names:
            self._report.already_opened += 1
            self._remove_if_asked(path)
            return
        try:
            size = os.stat(path).st_size
        except OSError as err:
            self._unreadable(shown_name, err)
            return
        self._progress.start_file(shown_name, size)
        try:
            outcome = self._open_into_workspace(path)
        except SpoolFileError as err:
            self._refused(path, err)
            return
        except SpoolUnreadable as err:
            self._unreadable(shown_name, err.__cause__)
            return
        except OSError as err:
            raise OutputUnusable(
                f"writing into {self._workspace.out} failed ({err.strerror}) while opening "
                f"{shown_name}; nothing of it was kept. Fix the output folder (free space?) "
                "and run again: files already opened are skipped"
            ) from None
        self._record(name, outcome)
        if isinstance(outcome, _Copy):
            self._report.copies.append((name, outcome.first))
            self._progress.finish_file(
                "not opened again", f"{shown_name} is a copy of {printable_name(outcome.first)}"
            )
        else:
            self._report_opened(name, outcome)
        self._remove_if_asked(path)

    def _open_into_workspace(self, path: Path) -> _Opened | _Copy:
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
            digest = reader.file_id()
            first = self._workspace.ledger.digests.get(digest)
            if first is not None:
                shutil.rmtree(incoming)
                return _Copy(first, digest)
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
        return _Opened(unpacked, folder, digest)

    def _record(self, name: str, outcome: _Opened | _Copy) -> None:
        try:
            self._workspace.ledger.record(name, outcome.digest)
        except OSError as err:
            where = "" if isinstance(outcome, _Copy) else f" into {outcome.folder}"
            raise OutputUnusable(
                f"{printable_name(name)} was opened{where} but recording it in "
                f"{self._workspace.ledger.path} failed ({err.strerror}); fix the output "
                "folder and run again (it will be opened once more, into a new folder)"
            ) from None

    def _report_opened(self, name: str, opened: _Opened) -> None:
        shown = str(opened.folder.relative_to(self._workspace.out))
        # A folder is named after the server's hex name; say which file it came from
        # when that name was lost in a copy.
        origin = "" if short_id(name) in name else f" from '{printable_name(name)}'"
        self._report.opened.append(shown)
        if opened.unpacked.cut is not None:
            self._report.partial.append(shown)
        unpacked = opened.unpacked
        if unpacked.language is not None:
            self._report.languages[unpacked.language] += 1
        if opened.folder.parent != self._workspace.out:
            source = opened.folder.parent
            self._report.sources[source.name] = refresh_order(source)
            language = language_to_answer_in(source)
            if language is not None:
                self._report.source_languages[source.name] = language
        count = len(unpacked.attachments)
        kind = "" if unpacked.source is None else f", {kind_name(unpacked.source.kind)}"
        language = "" if unpacked.language is None else f", {describe_tag(unpacked.language)}"
        self._progress.finish_file(
            "opened",
            f"{shown} ({count} file{'' if count == 1 else 's'}{kind}{language}, "
            f"{human_size(unpacked.total_bytes)}){describe_cut(unpacked)}{origin}",
        )

    def _source_folder(self, source: SourceIdentity) -> Path:
        try:
            return folder_for(self._workspace.out, source)
        except SourceFolderError as err:
            raise OutputUnusable(f"{err}; nothing of this submission was kept") from None

    def _refused(self, path: Path, err: SpoolFileError) -> None:
        advice = ADVICE.get(type(err), "it could not be opened")
        self._report.refused.append((path.name, err.cause))
        self._progress.finish_file(
            "not opened",
            f"{printable_name(path.name)} — {err.cause}: {advice} (left in the spool)",
        )

    def _unreadable(self, shown_name: str, err: BaseException | None) -> None:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else "read error"
        self._report.unreadable.append(shown_name)
        self._progress.note(
            f"could not read {shown_name} ({reason}); it was left where it is. Check the disk "
            "or copy it again, then run again"
        )

    def _remove_if_asked(self, path: Path) -> None:
        if not self._remove:
            return
        try:
            os.unlink(path)
            durable.fsync_directory(path.parent)
        except FileNotFoundError:
            return
        except OSError as err:
            self._progress.note(
                f"could not remove {printable_name(str(path))} ({err.strerror}); remove it by hand"
            )
            return
        self._report.removed += 1


class _ReportingReader:
    """A spool file reader that reports how far it got, remembers what identifies the
    file, and tells read errors apart.

    An OSError while reading is the medium's fault, not the file's: it becomes
    SpoolUnreadable so it is never mistaken for an output-folder failure.
    """

    def __init__(self, raw: BinaryIO, on_progress: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_progress = on_progress
        self._done = 0
        self._head = bytearray()

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._raw.read(size)
        except OSError as err:
            raise SpoolUnreadable(str(err)) from err
        if len(self._head) < HEADER_BYTES:
            self._head += data[: HEADER_BYTES - len(self._head)]
        self._done += len(data)
        return data

    def report(self) -> None:
        self._on_progress(self._done)

    def file_id(self) -> str:
        """What tells this spool file from every other, once it was read in full.

        Its first 113 bytes hold a sealed file key, drawn at random for each file,
        and every chunk is authenticated under that key: two files that verify with
        the same header and size are copies of one sealed submission. (Hashing all
        the bytes instead slowed opening by a third: docs/PERFORMANCE.md.)
        """
        identity = hashlib.sha256(bytes(self._head))
        identity.update(self._done.to_bytes(8, "big"))
        return identity.hexdigest()
