"""Encoding a submission as records, in one pass, as the upload arrives.

The order is fixed: SUBMISSION (the day), RECEIPT, SOURCE (in format version 2
always, in 3 if given), LANGUAGE (if given), MESSAGE records, then per attachment ATTACHMENT_BEGIN,
ATTACHMENT_DATA*, ATTACHMENT_END; one MANIFEST; PADDING up to the Padmé length.
An upload the client cut off ends with a CUT record before MANIFEST (in an open
attachment, in place of its ATTACHMENT_END). Pure: the bytes
go to a sink, which seals them (storage/, replies.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from .layout import (
    ATTACHMENT_BEGIN,
    ATTACHMENT_DATA,
    ATTACHMENT_END,
    CUT,
    CUT_BETWEEN_PARTS,
    CUT_BODY,
    CUT_IN_ATTACHMENT,
    CUT_IN_MESSAGE,
    LANGUAGE,
    MANIFEST,
    MANIFEST_ENTRY,
    MAX_MEDIA_TYPE_BYTES,
    MAX_NAME_BYTES,
    MAX_PADDING_BODY,
    MAX_RECORD_BODY,
    MESSAGE,
    PADDING,
    RECEIPT,
    RECORD_HEADER,
    SOURCE,
    SUBMISSION,
    U16,
    U32,
    AttachmentSummary,
    UploadCut,
    is_day,
    is_language_tag,
    is_receipt,
    padded_payload_length,
)
from .source import SourceIdentity


class PayloadWriter:
    """Encodes a submission as records and hands the bytes to `sink`, in one pass."""

    def __init__(
        self,
        sink: Callable[[bytes | memoryview], object],
        day: str,
        receipt: str,
        source: SourceIdentity | None = None,
        language: str | None = None,
    ) -> None:
        """`source` given adds a SOURCE record: seal it as version 2 or 3 (crypto.py).
        `language` given (a BCP 47 tag) adds a LANGUAGE record after it.

        `sink` may be handed a view of the caller's buffer, valid only during the call.
        """
        self._sink = sink
        self._written = 0
        self._attachments: list[AttachmentSummary] = []
        self._current: hashlib._Hash | None = None
        self._current_size = 0
        self._message_bytes = 0
        self._cut = False
        self._closed = False
        # Checked here with the reader's own rules: a writer that accepted them would
        # produce a file no reader can open, and nobody would know until the review.
        if not is_day(day):
            raise ValueError("the day must be a calendar date written YYYY-MM-DD")
        if not is_receipt(receipt.encode("ascii", "replace")):
            raise ValueError("the receipt must be 1 to 64 ASCII digits and hyphens")
        if source is not None:
            source.check()
        if language is not None and not is_language_tag(language.encode("ascii", "replace")):
            raise ValueError("the language must be a BCP 47 tag like 'sw' or 'zh-Hans'")
        self._record(SUBMISSION, day.encode("ascii"))
        self._record(RECEIPT, receipt.encode("ascii"))
        if source is not None:
            self._record(SOURCE, source.encode())
        if language is not None:
            self._record(LANGUAGE, language.encode("ascii"))

    @property
    def attachments(self) -> list[AttachmentSummary]:
        return list(self._attachments)

    @property
    def holds_content(self) -> bool:
        """True once a byte of message text or attachment data was written."""
        return bool(self._message_bytes or self._current_size) or any(
            a.size for a in self._attachments
        )

    def message(self, text: str) -> None:
        """Add message text; may be called several times, pieces are concatenated."""
        self._require_uncut()
        if self._attachments or self._current is not None:
            raise RuntimeError("the message must come before any attachment")
        encoded = text.encode("utf-8", "replace")
        self._message_bytes += len(encoded)
        start = 0
        while start < len(encoded):
            # Each record must decode on its own: never split a multi-byte character.
            end = min(start + MAX_RECORD_BODY, len(encoded))
            while end < len(encoded) and encoded[end] & 0xC0 == 0x80:
                end -= 1
            self._record(MESSAGE, encoded[start:end])
            start = end

    def begin_attachment(self, name: str, media_type: str) -> None:
        self._require_uncut()
        if self._current is not None:
            raise RuntimeError("the previous attachment is still open")
        name_bytes = _truncate_utf8(name.encode("utf-8", "replace"), MAX_NAME_BYTES)
        media = media_type.encode("ascii", "replace")[:MAX_MEDIA_TYPE_BYTES]
        body = U16.pack(len(name_bytes)) + name_bytes + U16.pack(len(media)) + media
        self._record(ATTACHMENT_BEGIN, body)
        self._current = hashlib.sha256()
        self._current_size = 0

    def attachment_data(self, data: bytes | bytearray | memoryview) -> None:
        self._require_uncut()
        if self._current is None:
            raise RuntimeError("no attachment is open")
        if isinstance(data, bytes) and 0 < len(data) <= MAX_RECORD_BODY:
            # The common case (an upload read in pieces of up to 1 MiB): no copy at all.
            # Empty data must write nothing: the reader refuses empty ATTACHMENT_DATA.
            self._current.update(data)
            self._current_size += len(data)
            self._record(ATTACHMENT_DATA, data)
            return
        with memoryview(data) as raw, raw.cast("B") as view:
            for start in range(0, len(view), MAX_RECORD_BODY):
                piece = view[start : start + MAX_RECORD_BODY]
                self._current.update(piece)
                self._current_size += len(piece)
                self._record(ATTACHMENT_DATA, piece)

    def end_attachment(self) -> AttachmentSummary:
        self._require_uncut()
        if self._current is None:
            raise RuntimeError("no attachment is open")
        summary = self._close_attachment()
        self._record(ATTACHMENT_END, b"")
        return summary

    def cut(self, in_message: bool = False) -> UploadCut:
        """Record that the upload ended early; only `close` may follow.

        Inside an open attachment the CUT record takes its ATTACHMENT_END's place and
        the attachment keeps what arrived (the manifest lists that). `in_message`: the
        body ended inside the message, whose text so far was written. Otherwise the cut
        came between parts. Refused (ValueError) for a payload that holds no content,
        which must not be kept at all.
        """
        self._require_uncut()
        if self._closed:
            raise RuntimeError("payload already closed")
        if not self.holds_content:
            raise ValueError("nothing arrived: a cut upload with no content is not kept")
        if self._current is not None:
            cut = UploadCut(CUT_IN_ATTACHMENT, len(self._attachments), self._current_size)
            self._close_attachment()
        elif in_message:
            if self._attachments or not self._message_bytes:
                raise RuntimeError("no message is being written")
            cut = UploadCut(CUT_IN_MESSAGE, 0, self._message_bytes)
        else:
            cut = UploadCut(CUT_BETWEEN_PARTS, len(self._attachments), 0)
        self._cut = True
        self._record(CUT, CUT_BODY.pack(cut.where, cut.received))
        return cut

    def close(self) -> None:
        """Write the closing MANIFEST record and the padding."""
        if self._current is not None:
            raise RuntimeError("an attachment is still open")
        if self._closed:
            raise RuntimeError("payload already closed")
        self._closed = True
        entries = b"".join(MANIFEST_ENTRY.pack(a.size, a.sha256) for a in self._attachments)
        self._record(MANIFEST, U32.pack(len(self._attachments)) + entries)
        self._pad_to(padded_payload_length(self._written))

    def _close_attachment(self) -> AttachmentSummary:
        assert self._current is not None
        summary = AttachmentSummary(self._current_size, self._current.digest())
        self._attachments.append(summary)
        self._current = None
        self._current_size = 0
        return summary

    def _require_uncut(self) -> None:
        if self._cut:
            raise RuntimeError("the upload was cut: only close() may follow")

    def _pad_to(self, target: int) -> None:
        remaining = target - self._written
        while remaining > 0:
            body = min(remaining - RECORD_HEADER.size, MAX_PADDING_BODY)
            if 0 < remaining - RECORD_HEADER.size - body < RECORD_HEADER.size:
                body -= RECORD_HEADER.size  # leave room for one more whole record
            self._sink(RECORD_HEADER.pack(PADDING, body))
            self._written += RECORD_HEADER.size
            zeros = bytes(min(body, MAX_RECORD_BODY))
            left = body
            while left:
                piece = zeros[: min(left, len(zeros))]
                self._sink(piece)
                left -= len(piece)
            self._written += body
            remaining = target - self._written

    def _record(self, record_type: int, body: bytes | memoryview) -> None:
        self._sink(RECORD_HEADER.pack(record_type, len(body)))
        if body:
            # A view goes on as it is: copying each attachment piece into a fresh
            # megabyte would cost the copy and, for large pieces, its page faults.
            self._sink(body)
        self._written += RECORD_HEADER.size + len(body)


def _truncate_utf8(data: bytes, limit: int) -> bytes:
    return data[:limit].decode("utf-8", "ignore").encode("utf-8")
