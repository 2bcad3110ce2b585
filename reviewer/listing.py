"""`sealdrop spool SPOOL`: what a spool holds, told without any key and without changing it.

Each finished submission shows how many reviewer keys it is sealed to (the
header's stanza count, in the clear by design: docs/FORMAT.md), its padded size
and its day (the spool writer sets every file's mtime to midnight UTC of that
day, so the day is all there is to show). Which keys they are cannot be told
without them; when keys are rotated, the count tells the old files apart.
``.part`` files are uploads in progress, or left by a crash until the service's
next start.

What is listed is sorted exactly as `sealdrop open` sorts it (reviewer/spool_folder.py):
the rows are what a run would try to open, the ``.part`` files and whatever it would
not open (NOT OPENED, with the same reason below the table); what it would ignore
(file-manager litter, the server's ``.pool`` of empty files) is named below too. The
exit status is 0 whenever the folder could be listed: naming a file is the listing's
job, refusing it is `open`'s.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..crypto import SpoolFileError, TamperedHeader, UnsupportedVersion, read_recipient_count
from ..units import human_size
from .safe_names import printable_name
from .spool_folder import SpoolContents, describe_left_out, sort_spool_folder

SUBMISSION = "submission"
PART = "in progress or crashed"
NEWER = "newer sealdrop version"
FOREIGN = "not a sealdrop file"
UNREADABLE = "unreadable"
DAMAGED = "damaged header"
NOT_OPENED = "NOT OPENED"


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    size: int | None
    day: str | None
    keys: int | None = None  # reviewer keys it is sealed to (finished submissions)


def run_spool(args: argparse.Namespace) -> int:
    directory: Path = args.spool
    try:
        contents = sort_spool_folder(directory)
    except FileNotFoundError:
        print(
            f"sealdrop: the spool folder {directory} does not exist; check the path",
            file=sys.stderr,
        )
        return 1
    except NotADirectoryError:
        print(
            f"sealdrop: {directory} is a file, not a spool folder; give the folder that holds "
            "the .sealed files",
            file=sys.stderr,
        )
        return 1
    except PermissionError:
        print(
            f"sealdrop: the spool folder {directory} cannot be read by this user; run as its owner",
            file=sys.stderr,
        )
        return 1
    print(format_listing(directory, list_spool(directory, contents), contents))
    return 0


def list_spool(directory: Path, contents: SpoolContents) -> list[Entry]:
    """A row for every entry of `contents` but the litter, sorted by name. Reads at most
    the header of each file `sealdrop open` would open."""
    entries = [_classify(directory, name) for name in contents.to_open]
    entries += [_not_finished(directory, name, PART) for name in contents.parts]
    entries += [_not_finished(directory, name, NOT_OPENED) for name, _ in contents.not_opened]
    return sorted(entries, key=lambda entry: entry.name)


def format_listing(directory: Path, entries: list[Entry], contents: SpoolContents) -> str:
    rows = [("NAME", "KIND", "KEYS", "SIZE", "DAY")]
    for entry in entries:
        size = "" if entry.size is None else human_size(entry.size)
        keys = "" if entry.keys is None else str(entry.keys)
        rows.append((printable_name(entry.name), entry.kind, keys, size, entry.day or ""))
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    lines = [f"Spool {printable_name(str(directory))}", ""]
    for name, kind, keys, size, day in rows:
        line = (
            f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {keys:>{widths[2]}}  "
            f"{size:>{widths[3]}}  {day}"
        )
        lines.append(line.rstrip())
    counts = {kind: sum(1 for e in entries if e.kind == kind) for kind in (SUBMISSION, PART)}
    others = len(entries) - counts[SUBMISSION] - counts[PART]
    lines += [
        "",
        f"finished submissions: {counts[SUBMISSION]}{_by_key_count(entries)}",
        f".part files (upload in progress, or left by a crash): {counts[PART]}",
        f"other files (not finished submissions; look at them): {others}",
    ]
    left_out = describe_left_out(contents.litter, contents.not_opened)
    if left_out:
        lines += ["", *left_out]
    return "\n".join(lines)


def _not_finished(directory: Path, name: str, kind: str) -> Entry:
    try:
        info = os.lstat(directory / name)
    except OSError:
        return Entry(name, kind, None, None)
    return Entry(name, kind, info.st_size if stat.S_ISREG(info.st_mode) else None, None)


def _classify(directory: Path, name: str) -> Entry:
    """A file `sealdrop open` would open (a regular file): what its header says."""
    path = directory / name
    try:
        info = os.lstat(path)
    except OSError:
        return Entry(name, UNREADABLE, None, None)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as source:
            keys = read_recipient_count(source)
    except UnsupportedVersion:
        return Entry(name, NEWER, info.st_size, _day(info.st_mtime))
    except TamperedHeader:
        return Entry(name, DAMAGED, info.st_size, _day(info.st_mtime))
    except SpoolFileError:
        return Entry(name, FOREIGN, info.st_size, None)
    except OSError:
        return Entry(name, UNREADABLE, info.st_size, None)
    return Entry(name, SUBMISSION, info.st_size, _day(info.st_mtime), keys)


def _by_key_count(entries: list[Entry]) -> str:
    """`` (sealed to 3 keys: 12; to 2 keys: 4)``: what a key rotation waits on."""
    counts = Counter(e.keys for e in entries if e.kind == SUBMISSION and e.keys is not None)
    if not counts:
        return ""
    parts = [f"{keys} key{'' if keys == 1 else 's'}: {n}" for keys, n in sorted(counts.items())]
    return f" (sealed to {'; to '.join(parts)})"


def _day(mtime: float) -> str:
    return datetime.fromtimestamp(mtime, UTC).date().isoformat()
