"""The record layout both sides share: types, sizes, limits, the padding rule.

A record is ``type (u8) | length (u32, big-endian) | body``. The writer
(records/writer.py) and the reader (records/reader.py) take every number and
shape rule from here, so the two cannot drift apart. docs/FORMAT.md is normative.
"""

from __future__ import annotations

import datetime
import re
import struct
from dataclasses import dataclass

from ..crypto import SpoolFileError

PADDING = 0x00
SUBMISSION = 0x01
MESSAGE = 0x02
ATTACHMENT_BEGIN = 0x03
ATTACHMENT_DATA = 0x04
ATTACHMENT_END = 0x05
MANIFEST = 0x06
RECEIPT = 0x07
SOURCE = 0x08
CUT = 0x09
FIRST_OPTIONAL_TYPE = 0x80
# Optional: an older reader skips it. Not 0x80, which the first vectors use as the
# example of a record no reader knows (docs/FORMAT.md).
LANGUAGE = 0x81

# Where a CUT record says the upload ended: inside the message, inside an attachment,
# or after a part ended and before any content of the next arrived.
CUT_IN_MESSAGE = 0x01
CUT_IN_ATTACHMENT = 0x02
CUT_BETWEEN_PARTS = 0x03
CUT_BODY = struct.Struct(">BQ")

RECORD_HEADER = struct.Struct(">BI")
MAX_RECORD_BODY = 1024 * 1024
MAX_NAME_BYTES = 1024
MAX_MEDIA_TYPE_BYTES = 255
MANIFEST_ENTRY = struct.Struct(">Q32s")
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
# Even a one-line message is padded to this, so short submissions all look alike.
MIN_PADDED_PAYLOAD = 16 * 1024
MAX_PADDING_BODY = 0xFFFFFFFF

_DAY_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RECEIPT_SHAPE = re.compile(rb"[0-9-]{1,64}")
# A BCP 47 tag's syntax without its registry: subtags of 1-8 letters or digits, the
# first letters only (`sw`, `zh-Hans`, `pt-MZ`); 35 bytes hold any tag a page uses.
_LANGUAGE_SHAPE = re.compile(rb"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8}){0,4}")
MAX_LANGUAGE_BYTES = 35


class MalformedPayload(SpoolFileError):
    """The payload decrypted and authenticated, but its records break the format.

    Only a faulty or hostile writer holding the file key can produce this.
    """

    cause = "malformed payload"


@dataclass(frozen=True)
class AttachmentSummary:
    size: int
    sha256: bytes


@dataclass(frozen=True)
class UploadCut:
    """A CUT record: the upload ended early, `where` (CUT_IN_*), after `received`
    bytes of that part. `index` is the cut attachment's number (CUT_IN_ATTACHMENT),
    or how many attachments had ended (CUT_BETWEEN_PARTS); 0 for the message."""

    where: int
    index: int
    received: int


def padme(length: int) -> int:
    """Padmé (Nikitin et al., 2019): round up so at most O(log log L) bits of L leak.

    The overhead is at most 12% and shrinks as the length grows (docs/FORMAT.md).
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


def is_day(text: str) -> bool:
    """A SUBMISSION record's day: a real calendar date written YYYY-MM-DD."""
    if not _DAY_SHAPE.fullmatch(text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def is_receipt(body: bytes) -> bool:
    """A RECEIPT record's body: 1 to 64 ASCII digits and hyphens."""
    return _RECEIPT_SHAPE.fullmatch(body) is not None


def is_language_tag(body: bytes) -> bool:
    """A LANGUAGE record's body: a BCP 47 tag in ASCII, 2 to 35 bytes."""
    return 2 <= len(body) <= MAX_LANGUAGE_BYTES and _LANGUAGE_SHAPE.fullmatch(body) is not None
