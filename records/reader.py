"""Reading a decrypted payload as a stream of events, checking every format rule.

Records are parsed as the chunks arrive, so an attachment of any size is never
held whole. The last event, PayloadEnd, comes only once the manifest and the
padding were checked: everything before it is unverified until then. Types
0x80-0xFE are optional (skipped, but for LANGUAGE, which is checked and read); any
other unknown type is refused. A CUT
record (an upload cut off) is checked against its place and what precedes it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Generator, Iterable, Iterator

from ..crypto import RECIPIENTS_VERSION, SOURCE_VERSION
from .bytequeue import ByteQueue
from .events import (
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
from .layout import (
    ATTACHMENT_BEGIN,
    ATTACHMENT_DATA,
    ATTACHMENT_END,
    CUT,
    CUT_BETWEEN_PARTS,
    CUT_BODY,
    CUT_IN_ATTACHMENT,
    CUT_IN_MESSAGE,
    FIRST_OPTIONAL_TYPE,
    LANGUAGE,
    MANIFEST,
    MANIFEST_ENTRY,
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
    MalformedPayload,
    UploadCut,
    is_day,
    is_language_tag,
    is_receipt,
    padded_payload_length,
)
from .source import REPLY_KEY_BYTES, SOURCE_BODY_BYTES, SourceIdentity


def read_payload(chunks: Iterable[bytes], version: int) -> Iterator[Event]:
    """Parse decrypted payload chunks into events, checking every format rule.

    `version` is the format version the file's header declares: for a spool file
    the `version` of the crypto.PayloadChunks the chunks come from (read with the
    header, before any chunk). Version 2 payloads have a SOURCE record right after
    RECEIPT; version 1 payloads have none; in version 3 it is optional (there, or
    nowhere).

    The last event is PayloadEnd; it comes only after the manifest was checked
    against the attachments and the padding against its rules. Anything before
    it is unverified until then.
    """
    queue = ByteQueue(chunks)
    yield from _read_opening(queue, version)
    body = _Body(queue, source_allowed=version == RECIPIENTS_VERSION)
    yield from body.read()
    _check_padding(queue)
    yield PayloadEnd(tuple(body.computed), body.cut)


def _read_opening(queue: ByteQueue, version: int) -> Iterator[Event]:
    """SUBMISSION, RECEIPT and, in version 2, SOURCE: always first, in this order."""
    record_type, body = _next_small_record(queue)
    if record_type != SUBMISSION:
        raise MalformedPayload("the payload does not start with a SUBMISSION record")
    yield Day(_decode_day(body))
    record_type, body = _next_small_record(queue)
    if record_type != RECEIPT:
        raise MalformedPayload("the SUBMISSION record is not followed by a RECEIPT record")
    yield Receipt(_decode_receipt(body))
    if version == SOURCE_VERSION:
        record_type, body = _next_small_record(queue)
        if record_type != SOURCE:
            raise MalformedPayload("a version 2 payload has no SOURCE record after RECEIPT")
        yield _decode_source(body)


class _Body:
    """The records after the opening ones, up to MANIFEST: the content, and what the
    order rules need to remember of the records already read."""

    def __init__(self, queue: ByteQueue, *, source_allowed: bool) -> None:
        self._queue = queue
        self.computed: list[AttachmentSummary] = []
        self.cut: UploadCut | None = None
        self._seen_attachment = False
        self._message_bytes = 0
        # In version 3 the SOURCE record may be the third record, and nowhere else.
        self._source_allowed = source_allowed
        # LANGUAGE may stand once, before the message and any attachment (where the writer
        # puts it); other optional records may come before it.
        self._language_allowed = True

    def read(self) -> Iterator[Event]:
        """Every record up to MANIFEST, which is checked against the attachments read."""
        while True:
            record_type, length = _next_header(self._queue)
            if self.cut is not None and record_type != MANIFEST:
                raise MalformedPayload(f"record type 0x{record_type:02x} after a CUT record")
            if record_type in (MESSAGE, ATTACHMENT_BEGIN, CUT, MANIFEST):
                self._language_allowed = False
            if record_type == MANIFEST:
                _check_manifest(_small_body(self._queue, length), self.computed)
                return
            yield from self._record(record_type, length)
            self._source_allowed = False

    def _record(self, record_type: int, length: int) -> Iterator[Event]:
        if record_type == SOURCE and self._source_allowed:
            yield _decode_source(_small_body(self._queue, length))
        elif record_type == LANGUAGE:
            if not self._language_allowed:
                raise MalformedPayload("a LANGUAGE record after the content, or a second one")
            self._language_allowed = False
            yield _decode_language(_small_body(self._queue, length))
        elif record_type == MESSAGE:
            if self._seen_attachment:
                raise MalformedPayload("a MESSAGE record follows an attachment")
            body = _small_body(self._queue, length)
            self._message_bytes += len(body)
            yield MessageText(_decode_text(body, "message"))
        elif record_type == ATTACHMENT_BEGIN:
            yield from self._attachment(length)
        elif record_type == CUT:
            body = _small_body(self._queue, length)
            self.cut = _check_cut(body, None, 0, self._message_bytes, self.computed)
            yield self.cut
        elif record_type >= FIRST_OPTIONAL_TYPE and record_type != 0xFF:
            for _ in self._queue.take_streamed(length):
                pass
            yield SkippedRecord(record_type, length)
        else:
            raise MalformedPayload(f"unexpected record type 0x{record_type:02x}")

    def _attachment(self, length: int) -> Iterator[Event]:
        self._seen_attachment = True
        start = _decode_attachment_start(len(self.computed), _small_body(self._queue, length))
        yield start
        summary, cut_body = yield from _read_attachment_body(self._queue)
        self.computed.append(summary)
        if cut_body is not None:
            self.cut = _check_cut(
                cut_body, start.index, summary.size, self._message_bytes, self.computed
            )
            yield self.cut
        yield AttachmentDone(start.index, summary.size, summary.sha256)


def _read_attachment_body(
    queue: ByteQueue,
) -> Generator[Event, None, tuple[AttachmentSummary, bytes | None]]:
    """Read an attachment's data up to its end: ATTACHMENT_END, or a CUT record, whose
    body is returned with the summary (None when the attachment ended normally)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        record_type, length = _next_header(queue)
        if record_type == ATTACHMENT_END:
            if length:
                raise MalformedPayload("an ATTACHMENT_END record has a body")
            return AttachmentSummary(size, digest.digest()), None
        if record_type == CUT:
            return AttachmentSummary(size, digest.digest()), _small_body(queue, length)
        if record_type != ATTACHMENT_DATA:
            raise MalformedPayload(f"record type 0x{record_type:02x} inside an attachment")
        if not length or length > MAX_RECORD_BODY:
            raise MalformedPayload(f"an ATTACHMENT_DATA record of {length} bytes")
        for piece in queue.take_streamed(length):
            digest.update(piece)
            size += len(piece)
            yield AttachmentBytes(piece)


def _next_header(queue: ByteQueue) -> tuple[int, int]:
    record_type, length = RECORD_HEADER.unpack(queue.take(RECORD_HEADER.size))
    return record_type, length


def _small_body(queue: ByteQueue, length: int) -> bytes:
    if length > MAX_RECORD_BODY:
        raise MalformedPayload(f"a record of {length} bytes exceeds the {MAX_RECORD_BODY} limit")
    return queue.take(length)


def _next_small_record(queue: ByteQueue) -> tuple[int, bytes]:
    record_type, length = _next_header(queue)
    return record_type, _small_body(queue, length)


def _decode_day(body: bytes) -> str:
    text = _decode_text(body, "day")
    if not is_day(text):
        raise MalformedPayload("the SUBMISSION record does not hold a YYYY-MM-DD day")
    return text


def _decode_receipt(body: bytes) -> str:
    if not is_receipt(body):
        raise MalformedPayload("the RECEIPT record does not hold a receipt number")
    return body.decode("ascii")


def _decode_text(body: bytes, what: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload(f"the {what} is not valid UTF-8") from None


def _decode_language(body: bytes) -> SourceLanguage:
    if not is_language_tag(body):
        raise MalformedPayload("the LANGUAGE record does not hold a BCP 47 language tag")
    return SourceLanguage(body.decode("ascii"))


def _decode_source(body: bytes) -> SourceIdentity:
    if len(body) != SOURCE_BODY_BYTES:
        raise MalformedPayload(f"the SOURCE record is {len(body)} bytes, not {SOURCE_BODY_BYTES}")
    source = SourceIdentity(body[0], body[1 : 1 + REPLY_KEY_BYTES], body[1 + REPLY_KEY_BYTES :])
    try:
        source.check()
    except ValueError as err:
        raise MalformedPayload(f"the SOURCE record is invalid: {err}") from None
    return source


def _decode_attachment_start(index: int, body: bytes) -> AttachmentStart:
    try:
        (name_length,) = U16.unpack_from(body, 0)
        name = body[2 : 2 + name_length]
        (media_length,) = U16.unpack_from(body, 2 + name_length)
        media = body[4 + name_length : 4 + name_length + media_length]
    except struct.error:
        raise MalformedPayload("an ATTACHMENT_BEGIN record is cut short") from None
    if 4 + name_length + media_length != len(body) or len(media) != media_length:
        raise MalformedPayload("an ATTACHMENT_BEGIN record has the wrong length")
    if not media.isascii():
        raise MalformedPayload("an attachment's media type is not ASCII")
    return AttachmentStart(index, _decode_text(name, "attachment name"), media.decode("ascii"))


def _check_cut(
    body: bytes,
    open_attachment: int | None,
    attachment_bytes: int,
    message_bytes: int,
    computed: list[AttachmentSummary],
) -> UploadCut:
    """Decode a CUT record and check that it says what its place says.

    `open_attachment` is the index of the attachment it ends (None at the top level),
    `attachment_bytes` how much of that attachment the payload holds.
    """
    if len(body) != CUT_BODY.size:
        raise MalformedPayload(f"the CUT record is {len(body)} bytes, not {CUT_BODY.size}")
    where, received = CUT_BODY.unpack(body)
    if open_attachment is not None:
        if where != CUT_IN_ATTACHMENT or received != attachment_bytes:
            raise MalformedPayload("a CUT record inside an attachment does not describe it")
        cut = UploadCut(where, open_attachment, received)
    elif where == CUT_IN_MESSAGE:
        if computed or not message_bytes or received != message_bytes:
            raise MalformedPayload("a CUT record in the message does not follow the message")
        cut = UploadCut(where, 0, received)
    elif where == CUT_BETWEEN_PARTS:
        if received:
            raise MalformedPayload("a CUT record between parts counts received bytes")
        cut = UploadCut(where, len(computed), 0)
    else:
        raise MalformedPayload(f"a CUT record of kind 0x{where:02x} in this place")
    if not message_bytes and not any(a.size for a in computed):
        raise MalformedPayload("a CUT record in a payload that holds no content")
    return cut


def _check_manifest(body: bytes, computed: list[AttachmentSummary]) -> None:
    if len(body) < U32.size:
        raise MalformedPayload("the MANIFEST record is cut short")
    (count,) = U32.unpack_from(body, 0)
    if count != len(computed) or len(body) != U32.size + count * MANIFEST_ENTRY.size:
        raise MalformedPayload(
            f"the manifest lists {count} attachments but the payload holds {len(computed)}"
        )
    for index, actual in enumerate(computed):
        size, sha256 = MANIFEST_ENTRY.unpack_from(body, U32.size + index * MANIFEST_ENTRY.size)
        if size != actual.size or sha256 != actual.sha256:
            raise MalformedPayload(f"attachment {index} does not match its manifest entry")


def _check_padding(queue: ByteQueue) -> None:
    expected_total = padded_payload_length(queue.consumed)
    while not queue.at_end():
        record_type, length = _next_header(queue)
        if record_type != PADDING:
            raise MalformedPayload(f"record type 0x{record_type:02x} after the manifest")
        for piece in queue.take_streamed(length):
            if piece.count(0) != len(piece):
                raise MalformedPayload("padding holds non-zero bytes")
    if queue.consumed != expected_total:
        raise MalformedPayload(
            f"the payload is {queue.consumed} bytes, not the padded length {expected_total}"
        )
