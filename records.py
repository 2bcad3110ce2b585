"""The typed records inside a sealed payload: written in one pass, read as a stream.

Each record is ``type (u8) | length (u32, big-endian) | body``. The order is
fixed: one SUBMISSION record (the day), one RECEIPT record (the number the
source was shown), in format version 2 one SOURCE record (the source's reply
key and mailbox id; in version 3 at most one), MESSAGE records (the text, in pieces),
then per attachment ATTACHMENT_BEGIN, ATTACHMENT_DATA*, ATTACHMENT_END; one
MANIFEST closing record with each attachment's size and SHA-256; then PADDING
records up to the Padmé length. Types 0x80-0xFE are optional: an old reader
skips them. Any other unknown type is refused. docs/FORMAT.md is normative.

Pure like crypto.py: no files, no web, no keys.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import struct
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass

from .crypto import RECIPIENTS_VERSION, SOURCE_VERSION, VERSION, PayloadChunks, SpoolFileError

PADDING = 0x00
SUBMISSION = 0x01
MESSAGE = 0x02
ATTACHMENT_BEGIN = 0x03
ATTACHMENT_DATA = 0x04
ATTACHMENT_END = 0x05
MANIFEST = 0x06
RECEIPT = 0x07
SOURCE = 0x08
FIRST_OPTIONAL_TYPE = 0x80

# The SOURCE record's kinds: the submission that gave the codename, or one sent with it.
FIRST_CONTACT = 0x01
FOLLOW_UP = 0x02
REPLY_KEY_BYTES = 32
MAILBOX_ID_BYTES = 16
_SOURCE_BODY_BYTES = 1 + REPLY_KEY_BYTES + MAILBOX_ID_BYTES
_MAILBOX_PERSON = b"sealdrop-mbox1"

RECORD_HEADER = struct.Struct(">BI")
MAX_RECORD_BODY = 1024 * 1024
MAX_NAME_BYTES = 1024
MAX_MEDIA_TYPE_BYTES = 255
_MANIFEST_ENTRY = struct.Struct(">Q32s")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
# Even a one-line message is padded to this, so short submissions all look alike.
MIN_PADDED_PAYLOAD = 16 * 1024
_MAX_PADDING_BODY = 0xFFFFFFFF


class MalformedPayload(SpoolFileError):
    """The payload decrypted and authenticated, but its records break the format.

    Only a faulty or hostile writer holding the file key can produce this.
    """

    cause = "malformed payload"


@dataclass(frozen=True)
class AttachmentSummary:
    size: int
    sha256: bytes


def mailbox_id_for(reply_public_key: bytes) -> bytes:
    """The mailbox id that belongs to a reply public key (32 bytes): BLAKE2b-128.

    Derived from the key, so the reviewer can check that a SOURCE record's two
    values belong together, and so that someone who learns a mailbox id (it names
    reply files on the server) cannot learn the key, nor write a SOURCE record
    that the reviewer would file with that source.
    """
    if len(reply_public_key) != REPLY_KEY_BYTES:
        raise ValueError("a reply public key is 32 bytes")
    return hashlib.blake2b(
        reply_public_key, digest_size=MAILBOX_ID_BYTES, person=_MAILBOX_PERSON
    ).digest()


@dataclass(frozen=True)
class SourceIdentity:
    """A version 2 submission's SOURCE record: who to reply to, and how to file it.

    `kind` is FIRST_CONTACT or FOLLOW_UP. Submissions with the same reply key come
    from whoever holds the same codename.
    """

    kind: int
    reply_public_key: bytes
    mailbox_id: bytes

    @classmethod
    def for_key(cls, kind: int, reply_public_key: bytes) -> SourceIdentity:
        return cls(kind, reply_public_key, mailbox_id_for(reply_public_key))

    def encode(self) -> bytes:
        return bytes([self.kind]) + self.reply_public_key + self.mailbox_id


def padme(length: int) -> int:
    """Padmé (Nikitin et al., 2019): round up so at most O(log log L) bits of L leak.

    The overhead is at most 12% and shrinks as the length grows (about 3% at 1 GiB).
    """
    if length < 2:
        return length
    exponent = length.bit_length() - 1
    mantissa_bits = exponent.bit_length()
    low_bits = exponent - mantissa_bits
    mask = (1 << low_bits) - 1
    return (length + mask) & ~mask


def padded_payload_length(unpadded: int) -> int:
    """Total payload length once PADDING records are added after `unpadded` bytes."""
    return max(padme(unpadded + RECORD_HEADER.size), MIN_PADDED_PAYLOAD)


class PayloadWriter:
    """Encodes a submission as records and hands the bytes to `sink`, in one pass."""

    def __init__(
        self,
        sink: Callable[[bytes | memoryview], object],
        day: str,
        receipt: str,
        source: SourceIdentity | None = None,
    ) -> None:
        """`source` given adds a SOURCE record: seal it as version 2 or 3 (crypto.py).

        `sink` may be handed a view of the caller's buffer, valid only during the call.
        """
        self._sink = sink
        self._written = 0
        self._attachments: list[AttachmentSummary] = []
        self._current: hashlib._Hash | None = None
        self._current_size = 0
        self._closed = False
        # Checked here with the reader's own rules: a writer that accepted them would
        # produce a file no reader can open, and nobody would know until the review.
        if not _is_day(day):
            raise ValueError("the day must be a calendar date written YYYY-MM-DD")
        if not _is_receipt(receipt.encode("ascii", "replace")):
            raise ValueError("the receipt must be 1 to 64 ASCII digits and hyphens")
        if source is not None:
            _check_source(source)
        self._record(SUBMISSION, day.encode("ascii"))
        self._record(RECEIPT, receipt.encode("ascii"))
        if source is not None:
            self._record(SOURCE, source.encode())

    @property
    def attachments(self) -> list[AttachmentSummary]:
        return list(self._attachments)

    def message(self, text: str) -> None:
        """Add message text; may be called several times, pieces are concatenated."""
        if self._attachments or self._current is not None:
            raise RuntimeError("the message must come before any attachment")
        encoded = text.encode("utf-8", "replace")
        start = 0
        while start < len(encoded):
            # Each record must decode on its own: never split a multi-byte character.
            end = min(start + MAX_RECORD_BODY, len(encoded))
            while end < len(encoded) and encoded[end] & 0xC0 == 0x80:
                end -= 1
            self._record(MESSAGE, encoded[start:end])
            start = end

    def begin_attachment(self, name: str, media_type: str) -> None:
        if self._current is not None:
            raise RuntimeError("the previous attachment is still open")
        name_bytes = _truncate_utf8(name.encode("utf-8", "replace"), MAX_NAME_BYTES)
        media = media_type.encode("ascii", "replace")[:MAX_MEDIA_TYPE_BYTES]
        body = _U16.pack(len(name_bytes)) + name_bytes + _U16.pack(len(media)) + media
        self._record(ATTACHMENT_BEGIN, body)
        self._current = hashlib.sha256()
        self._current_size = 0

    def attachment_data(self, data: bytes | bytearray | memoryview) -> None:
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
        if self._current is None:
            raise RuntimeError("no attachment is open")
        summary = AttachmentSummary(self._current_size, self._current.digest())
        self._attachments.append(summary)
        self._current = None
        self._record(ATTACHMENT_END, b"")
        return summary

    def close(self) -> None:
        """Write the closing MANIFEST record and the padding."""
        if self._current is not None:
            raise RuntimeError("an attachment is still open")
        if self._closed:
            raise RuntimeError("payload already closed")
        self._closed = True
        entries = b"".join(_MANIFEST_ENTRY.pack(a.size, a.sha256) for a in self._attachments)
        self._record(MANIFEST, _U32.pack(len(self._attachments)) + entries)
        self._pad_to(padded_payload_length(self._written))

    def _pad_to(self, target: int) -> None:
        remaining = target - self._written
        while remaining > 0:
            body = min(remaining - RECORD_HEADER.size, _MAX_PADDING_BODY)
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


# --- reading ---------------------------------------------------------------


@dataclass(frozen=True)
class Day:
    day: str


@dataclass(frozen=True)
class Receipt:
    receipt: str


@dataclass(frozen=True)
class MessageText:
    text: str


@dataclass(frozen=True)
class AttachmentStart:
    index: int
    name: str
    media_type: str


@dataclass(frozen=True)
class AttachmentBytes:
    data: bytes


@dataclass(frozen=True)
class AttachmentDone:
    index: int
    size: int
    sha256: bytes


@dataclass(frozen=True)
class SkippedRecord:
    record_type: int
    length: int


@dataclass(frozen=True)
class PayloadEnd:
    attachments: tuple[AttachmentSummary, ...]


Event = (
    Day
    | Receipt
    | SourceIdentity
    | MessageText
    | AttachmentStart
    | AttachmentBytes
    | AttachmentDone
    | SkippedRecord
    | PayloadEnd
)


class _ByteQueue:
    """Pulls plaintext chunks on demand so no record is buffered whole unless small.

    It keeps the current chunk and an offset into it rather than a buffer: a piece
    read from it is one slice (no copy at all when it is the whole chunk), and
    nothing is ever moved to the front of a buffer.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._chunk = b""
        self._offset = 0
        self._pulled = 0

    @property
    def consumed(self) -> int:
        return self._pulled - (len(self._chunk) - self._offset)

    def _fill(self) -> bool:
        """Make sure unread bytes are at hand; False at the end of the payload."""
        while self._offset == len(self._chunk):
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            self._pulled += len(chunk)
            # Slices of `bytes` are `bytes`, whatever buffer type a caller passed in.
            self._chunk = chunk if type(chunk) is bytes else bytes(chunk)
            self._offset = 0
        return True

    def _piece(self, most: int) -> bytes:
        if not self._fill():
            raise MalformedPayload("the payload ends inside a record")
        start = self._offset
        piece = self._chunk[start : start + most]
        self._offset = start + len(piece)
        return piece

    def take(self, size: int) -> bytes:
        piece = self._piece(size) if size else b""
        if len(piece) == size:
            return piece
        parts = [piece]
        left = size - len(piece)
        while left:
            piece = self._piece(left)
            parts.append(piece)
            left -= len(piece)
        return b"".join(parts)

    def take_streamed(self, size: int) -> Iterator[bytes]:
        left = size
        while left:
            piece = self._piece(left)
            left -= len(piece)
            yield piece

    def at_end(self) -> bool:
        return not self._fill()


def read_payload(
    chunks: Iterable[bytes], version: int | Callable[[], int | None] | None = None
) -> Iterator[Event]:
    """Parse decrypted payload chunks into events, checking every format rule.

    The format version is `version` (or what it returns when called, once the first
    chunk is in: for chunks from crypto.open_payload behind a wrapper), else the one
    crypto.open_payload read from the file's header, else 1. Version 2 payloads have
    a SOURCE record right after RECEIPT; version 1 payloads have none; in version 3
    it is optional (there, or nowhere).

    The last event is PayloadEnd; it comes only after the manifest was checked
    against the attachments and the padding against its rules. Anything before
    it is unverified until then.
    """
    queue = _ByteQueue(chunks)
    record_type, body = _next_small_record(queue)
    if record_type != SUBMISSION:
        raise MalformedPayload("the payload does not start with a SUBMISSION record")
    yield Day(_decode_day(body))
    record_type, body = _next_small_record(queue)
    if record_type != RECEIPT:
        raise MalformedPayload("the SUBMISSION record is not followed by a RECEIPT record")
    yield Receipt(_decode_receipt(body))
    # Known by now: the header was read before the first chunk was yielded.
    if callable(version):
        version = version()
    if version is None:
        version = (chunks.version if isinstance(chunks, PayloadChunks) else None) or VERSION
    if version == SOURCE_VERSION:
        record_type, body = _next_small_record(queue)
        if record_type != SOURCE:
            raise MalformedPayload("a version 2 payload has no SOURCE record after RECEIPT")
        yield _decode_source(body)
    # In version 3 the SOURCE record may be the third record, and nowhere else.
    source_allowed = version == RECIPIENTS_VERSION

    computed: list[AttachmentSummary] = []
    seen_attachment = False
    while True:
        record_type, length = _next_header(queue)
        if record_type == SOURCE and source_allowed:
            yield _decode_source(_small_body(queue, length))
        elif record_type == MESSAGE:
            if seen_attachment:
                raise MalformedPayload("a MESSAGE record follows an attachment")
            yield MessageText(_decode_text(_small_body(queue, length), "message"))
        elif record_type == ATTACHMENT_BEGIN:
            seen_attachment = True
            start = _decode_attachment_start(len(computed), _small_body(queue, length))
            yield start
            summary = yield from _read_attachment_body(queue)
            computed.append(summary)
            yield AttachmentDone(start.index, summary.size, summary.sha256)
        elif record_type == MANIFEST:
            _check_manifest(_small_body(queue, length), computed)
            break
        elif record_type >= FIRST_OPTIONAL_TYPE and record_type != 0xFF:
            for _ in queue.take_streamed(length):
                pass
            yield SkippedRecord(record_type, length)
        else:
            raise MalformedPayload(f"unexpected record type 0x{record_type:02x}")
        source_allowed = False

    _check_padding(queue)
    yield PayloadEnd(tuple(computed))


def _read_attachment_body(queue: _ByteQueue) -> Generator[Event, None, AttachmentSummary]:
    digest = hashlib.sha256()
    size = 0
    while True:
        record_type, length = _next_header(queue)
        if record_type == ATTACHMENT_END:
            if length:
                raise MalformedPayload("an ATTACHMENT_END record has a body")
            return AttachmentSummary(size, digest.digest())
        if record_type != ATTACHMENT_DATA:
            raise MalformedPayload(f"record type 0x{record_type:02x} inside an attachment")
        if not length or length > MAX_RECORD_BODY:
            raise MalformedPayload(f"an ATTACHMENT_DATA record of {length} bytes")
        for piece in queue.take_streamed(length):
            digest.update(piece)
            size += len(piece)
            yield AttachmentBytes(piece)


def _next_header(queue: _ByteQueue) -> tuple[int, int]:
    record_type, length = RECORD_HEADER.unpack(queue.take(RECORD_HEADER.size))
    return record_type, length


def _small_body(queue: _ByteQueue, length: int) -> bytes:
    if length > MAX_RECORD_BODY:
        raise MalformedPayload(f"a record of {length} bytes exceeds the {MAX_RECORD_BODY} limit")
    return queue.take(length)


def _next_small_record(queue: _ByteQueue) -> tuple[int, bytes]:
    record_type, length = _next_header(queue)
    return record_type, _small_body(queue, length)


_DAY_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RECEIPT_SHAPE = re.compile(rb"[0-9-]{1,64}")


def _is_day(text: str) -> bool:
    if not _DAY_SHAPE.fullmatch(text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_receipt(body: bytes) -> bool:
    return _RECEIPT_SHAPE.fullmatch(body) is not None


def _decode_day(body: bytes) -> str:
    text = _decode_text(body, "day")
    if not _is_day(text):
        raise MalformedPayload("the SUBMISSION record does not hold a YYYY-MM-DD day")
    return text


def _decode_receipt(body: bytes) -> str:
    if not _is_receipt(body):
        raise MalformedPayload("the RECEIPT record does not hold a receipt number")
    return body.decode("ascii")


def _decode_text(body: bytes, what: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload(f"the {what} is not valid UTF-8") from None


def _check_source(source: SourceIdentity) -> None:
    if source.kind not in (FIRST_CONTACT, FOLLOW_UP):
        raise ValueError("the SOURCE kind must be FIRST_CONTACT or FOLLOW_UP")
    if len(source.reply_public_key) != REPLY_KEY_BYTES:
        raise ValueError("the reply public key must be 32 bytes")
    if source.mailbox_id != mailbox_id_for(source.reply_public_key):
        raise ValueError("the mailbox id does not belong to the reply public key")


def _decode_source(body: bytes) -> SourceIdentity:
    if len(body) != _SOURCE_BODY_BYTES:
        raise MalformedPayload(f"the SOURCE record is {len(body)} bytes, not {_SOURCE_BODY_BYTES}")
    source = SourceIdentity(body[0], body[1 : 1 + REPLY_KEY_BYTES], body[1 + REPLY_KEY_BYTES :])
    try:
        _check_source(source)
    except ValueError as err:
        raise MalformedPayload(f"the SOURCE record is invalid: {err}") from None
    return source


def _decode_attachment_start(index: int, body: bytes) -> AttachmentStart:
    try:
        (name_length,) = _U16.unpack_from(body, 0)
        name = body[2 : 2 + name_length]
        (media_length,) = _U16.unpack_from(body, 2 + name_length)
        media = body[4 + name_length : 4 + name_length + media_length]
    except struct.error:
        raise MalformedPayload("an ATTACHMENT_BEGIN record is cut short") from None
    if 4 + name_length + media_length != len(body) or len(media) != media_length:
        raise MalformedPayload("an ATTACHMENT_BEGIN record has the wrong length")
    if not media.isascii():
        raise MalformedPayload("an attachment's media type is not ASCII")
    return AttachmentStart(index, _decode_text(name, "attachment name"), media.decode("ascii"))


def _check_manifest(body: bytes, computed: list[AttachmentSummary]) -> None:
    if len(body) < _U32.size:
        raise MalformedPayload("the MANIFEST record is cut short")
    (count,) = _U32.unpack_from(body, 0)
    if count != len(computed) or len(body) != _U32.size + count * _MANIFEST_ENTRY.size:
        raise MalformedPayload(
            f"the manifest lists {count} attachments but the payload holds {len(computed)}"
        )
    for index, actual in enumerate(computed):
        size, sha256 = _MANIFEST_ENTRY.unpack_from(body, _U32.size + index * _MANIFEST_ENTRY.size)
        if size != actual.size or sha256 != actual.sha256:
            raise MalformedPayload(f"attachment {index} does not match its manifest entry")


def _check_padding(queue: _ByteQueue) -> None:
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
