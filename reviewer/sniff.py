"""What an attachment is, told from its bytes, never from its name.

A name and a declared media type come from the source's browser or from whoever
forged the upload; `photo.cleaned.jpg` may be anything. The metadata cleaner
picks its parser by a file's extension, so the extension it is given is the one
the bytes call for. Only well-known signatures are recognised; anything else is
unknown and is not cleaned. ZIP containers (office documents, EPUB) are told
apart by their members' names, read with Python's own zipfile (no native parser).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

_HEAD_BYTES = 4096
_MAX_MIMETYPE_MEMBER = 128


@dataclass(frozen=True)
class Kind:
    media_type: str
    extension: str


JPEG = Kind("image/jpeg", ".jpg")
PNG = Kind("image/png", ".png")
GIF = Kind("image/gif", ".gif")
TIFF = Kind("image/tiff", ".tiff")
HEIC = Kind("image/heic", ".heic")
PPM = Kind("image/x-portable-pixmap", ".ppm")
SVG = Kind("image/svg+xml", ".svg")
PDF = Kind("application/pdf", ".pdf")
ZIP = Kind("application/zip", ".zip")
TAR = Kind("application/x-tar", ".tar")
TORRENT = Kind("application/x-bittorrent", ".torrent")
HTML = Kind("text/html", ".html")
TEXT = Kind("text/plain", ".txt")
MP3 = Kind("audio/mpeg", ".mp3")
FLAC = Kind("audio/flac", ".flac")
OGG = Kind("audio/ogg", ".ogg")
WAV = Kind("audio/x-wav", ".wav")
AIFF = Kind("audio/x-aiff", ".aiff")
MP4 = Kind("video/mp4", ".mp4")
AVI = Kind("video/x-msvideo", ".avi")
WMV = Kind("video/x-ms-wmv", ".wmv")

_PREFIXES: tuple[tuple[bytes, Kind], ...] = (
    (b"\xff\xd8\xff", JPEG),
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"GIF87a", GIF),
    (b"GIF89a", GIF),
    (b"II*\x00", TIFF),
    (b"MM\x00*", TIFF),
    (b"%PDF-", PDF),
    (b"PK\x03\x04", ZIP),
    (b"fLaC", FLAC),
    (b"OggS", OGG),
    (b"ID3", MP3),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", WMV),
    (b"d8:announce", TORRENT),
)
_RIFF = {b"WAVE": WAV, b"AVI ": AVI}
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"})
_OOXML = (
    (
        "word/",
        Kind("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"),
    ),
    ("xl/", Kind("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".xlsx")),
    (
        "ppt/",
        Kind("application/vnd.openxmlformats-officedocument.presentationml.presentation", ".pptx"),
    ),
)
_ODF = {
    "application/vnd.oasis.opendocument.text": ".odt",
    "application/vnd.oasis.opendocument.spreadsheet": ".ods",
    "application/vnd.oasis.opendocument.presentation": ".odp",
    "application/vnd.oasis.opendocument.graphics": ".odg",
    "application/epub+zip": ".epub",
}


def sniff(path: Path) -> Kind | None:
    """The kind of file `path` holds by its first bytes, or None if not recognised."""
    with open(path, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    kind = _by_signature(head)
    if kind is ZIP:
        return _zip_kind(path)
    if kind is None:
        return _text_kind(head)
    return kind


def _by_signature(head: bytes) -> Kind | None:
    for prefix, kind in _PREFIXES:
        if head.startswith(prefix):
            return kind
    if head[:4] == b"RIFF" and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return AIFF
    if head[4:8] == b"ftyp":
        return HEIC if head[8:12] in _HEIC_BRANDS else MP4
    if len(head) > 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return MP3  # an MPEG audio frame header with no ID3 tag before it
    if head[257:262] == b"ustar":
        return TAR
    if head[:2] in (b"P3", b"P6") and head[2:3].isspace():
        return PPM
    return None


def _zip_kind(path: Path) -> Kind:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "mimetype" in names:
                info = archive.getinfo("mimetype")
                if info.file_size <= _MAX_MIMETYPE_MEMBER:
                    declared = archive.read(info).decode("ascii", "replace").strip()
                    if declared in _ODF:
                        return Kind(declared, _ODF[declared])
            if "[Content_Types].xml" in names:
                for prefix, kind in _OOXML:
                    if any(name.startswith(prefix) for name in names):
                        return kind
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
        pass  # a damaged archive is cleaned, or refused, as a plain ZIP
    return ZIP


def _text_kind(head: bytes) -> Kind | None:
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        # A multi-byte character cut by the end of the sample is still text.
        if err.start < len(head) - 3:
            return None
        text = head[: err.start].decode("utf-8")
    lowered = text.lstrip("\ufeff \t\r\n").lower()
    if "<svg" in lowered and (lowered.startswith("<?xml") or lowered.startswith("<svg")):
        return SVG
    if lowered.startswith("<!doctype html") or lowered.startswith("<html"):
        return HTML
    return TEXT
