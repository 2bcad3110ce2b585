"""The seizure audit's tools: an inventory of every file a stopped server left, with all
four times (statx's birth time through coreutils' ``stat``), and what each file is.

tests/test_seizure.py takes the inventory; scripts/seizure_report renders the JSON it
writes into docs/SEIZURE.md. Every path is classified into a *kind* here, in one
place: the report explains each kind, and refuses to render one it has no words for.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from sealdrop.crypto import MAGIC
from sealdrop.replies import REPLY_MAGIC, SIGNED_MAGIC

SEIZURE_OUT_ENV = "SEALDROP_SEIZURE_OUT"
# The first bytes that name what a file holds; anything else is text, json or binary.
_MAGICS = (
    (MAGIC, "sealed (spool file)"),
    (REPLY_MAGIC, "sealed (reply)"),
    (SIGNED_MAGIC, "signed, sealed (reply)"),
    (b"== ed25519v1-secret", "onion service secret key"),
)
DAY = 86_400
_HEX32 = r"[0-9a-f]{32}"

# (kind, pattern on the path relative to the service root) — first match wins.
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("spool folder", r"spool"),
        ("submission", rf"spool/{_HEX32}\.sealed"),
        ("pool folder", r"spool/\.pool"),
        ("pool file", rf"spool/\.pool/{_HEX32}"),
        ("replies folder", r"replies"),
        ("reply", rf"replies/{_HEX32}-{_HEX32}\.reply"),
        ("state folder", r"state"),
        ("codename salt", r"state/codename\.salt"),
        ("failure counters", r"state/failures\.json"),
        ("onion service key", r"state/hs_ed25519_secret_key|state/onion[^/]*"),
        ("tor data folder", r"state/tor"),
        ("tor log", r"state/tor/tor\.log"),
        ("tor state", r"state/tor/state"),
        ("tor lock", r"state/tor/lock"),
        ("tor keys", r"state/tor/keys(/.*)?"),
        ("tor control cookie", r"state/tor/control_auth_cookie"),
        ("tor cache", r"state/tor/cached-.*"),
        ("temporary folder", r"tmp"),
        ("service output", r"output(/stdout|/stderr)?"),
        ("shared memory", r"dev-shm/.*"),
    )
)


@dataclasses.dataclass
class Item:
    """One file or folder as a seizure finds it; times in nanoseconds since the epoch."""

    path: str
    kind: str
    type: str
    size: int
    mode: str
    inode: int
    atime: int
    mtime: int
    ctime: int
    btime: int | None
    content: str

    def times(self) -> dict[str, int]:
        named = {"atime": self.atime, "mtime": self.mtime, "ctime": self.ctime}
        if self.btime is not None:
            named["btime"] = self.btime
        return named


def kind_of(relative: str) -> str:
    for kind, pattern in KINDS:
        if pattern.fullmatch(relative):
            return kind
    return "unexplained"


def birth_times(paths: list[Path]) -> dict[Path, int | None]:
    """statx birth times in ns (None where the file system keeps none), via ``stat``.

    Python 3.11 has no st_birthtime on Linux; coreutils' ``%.9W`` asks statx."""
    found: dict[Path, int | None] = {}
    for start in range(0, len(paths), 200):
        batch = paths[start : start + 200]
        out = subprocess.run(
            ["stat", "--format=%.9W", "--", *map(str, batch)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for path, text in zip(batch, out, strict=True):
            seconds, _, fraction = text.partition(".")
            value = int(seconds) * 10**9 + int(fraction.ljust(9, "0")[:9] or 0)
            found[path] = value or None
    return found


def inventory(root: Path, places: Iterable[Path]) -> list[Item]:
    """Every file and folder under `places` (themselves included), paths relative to
    `root`; nothing is read, so no access time changes."""
    paths: list[Path] = []
    for place in places:
        if os.path.lexists(place):
            paths += _walk(place)
    births = birth_times(paths)
    items = []
    for path in paths:
        info = os.lstat(path)
        relative = path.relative_to(root).as_posix()
        items.append(
            Item(
                path=relative,
                kind=kind_of(relative),
                type=_type_name(info.st_mode),
                size=info.st_size,
                mode=f"{stat.S_IMODE(info.st_mode):04o}",
                inode=info.st_ino,
                atime=info.st_atime_ns,
                mtime=info.st_mtime_ns,
                ctime=info.st_ctime_ns,
                btime=births[path],
                content=content_of(path, info.st_mode, info.st_size),
            )
        )
    return items


def content_of(path: Path, mode: int, size: int) -> str:
    """What a file holds, from its first bytes (read with O_NOATIME: no time changes)."""
    if not stat.S_ISREG(mode):
        return _type_name(mode)
    if size == 0:
        return "empty"
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOATIME)
    try:
        head = os.read(fd, 4096)
    finally:
        os.close(fd)
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    return "json" if head.lstrip().startswith(b"{") else "text"


def _walk(path: Path) -> list[Path]:
    """`path` and everything under it, folders listed with O_NOATIME: taking the
    inventory must not stamp a folder's access time itself."""
    found = [path]
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        return found
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOATIME)
    try:
        with os.scandir(fd) as scan:
            names = sorted(entry.name for entry in scan)
    finally:
        os.close(fd)
    for name in names:
        found += _walk(path / name)
    return found


def _type_name(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def is_midnight(ns: int) -> bool:
    return ns % (DAY * 10**9) == 0


def utc(ns: int) -> str:
    """A time as a seizure would read it: UTC, to the microsecond."""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def write_results(results: dict[str, object]) -> None:
    """Write the audit's JSON for scripts/seizure_report into $SEALDROP_SEIZURE_OUT."""
    out = os.environ.get(SEIZURE_OUT_ENV)
    if not out:
        return
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seizure.json").write_text(json.dumps(results, indent=1) + "\n")
