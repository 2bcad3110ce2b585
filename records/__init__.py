"""The typed records inside a sealed payload: written in one pass, read as a stream.

Each record is ``type (u8) | length (u32, big-endian) | body``. The order is
fixed: one SUBMISSION record (the day), one RECEIPT record (the number the
source was shown), in format version 2 one SOURCE record (the source's reply
key and mailbox id; in version 3 at most one), an optional LANGUAGE record (the
pages' language), MESSAGE records (the text, in
pieces), then per attachment ATTACHMENT_BEGIN, ATTACHMENT_DATA*, ATTACHMENT_END;
one MANIFEST closing record with each attachment's size and SHA-256; then PADDING
records up to the Padmé length. An upload the client cut off ends with a CUT
record before MANIFEST. docs/FORMAT.md is normative.

One job per module, all pure like crypto.py (no files, no web, no keys):

- ``layout``: record types, sizes and limits, the padding rule, MalformedPayload;
- ``source``: the SOURCE record, ``mailbox_id_for`` and ``SourceIdentity``;
- ``writer``: ``PayloadWriter``;
- ``events``: what the reader yields;
- ``bytequeue`` and ``reader``: ``read_payload``.

Product code imports from those modules; this package's names are the public
API, gathered here for callers (tests, fuzzing, benchmarks) that want all of it.
"""

from __future__ import annotations

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
    CUT_IN_ATTACHMENT,
    CUT_IN_MESSAGE,
    FIRST_OPTIONAL_TYPE,
    LANGUAGE,
    MANIFEST,
    MAX_MEDIA_TYPE_BYTES,
    MAX_NAME_BYTES,
    MAX_RECORD_BODY,
    MESSAGE,
    MIN_PADDED_PAYLOAD,
    PADDING,
    RECEIPT,
    RECORD_HEADER,
    SOURCE,
    SUBMISSION,
    AttachmentSummary,
    MalformedPayload,
    UploadCut,
    padded_payload_length,
    padme,
)
from .reader import read_payload
from .source import (
    FIRST_CONTACT,
    FOLLOW_UP,
    MAILBOX_ID_BYTES,
    REPLY_KEY_BYTES,
    SourceIdentity,
    mailbox_id_for,
)
from .writer import PayloadWriter

__all__ = [
    "ATTACHMENT_BEGIN",
    "ATTACHMENT_DATA",
    "ATTACHMENT_END",
    "CUT",
    "CUT_BETWEEN_PARTS",
    "CUT_IN_ATTACHMENT",
    "CUT_IN_MESSAGE",
    "FIRST_CONTACT",
    "FIRST_OPTIONAL_TYPE",
    "FOLLOW_UP",
    "LANGUAGE",
    "MAILBOX_ID_BYTES",
    "MANIFEST",
    "MAX_MEDIA_TYPE_BYTES",
    "MAX_NAME_BYTES",
    "MAX_RECORD_BODY",
    "MESSAGE",
    "MIN_PADDED_PAYLOAD",
    "PADDING",
    "RECEIPT",
    "RECORD_HEADER",
    "REPLY_KEY_BYTES",
    "SOURCE",
    "SUBMISSION",
    "AttachmentBytes",
    "AttachmentDone",
    "AttachmentStart",
    "AttachmentSummary",
    "Day",
    "Event",
    "MalformedPayload",
    "MessageText",
    "PayloadEnd",
    "PayloadWriter",
    "Receipt",
    "SkippedRecord",
    "SourceIdentity",
    "SourceLanguage",
    "UploadCut",
    "mailbox_id_for",
    "padded_payload_length",
    "padme",
    "read_payload",
]
