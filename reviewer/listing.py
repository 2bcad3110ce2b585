"""`sealdrop spool SPOOL`: what a spool holds, told without any key and without changing it.

Each finished submission shows its padded size and its day (the spool writer
sets every file's mtime to midnight UTC of that day, so the day is all there
is to show). ``.part`` files are uploads in progress, or left by a crash until
the service's next start. Anything without sealdrop's magic is not ours.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..crypto import SpoolFileError, UnsupportedVersion, read_prefix
from ..spool_names import is_part
from ..units import human_size

SUBMISSION = "submission"
PART = "in progress or crashed"
NEWER = "newer sealdrop version"
FOREIGN = "not a sealdrop file"
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    size: int | None
    day: str | None


def run_spool(args: argparse.Namespace) -> int:
    directory: Path = args.spool
    try:
        entries = list_spool(directory)
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
    print(format_listing(directory, entries))
    return 0


def list_spool(directory: Path) -> list[Entry]:
    """Classify every name in `directory`, sorted by name. Reads at most 9 bytes a file."""
    with os.scandir(directory) as scan:
        names = sorted(entry.name for entry in scan)
    return [_classify(directory, name) for name in names]


def format_listing(directory: Path, entries: list[Entry]) -> str:
    rows = [("NAME", "KIND", "SIZE", "DAY")]
    for entry in entries:
        size = "" if entry.size is None else human_size(entry.size)
        rows.append((_printable(entry.name), entry.kind, size, entry.day or ""))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [f"Spool {_printable(str(directory))}", ""]
    for name, kind, size, day in rows:
        line = f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {size:>{widths[2]}}  {day}"
        lines.append(line.rstrip())
    counts = {kind: sum(1 for e in entries if e.kind == kind) for kind in (SUBMISSION, PART)}
    others = len(entries) - counts[SUBMISSION] - counts[PART]
    lines += [
        "",
        f"finished submissions: {counts[SUBMISSION]}",
        f".part files (upload in progress, or left by a crash): {counts[PART]}",
        f"other files (not finished submissions; look at them): {others}",
    ]
    return "\n".join(lines)


def _classify(directory: Path, name: str) -> Entry:
    path = directory / name
    try:
        info = os.lstat(path)
    except OSError:
        return Entry(name, UNREADABLE, None, None)
    if is_part(name):
        return Entry(name, PART, info.st_size, None)
    if not stat.S_ISREG(info.st_mode):
        return Entry(name, FOREIGN, None, None)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as source:
            read_prefix(source)
    except UnsupportedVersion:
        return Entry(name, NEWER, info.st_size, _day(info.st_mtime))
    except SpoolFileError:
        return Entry(name, FOREIGN, info.st_size, None)
    except OSError:
        return Entry(name, UNREADABLE, info.st_size, None)
    return Entry(name, SUBMISSION, info.st_size, _day(info.st_mtime))


def _day(mtime: float) -> str:
    return datetime.fromtimestamp(mtime, UTC).date().isoformat()


def _printable(text: str) -> str:
    # A planted name could carry terminal escape sequences; show it escaped instead.
    return text if text.isprintable() else ascii(text)[1:-1]
