"""The reviewer's keys on the server: the public keys load, and no SECRET key lies
anywhere the server can read (next to the public key or the config file, in the
spool, state or replies folder)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..keys import KeyFileError, KeyFileInaccessible, looks_like_secret_key
from ..recipients import load_recipients
from ..signing import load_signing_public_keys
from .findings import Finding, ok, problem, problem_from_message
from .targets import Targets

# A reviewer secret key file is a few hundred bytes, and `keys` refuses any key file
# over 64 KiB; a bigger file is read only at its start, where an accidental copy of
# a key (a file renamed, say) would be, so big spool files cost little to scan.
_SMALL_FILE_BYTES = 64 * 1024
_HEAD_BYTES = 4 * 1024


def check_public_keys(path: Path) -> Iterator[Finding]:
    """One line per configured reviewer key (label and key text), or the one refusal."""
    try:
        reviewers = load_recipients(path)
    except KeyFileInaccessible as err:
        yield problem(
            f"public key: {err}",
            "give the path of reviewer.pub, or of a folder of .pub files (public_key_file), "
            "and make it readable by the service's user",
        )
        return
    except KeyFileError as err:
        yield problem_from_message(f"public key: {err}", "give the reviewers' .pub files")
        return
    count = f"{len(reviewers)} reviewer key{'' if len(reviewers) == 1 else 's'}"
    yield ok(f"{count} in {path}; each submission is sealed to every one")
    for reviewer in reviewers:
        yield ok(f"reviewer key {reviewer.label!r}: {reviewer.fingerprint}")


def check_reply_signing(path: Path | None) -> Finding:
    """Replies are on: the keys that sign them, exactly as ``serve`` loads them."""
    if path is None:
        return problem(
            "replies are on but reply_signing_key_file is not set: no reply is shown to sources",
            "copy the reviewer's reply-signing.pub (made by sealdrop keygen) to the server "
            "and name it in reply_signing_key_file",
        )
    try:
        signers = load_signing_public_keys(path)
    except KeyFileError as err:
        return problem_from_message(
            f"reply-signing key: {err}", "give the reviewer's reply-signing.pub"
        )
    return ok(f"reply-signing keys: {len(signers)} in {path}; only replies they sign are shown")


def secret_key_places(targets: Targets) -> list[tuple[Path, bool]]:
    """Folders to scan, each with whether to descend into subfolders.

    The spool, state and replies folders belong to sealdrop, so all of each is scanned; the
    folders holding the public key and the config file may be shared (/etc/sealdrop,
    a home folder), so only the files directly in them.
    """
    places: list[tuple[Path, bool]] = []
    keys = targets.public_key_file
    for path, recursive in (
        (keys.parent if keys else None, False),
        # A folder of .pub files: its own files too (load_recipients refuses strays).
        (keys if keys and os.path.isdir(keys) else None, False),
        (targets.config_file.parent if targets.config_file else None, False),
        (targets.spool_dir, True),
        (targets.state_dir, True),
        (targets.replies_dir, True),
    ):
        if path is not None and os.path.isdir(path):
            places.append((path, recursive))
    return places


def scan_for_secret_keys(places: Iterable[tuple[Path, bool]]) -> Iterator[Finding]:
    """A PROBLEM for each file holding a reviewer secret key, and for each file that
    cannot be read (it could be one); one OK if the places are clean."""
    seen: set[tuple[int, int]] = set()
    scanned_places: list[str] = []
    clean = True
    for folder, recursive in places:
        scanned_places.append(str(folder))
        for path in _files_in(folder, recursive):
            try:
                info = path.stat()
            except OSError:
                continue  # a dangling symlink holds nothing
            if (info.st_dev, info.st_ino) in seen or not stat.S_ISREG(info.st_mode):
                continue
            seen.add((info.st_dev, info.st_ino))
            finding = _scan_file(path, info.st_size)
            if finding is not None:
                clean = False
                yield finding
    if clean and scanned_places:
        yield ok(f"no reviewer secret key in {', '.join(scanned_places)}")


def _files_in(folder: Path, recursive: bool) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return  # an unreadable folder is reported by the permission checks
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if recursive:
                yield from _files_in(Path(entry.path), recursive)
        else:
            yield Path(entry.path)


def _scan_file(path: Path, size: int) -> Finding | None:
    limit = _SMALL_FILE_BYTES if size <= _SMALL_FILE_BYTES else _HEAD_BYTES
    try:
        with path.open("rb") as handle:
            data = handle.read(limit)
    except OSError as err:
        return problem(
            f"{path} cannot be read ({err.strerror}), so it cannot be checked for a "
            "reviewer secret key",
            "make it readable by the user running `sealdrop check`, or move it out",
        )
    if looks_like_secret_key(data):
        return problem(
            f"{path} holds a reviewer SECRET key; the server must never have it",
            f"delete it securely (shred -u {path}); the secret key belongs only on the "
            "reviewer's offline machine; if it has been on this server, make a new key "
            "pair and give the service the new reviewer.pub",
        )
    return None
