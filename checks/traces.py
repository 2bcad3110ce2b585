"""What a seized disk could tell that the service cannot prevent (docs/SEIZURE.md).

Each is a ``WARNING`` (it does not change the exit status): a data file system
mounted without ``noatime``, reply files the service does not own, and the days on
which uploads failed, which are counted, never logged (storage/counters.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..private_folder import user_name
from ..replies import parse_reply_name
from ..storage.counters import COUNTERS_FILE, read_counts
from .findings import Finding, ok, problem, warning


def check_noatime(folders: list[Path]) -> Iterator[Finding]:
    """Each file system holding a data folder should be mounted noatime (or be tmpfs)."""
    mounts = _mounts()
    seen: set[str] = set()
    for folder in folders:
        mount = _mount_of(folder, mounts)
        if mount is None or mount[0] in seen:
            continue
        point, fs_type, options = mount
        seen.add(point)
        if "noatime" in options or fs_type in ("tmpfs", "ramfs"):
            yield ok(f"{folder} is on {point} ({fs_type}), which keeps no access times")
        else:
            yield warning(
                f"{folder} is on {point} ({fs_type}), mounted without noatime: sealdrop reads "
                "without access times, but any other reader (ls, cp, a backup) stamps them",
                f"add noatime to {point}'s options in /etc/fstab and remount "
                f"(`mount -o remount,noatime {point}`)",
            )


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, file system type, per-mount options) from /proc/self/mountinfo."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        fields = line.split()
        if "-" not in fields or len(fields) < 7:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        fs_type = fields[fields.index("-") + 1]
        mounts.append((point, fs_type, set(fields[5].split(","))))
    return mounts


def _mount_of(
    folder: Path, mounts: list[tuple[str, str, set[str]]]
) -> tuple[str, str, set[str]] | None:
    try:
        real = folder.resolve()
    except OSError:
        return None
    found = None
    for mount in mounts:  # later lines mount over earlier ones
        point = Path(mount[0])
        if (real == point or point in real.parents) and (
            found is None or len(mount[0]) >= len(found[0])
        ):
            found = mount
    return found


def check_reply_owners(replies_dir: Path) -> Finding:
    """Reply files the service does not own cannot be read without an access time."""
    try:
        names = [n for n in os.listdir(replies_dir) if parse_reply_name(n)]
        foreign = [n for n in names if os.lstat(replies_dir / n).st_uid != os.geteuid()]
    except OSError as err:
        return problem(
            f"the replies folder {replies_dir} cannot be listed ({err.strerror})",
            "check its owner and mode (700)",
        )
    if not foreign:
        return ok(f"every reply file in {replies_dir} belongs to {user_name(os.geteuid())}")
    return warning(
        f"{len(foreign)} reply file(s) in {replies_dir} belong to another user: they are "
        "not shown until the service's sweep replaces them by copies of its own",
        f"copy replies in as the service's user (`install -o {user_name(os.geteuid())} "
        f"-m 600 FILE {replies_dir}/`), or wait for the next sweep",
    )


def check_failure_counts(state_dir: Path) -> Finding:
    """The failed uploads counted per day (never logged: a log line would date a visit)."""
    try:
        days = read_counts(state_dir)
    except (OSError, ValueError) as err:
        return warning(
            f"the failure counts in {state_dir / COUNTERS_FILE} cannot be read ({err})",
            "nothing to do: the service rewrites the file at its next count",
        )
    failed = {day: counts for day, counts in days.items() if any(counts.values())}
    if not failed:
        return ok("no upload refused or lost, and no worker died, in the days counted")
    summary = "; ".join(
        f"{day}: " + ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in sorted(c.items()))
        for day, c in sorted(failed.items())
    )
    return warning(
        f"failures counted per day ({summary})",
        "for 'refused full', collect spool files or add disk space; for 'lost', check the "
        "disk and the system log; for 'worker died', check memory (journalctl -k)",
    )
