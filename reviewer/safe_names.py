"""Turn an attachment's untrusted original name into a file name safe to write.

The name comes from the source's browser, or from whoever forged the upload: it
may try to climb out of the folder, hide itself, impersonate another extension
with bidi overrides, or use a name Windows treats as a device. The reviewer may
copy the folder to any system, so the rules are the union of POSIX and Windows
constraints. The original stays available as data in manifest.json.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

MAX_NAME_BYTES = 200
# An "extension" longer than this is more likely part of the name; keeping it
# whole could leave almost nothing of the stem.
_MAX_EXTENSION_BYTES = 24

# Bidi embeddings/overrides/isolates and marks: they can make "exe.txt" display as
# "txt.exe". Line and paragraph separators break one-name-per-line listings.
_INVISIBLE_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
)
# Characters Windows refuses in names; "/" and "\\" are handled as separators first.
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"|?*]')
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"{prefix}{digit}" for prefix in ("COM", "LPT") for digit in "123456789¹²³"]
)


class EscapesFolder(Exception):
    """A computed path would land outside the submission folder.

    safe_name() makes this impossible; seeing it means a bug, so writing stops.
    """


def safe_name(original: str, index: int) -> str:
    """A name with no directory part, no hidden or reserved form, within 200 UTF-8 bytes.

    `index` numbers the attachment (from 0) for the fallback `attachment-N`, which
    is used when nothing usable is left of the original.
    """
    name = unicodedata.normalize("NFC", original)
    name = "".join(c for c in name if not _is_control(c))
    name = re.split(r"[/\\]", name)[-1]
    name = _WINDOWS_FORBIDDEN.sub("_", name)
    name = _trim(name)
    if _is_reserved(name):
        name = "_" + name
    name = _trim(_truncate(name, MAX_NAME_BYTES))
    return name or f"attachment-{index + 1}"


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name (2).ext`, `name (3).ext`... whichever is not in `taken`.

    `taken` holds casefolded names: two names that differ only in case would
    collide on case-insensitive file systems. The chosen name is added to it.
    """
    candidate = name
    counter = 1
    while candidate.casefold() in taken:
        counter += 1
        stem, extension = _split_extension(name)
        suffix = f" ({counter})" + extension
        stem = _truncate_bytes(stem, MAX_NAME_BYTES - len(suffix.encode("utf-8")))
        candidate = stem + suffix
    taken.add(candidate.casefold())
    return candidate


def contained_path(folder: Path, name: str) -> Path:
    """`folder / name`, after proving with realpath/commonpath that it stays inside."""
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, target]) != root or target == root:
        raise EscapesFolder(f"the name {name!r} would leave the folder {folder}")
    return Path(target)


def printable_name(name: str) -> str:
    """`name` as it may be printed to a terminal: controls and bidi marks escaped.

    Spool file names come from whatever copied the files; an escape sequence or a
    newline in one must not redraw the reviewer's terminal or fake a summary line.
    Names that are not valid UTF-8 (surrogate escapes) show their bytes.
    """
    return "".join(c if c.isprintable() and not _is_control(c) else ascii(c)[1:-1] for c in name)


def _is_control(char: str) -> bool:
    # Cc covers NUL, C0, DEL and C1.
    return unicodedata.category(char) == "Cc" or char in _INVISIBLE_CONTROLS


def _trim(name: str) -> str:
    # No leading dot: no hidden files, no "." or "..". Windows drops trailing dots
    # and spaces, so a name ending in them would not survive a copy there.
    return name.lstrip(". ").rstrip(". ")


def _is_reserved(name: str) -> bool:
    # Windows treats "CON.txt" and "con .tar.gz" as the console device too.
    return name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_RESERVED


def _split_extension(name: str) -> tuple[str, str]:
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(("." + extension).encode("utf-8")) > _MAX_EXTENSION_BYTES:
        return name, ""
    return stem, "." + extension


def _truncate(name: str, limit: int) -> str:
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, extension = _split_extension(name)
    return _truncate_bytes(stem, limit - len(extension.encode("utf-8"))).rstrip(". ") + extension


def _truncate_bytes(text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` UTF-8 bytes, cut between code points."""
    return text.encode("utf-8")[: max(limit, 0)].decode("utf-8", "ignore")
