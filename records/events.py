"""What records/reader.py yields: one typed event per record, or per piece of one."""

from __future__ import annotations

from dataclasses import dataclass

from .layout import AttachmentSummary, UploadCut
from .source import SourceIdentity


@dataclass(frozen=True)
class Day:
    day: str


@dataclass(frozen=True)
class Receipt:
    receipt: str


@dataclass(frozen=True)
class SourceLanguage:
    """The language of the pages the source used (a BCP 47 tag, like ``sw``)."""

    tag: str


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
    # The upload was cut off: the payload holds only what arrived (layout.UploadCut).
    cut: UploadCut | None = None


Event = (
    Day
    | Receipt
    | SourceIdentity
    | SourceLanguage
    | MessageText
    | AttachmentStart
    | AttachmentBytes
    | AttachmentDone
    | UploadCut
    | SkippedRecord
    | PayloadEnd
)
