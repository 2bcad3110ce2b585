"""Canaries: markers a test puts into what a source sends, then looks for everywhere.

A canary found on the server's disk or in its output means plaintext (or a secret)
escaped sealing. Each marker is looked for in every form a program could have
written it: as it is, in UTF-16 either way round (text markers), and in base64 at
all three alignments.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

CANARY_PREFIX = "CNRY"
# Under shared folders (/tmp, /dev/shm) larger files are skipped: not ours, and slow.
SHARED_SCAN_LIMIT = 512 * 1024 * 1024
_ANY_CANARY = (
    re.compile(rb"CNRY[0-9a-f]{16}"),
    re.compile(rb"C\x00N\x00R\x00Y\x00(?:[0-9a-f]\x00){16}"),
)

Marker = str | bytes


def canary() -> str:
    """A marker that occurs nowhere by chance: put it in uploads, then look for it."""
    return f"{CANARY_PREFIX}{secrets.token_hex(8)}"


def forms(marker: Marker) -> list[bytes]:
    """The byte strings that would betray `marker`: itself, UTF-16 (when it is text),
    and the base64 characters that encode only marker bits at each offset."""
    raw = marker.encode() if isinstance(marker, str) else marker
    found = [raw]
    if raw.isascii():
        text = raw.decode("ascii")
        found += [text.encode("utf-16-le"), text.encode("utf-16-be")]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        first = -(-offset * 8 // 6)  # the first character made only of marker bits
        last = (offset + len(raw)) * 8 // 6
        found.append(encoded[first:last])
    return found


def files_under(root: Path, newer_than: float | None = None) -> Iterator[Path]:
    """Regular files under `root` (or `root` itself), never through a link. With
    `newer_than` (a shared folder: only what changed since the test began) files over
    `SHARED_SCAN_LIMIT` are skipped."""
    if root.is_file() and not root.is_symlink():
        yield root
        return
    for directory, _, names in os.walk(root, onerror=lambda error: None):
        for name in sorted(names):
            path = Path(directory, name)
            try:
                info = path.lstat()
            except OSError:
                continue
            if not path.is_file() or path.is_symlink():
                continue
            if newer_than is not None and (
                info.st_size > SHARED_SCAN_LIMIT or max(info.st_mtime, info.st_ctime) < newer_than
            ):
                continue
            yield path


def found_in(data: bytes, markers: Iterable[Marker]) -> list[Marker]:
    """The markers `data` betrays, in any of their forms."""
    return [marker for marker in markers if any(form in data for form in forms(marker))]


def find_canaries(
    roots: Iterable[Path], markers: Iterable[Marker], newer_than: float | None = None
) -> list[tuple[Path, Marker]]:
    """Every (file, marker) where a file under `roots` betrays a marker."""
    markers = list(markers)
    hits: list[tuple[Path, Marker]] = []
    for root in roots:
        for path in files_under(root, newer_than):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits += [(path, marker) for marker in found_in(data, markers)]
    return hits


def find_any_canary(roots: Iterable[Path]) -> list[tuple[Path, str]]:
    """Every file under `roots` holding any canary (of any test), as UTF-8 or UTF-16."""
    hits: list[tuple[Path, str]] = []
    for root in roots:
        for path in files_under(root):
            data = path.read_bytes()
            for pattern in _ANY_CANARY:
                hits += [(path, m.group(0).decode("latin-1")) for m in pattern.finditer(data)]
    return hits
