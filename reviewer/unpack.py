"""Write one decrypted submission's events into a folder: message, files, manifest.

The folder is a private temporary one; the caller renames it into view only
after this returns, because until PayloadEnd nothing read is proven complete.
Attachments go to disk piece by piece as they are decrypted, so memory stays at
a chunk or two whatever their size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import durable
from ..languages import describe_tag
from ..records.events import (
    AttachmentBytes,
    AttachmentDone,
    AttachmentStart,
    Day,
    Event,
    MessageText,
    PayloadEnd,
    Receipt,
    SkippedRecord,
    SourceLanguage,
)
from ..records.layout import (
    CUT_BETWEEN_PARTS,
    CUT_IN_ATTACHMENT,
    CUT_IN_MESSAGE,
    MalformedPayload,
    UploadCut,
)
from ..records.source import FIRST_CONTACT, SourceIdentity
from .safe_names import contained_path, safe_name, unique_name

MESSAGE_FILE = "message.txt"
FILES_DIR = "files"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
# The ending of a file whose upload was cut off: it holds only the bytes that arrived.
PARTIAL_SUFFIX = ".partial"
CUT_WHERE = {
    CUT_IN_MESSAGE: "message",
    CUT_IN_ATTACHMENT: "attachment",
    CUT_BETWEEN_PARTS: "between parts",
}

FILE_MODE = 0o600
DIR_MODE = 0o700
# O_EXCL + O_NOFOLLOW: nothing already at a name is ever reused or written through.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class SavedAttachment:
    index: int
    original_name: str
    saved_as: str
    media_type: str
    size: int
    sha256: str
    # The upload was cut inside this file: it holds only its first `size` bytes.
    partial: bool = False


@dataclass(frozen=True)
class Unpacked:
    """What was written for one submission."""

    day: str
    receipt: str
    message_bytes: int
    attachments: tuple[SavedAttachment, ...]
    skipped: tuple[SkippedRecord, ...]
    # Format version 2 only: whose codename sent it (reviewer/sources.py files it).
    source: SourceIdentity | None = None
    # The upload was cut off: this is what arrived before the cut (records.UploadCut).
    cut: UploadCut | None = None
    # The language of the pages the source wrote through (records.LANGUAGE), if recorded.
    language: str | None = None

    @property
    def total_bytes(self) -> int:
        return self.message_bytes + sum(a.size for a in self.attachments)


def unpack(
    events: Iterable[Event],
    folder: Path,
    spool_name: str,
    after_event: Callable[[], None] = lambda: None,
) -> Unpacked:
    """Write the submission into the empty `folder`; fsync everything before returning.

    Raises whatever the event stream raises (SpoolFileError and subclasses) and
    OSError from the disk; the caller discards the folder in either case.
    """
    writer = _FolderWriter(folder)
    try:
        result = writer.consume(events, after_event)
        writer.write_manifest(result, spool_name)
        writer.sync()
    finally:
        writer.close()
    return result


@dataclass
class _Collected:
    """What the events of one submission said, gathered until PayloadEnd."""

    day: str = ""
    receipt: str = ""
    source: SourceIdentity | None = None
    language: str | None = None
    message_bytes: int = 0
    saved: list[SavedAttachment] = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)
    current: AttachmentStart | None = None
    current_name: str = ""
    cut: UploadCut | None = None

    def attachment_done(self, done: AttachmentDone) -> None:
        current = self.current
        assert current is not None and current.index == done.index
        self.saved.append(
            SavedAttachment(
                index=done.index,
                original_name=current.name,
                saved_as=f"{FILES_DIR}/{self.current_name}",
                media_type=current.media_type,
                size=done.size,
                sha256=done.sha256.hex(),
                partial=self.cut is not None,
            )
        )
        self.current = None

    def result(self, cut: UploadCut | None) -> Unpacked:
        return Unpacked(
            self.day,
            self.receipt,
            self.message_bytes,
            tuple(self.saved),
            tuple(self.skipped),
            self.source,
            cut,
            self.language,
        )


class _FolderWriter:
    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._files_dir = folder / FILES_DIR
        os.mkdir(self._files_dir, DIR_MODE)
        os.chmod(self._files_dir, DIR_MODE)
        self._message_fd: int | None = _create(folder / MESSAGE_FILE)
        self._attachment_fd: int | None = None
        self._taken: set[str] = set()

    def consume(self, events: Iterable[Event], after_event: Callable[[], None]) -> Unpacked:
        got = _Collected()
        for event in events:
            if isinstance(event, PayloadEnd):
                return got.result(event.cut)
            self._take(event, got)
            after_event()
        # read_payload always ends with PayloadEnd or raises; never trust that blindly.
        raise MalformedPayload("the payload ended without its closing records")

    def _take(self, event: Event, got: _Collected) -> None:
        """Write out or note one event before PayloadEnd."""
        if isinstance(event, AttachmentBytes):
            assert self._attachment_fd is not None
            durable.write_all(self._attachment_fd, event.data)
        elif isinstance(event, MessageText):
            assert self._message_fd is not None
            encoded = event.text.encode("utf-8")
            durable.write_all(self._message_fd, encoded)
            got.message_bytes += len(encoded)
        elif isinstance(event, AttachmentStart):
            got.current = event
            got.current_name = self._open_attachment(event)
        elif isinstance(event, AttachmentDone):
            self._close_attachment()
            got.attachment_done(event)
        elif isinstance(event, UploadCut):
            got.cut = event
            if got.current is not None:
                got.current_name = self._mark_partial(got.current_name)
        elif isinstance(event, Day):
            got.day = event.day
        elif isinstance(event, Receipt):
            got.receipt = event.receipt
        elif isinstance(event, SourceIdentity):
            got.source = event
        elif isinstance(event, SourceLanguage):
            got.language = event.tag
        elif isinstance(event, SkippedRecord):
            got.skipped.append(event)

    def write_manifest(self, result: Unpacked, spool_name: str) -> None:
        manifest = {
            "sealdrop_manifest": MANIFEST_VERSION,
            "note": (
                "original_name and declared_media_type were sent by the source's browser "
                "or by whoever made the upload: they are untrusted data. The files were "
                "verified against the sealed manifest (size and sha256)."
            ),
            "spool_file": spool_name,
            "receipt": result.receipt,
            "day": result.day,
            "source": _describe_source(result.source),
            "language": _describe_language(result.language),
            "partial": _describe_cut(result.cut),
            "message": MESSAGE_FILE,
            "message_bytes": result.message_bytes,
            "attachments": [
                {
                    "index": a.index,
                    "original_name": a.original_name,
                    "saved_as": a.saved_as,
                    "declared_media_type": a.media_type,
                    "size": a.size,
                    "sha256": a.sha256,
                    **({"partial": True} if a.partial else {}),
                }
                for a in result.attachments
            ],
            "skipped_optional_records": [
                {"type": f"0x{s.record_type:02x}", "length": s.length} for s in result.skipped
            ],
        }
        # ensure_ascii: control and bidi characters in names appear as \\uXXXX
        # escapes, so viewing the manifest in a terminal cannot be hijacked by them.
        text = json.dumps(manifest, indent=2, ensure_ascii=True) + "\n"
        fd = _create(self._folder / MANIFEST_FILE)
        try:
            durable.write_all(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync(self) -> None:
        assert self._message_fd is not None
        os.fsync(self._message_fd)
        durable.fsync_directory(self._files_dir)
        durable.fsync_directory(self._folder)

    def close(self) -> None:
        for fd in (self._message_fd, self._attachment_fd):
            if fd is not None:
                os.close(fd)
        self._message_fd = self._attachment_fd = None

    def _open_attachment(self, start: AttachmentStart) -> str:
        name = unique_name(safe_name(start.name, start.index), self._taken)
        path = contained_path(self._files_dir, name)
        self._attachment_fd = _create(path)
        return name

    def _mark_partial(self, name: str) -> str:
        """Rename the open attachment's file to end in `.partial`; return the new name."""
        partial = unique_name(name + PARTIAL_SUFFIX, self._taken)
        os.rename(contained_path(self._files_dir, name), contained_path(self._files_dir, partial))
        return partial

    def _close_attachment(self) -> None:
        fd = self._attachment_fd
        assert fd is not None
        self._attachment_fd = None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _describe_cut(cut: UploadCut | None) -> dict[str, object] | None:
    if cut is None:
        return None  # the whole upload arrived
    where = CUT_WHERE[cut.where]
    return {
        "note": (
            "PARTIAL: the source's connection broke before the upload ended. This holds "
            "only what arrived before the cut; what the source meant to send after it is "
            "unknown."
        ),
        "cut_in": where,
        **(
            {"attachment_index": cut.index, "bytes_received": cut.received}
            if cut.where == CUT_IN_ATTACHMENT
            else {"bytes_received": cut.received}
            if cut.where == CUT_IN_MESSAGE
            else {"attachments_complete": cut.index}
        ),
    }


def _describe_language(tag: str | None) -> dict[str, str] | None:
    if tag is None:
        return None  # sent before sealdrop recorded the pages' language
    return {
        "tag": tag,
        "name": describe_tag(tag),
        "note": "The language of the pages the source wrote through; answer in it.",
    }


def _describe_source(source: SourceIdentity | None) -> dict[str, str] | None:
    if source is None:
        return None  # format version 1: sent without a codename, cannot be answered
    return {
        "kind": "first contact" if source.kind == FIRST_CONTACT else "follow-up",
        "reply_public_key": source.reply_public_key.hex(),
        "mailbox_id": source.mailbox_id.hex(),
    }


def _create(path: Path) -> int:
    fd = os.open(path, _CREATE_FLAGS, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # exact, whatever the umask
    return fd
