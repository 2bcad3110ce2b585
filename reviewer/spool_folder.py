"""What a spool folder holds, and what to open: the one sorting that `sealdrop open`
opens by and `sealdrop spool` lists by, so the listing shows exactly what a run
would try and names everything else in the same words.

Every regular file whose name ends in ``.sealed`` (any case: spool_names.is_sealed)
is opened, whatever a copy tool made of the rest of it
(``x (1).sealed``, ``Copy of x.sealed``, ``x-1.sealed``, spaces, non-ASCII).
What is not opened is always said, and why: ``.part`` files (uploads still in
progress on the server) and the litter file managers leave (``.DS_Store``,
AppleDouble ``._*`` files recognised by their bytes, ``Thumbs.db``...) are
known and reported; anything else (``x.sealed~`` from ``cp --backup``, an
rsync temporary file, a link, a folder) is named, and makes the exit non-zero,
because it may be a submission that would otherwise go unread.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..crypto import MAGIC
from ..spool_names import POOL_DIR, is_copied_part, is_sealed
from .safe_names import printable_name

# The first bytes of a macOS AppleDouble file (resource fork and extended attributes
# that Finder writes as ._NAME next to every file copied to a FAT or exFAT stick).
_APPLEDOUBLE_MAGIC = b"\x00\x05\x16\x07"
_LITTER_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"})
_LITTER_FOLDERS = frozenset(
    {
        ".spotlight-v100",
        ".trashes",
        ".fseventsd",
        ".temporaryitems",
        ".documentrevisions-v100",
        "system volume information",
        "$recycle.bin",
    }
)


@dataclass
class SpoolContents:
    """A spool folder sorted into what to open and what not, each with a reason."""

    to_open: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    # (name, what it is): written by a file manager, never a submission.
    litter: list[tuple[str, str]] = field(default_factory=list)
    # (name, why it was not opened, what to do): may hold a submission.
    not_opened: list[tuple[str, str]] = field(default_factory=list)


def read_spool_folder(spool: Path, out: Path | None = None) -> SpoolContents:
    """Sort the entries of `spool` (a folder, or one file given by name).

    A single file given by name is opened whatever it is called: the reviewer
    chose it. `out`, the output folder, is left out if it lies inside `spool`.
    OSError if the folder cannot be listed.
    """
    if not spool.is_dir():
        os.stat(spool)  # a missing file is the caller's error to report
        return SpoolContents(to_open=[spool.name])
    return sort_spool_folder(spool, out)


def sort_spool_folder(folder: Path, out: Path | None = None) -> SpoolContents:
    """Sort every entry of the folder `folder`, each list by name.

    OSError if it cannot be listed (NotADirectoryError for a file).
    """
    contents = SpoolContents()
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        if out is not None and _same(entry.path, out):
            continue
        _sort_entry(entry, contents)
    return contents


def _sort_entry(entry: os.DirEntry[str], contents: SpoolContents) -> None:
    name = entry.name
    lower = name.lower()
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except OSError as err:
        contents.not_opened.append((name, f"it cannot be examined ({err.strerror})"))
        return
    if stat.S_ISDIR(mode):
        if lower in _LITTER_FOLDERS:
            contents.litter.append((name, "a folder the operating system keeps"))
        elif name == POOL_DIR and _only_empty_files(Path(entry.path)):
            contents.litter.append(
                (name, "the server's pool of empty files, made ahead of uploads")
            )
        else:
            contents.not_opened.append(
                (name, "it is a folder; sealdrop open does not look inside folders: open it too")
            )
        return
    if stat.S_ISLNK(mode):
        contents.not_opened.append(
            (name, "it is a symbolic link, which is never followed: copy the file itself")
        )
        return
    if not stat.S_ISREG(mode):
        contents.not_opened.append((name, "it is not a regular file"))
        return
    first = _first_bytes(entry.path)
    if first.startswith(_APPLEDOUBLE_MAGIC):
        contents.litter.append((name, "macOS metadata (AppleDouble), not a spool file"))
    elif is_sealed(name):
        contents.to_open.append(name)
    elif is_copied_part(name):
        contents.parts.append(name)
    elif lower in _LITTER_FILES:
        contents.litter.append((name, "a file manager's own file"))
    elif first.startswith(MAGIC):
        contents.not_opened.append(
            (
                name,
                "it starts like a spool file but its name does not end in .sealed (a backup "
                "or an unfinished copy?); if it should be opened, rename it to end in .sealed",
            )
        )
    else:
        contents.not_opened.append(
            (name, "it is not a spool file (no .sealed name, no sealdrop marker)")
        )


def describe_left_out(
    litter: list[tuple[str, str]], not_opened: list[tuple[str, str]]
) -> list[str]:
    """One line for each entry of `SpoolContents.litter` and `.not_opened`: what it is,
    or why it may matter. `sealdrop open` and `sealdrop spool` print these same lines."""
    lines = [f"Ignored '{printable_name(name)}': {what}." for name, what in litter]
    lines += [f"NOT OPENED '{printable_name(name)}': {why}." for name, why in not_opened]
    return lines


def _only_empty_files(folder: Path) -> bool:
    """True if `folder` holds nothing but empty regular files (the server's pool)."""
    try:
        with os.scandir(folder) as scan:
            return all(
                e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_size == 0
                for e in scan
            )
    except OSError:
        return False


def _first_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC))
    except OSError:
        return b""


def _same(path: str, other: Path) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False
