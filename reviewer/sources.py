"""Source folders: the submissions that carry the same reply key, filed together.

A version 2 submission names the source's reply public key (records.SOURCE).
`sealdrop open` files every submission with the same key in one folder,
``source_<three words>``, whose words are drawn from a hash of the key: friendly
to say aloud, the same on every run, and unrelated to the source's codename. The
folder's ``source.json`` holds the key (which `sealdrop reply` seals to) and
lists the submissions in order: by day, the first contact before follow-ups of
the same day. Nothing finer than the day exists, on purpose, so follow-ups sent
on one day are listed by folder name, and the listing says so.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .. import durable
from ..codename import word_list
from ..records.source import FIRST_CONTACT, SourceIdentity, mailbox_id_for
from .unpack import FILE_MODE, MANIFEST_FILE

SOURCE_PREFIX = "source_"
SOURCE_FILE = "source.json"
SOURCE_FILE_VERSION = 1
_FRIENDLY_WORDS = 3
_FRIENDLY_PERSON = b"sealdrop-friend1"


class SourceFolderError(Exception):
    """A source folder's ``source.json`` is missing, unreadable or not sealdrop's: the
    reviewer (or a copy) changed it. The message names the folder and the fix."""


@dataclass(frozen=True)
class SourceInfo:
    """What ``source.json`` says: enough to reply, and the submissions in order."""

    name: str
    reply_public_key: bytes
    mailbox_id: bytes
    submissions: tuple[str, ...]


def friendly_name(reply_public_key: bytes) -> str:
    """``amber-falcon-otter``: three list words from a labelled hash of the reply key."""
    digest = hashlib.blake2b(reply_public_key, digest_size=16, person=_FRIENDLY_PERSON).digest()
    number = int.from_bytes(digest, "big")
    words = word_list()
    picked = []
    for _ in range(_FRIENDLY_WORDS):
        number, index = divmod(number, len(words))
        picked.append(words[index])
    return "-".join(picked)


def folder_for(out: Path, source: SourceIdentity) -> Path:
    """The source's folder in `out`, created with its ``source.json`` on first use.

    Two keys with the same three words (about one in 2^38) get ``-2``, ``-3``...
    """
    base = SOURCE_PREFIX + friendly_name(source.reply_public_key)
    counter = 1
    while True:
        folder = out / (base if counter == 1 else f"{base}-{counter}")
        if not os.path.lexists(folder):
            os.mkdir(folder, 0o700)
            _write_info(
                folder, SourceInfo(folder.name, source.reply_public_key, source.mailbox_id, ())
            )
            return folder
        if read_info(folder).reply_public_key == source.reply_public_key:
            return folder
        counter += 1


def read_info(folder: Path) -> SourceInfo:
    """Read and check a source folder's ``source.json``."""
    path = folder / SOURCE_FILE
    try:
        data = json.loads(path.read_text(encoding="ascii"))
        key = bytes.fromhex(data["reply_public_key"])
        mailbox = bytes.fromhex(data["mailbox_id"])
        submissions = tuple(str(name) for name in data.get("submissions", []))
        ok = data["sealdrop_source"] == SOURCE_FILE_VERSION and len(key) == 32
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SourceFolderError(
            f"{path} cannot be read as a sealdrop source file ({err}); give a folder made "
            "by `sealdrop open` (source_...), with its source.json as it was written"
        ) from None
    if not ok or mailbox != mailbox_id_for(key):
        raise SourceFolderError(
            f"{path} was changed: its key and mailbox id do not belong together; restore "
            "the folder from `sealdrop open` (open the spool files again into a new folder)"
        )
    return SourceInfo(str(data.get("name", folder.name)), key, mailbox, submissions)


def refresh_order(folder: Path) -> tuple[str, ...]:
    """Rewrite ``source.json`` with the folder's submissions in order; return that order."""
    info = read_info(folder)
    entries = []
    for child in folder.iterdir():
        manifest = child / MANIFEST_FILE
        if child.is_dir() and not child.is_symlink() and manifest.is_file():
            data = json.loads(manifest.read_text(encoding="ascii"))
            first = (data.get("source") or {}).get("kind") == "first contact"
            entries.append((str(data.get("day", "")), not first, child.name))
    order = tuple(name for _, _, name in sorted(entries))
    _write_info(folder, SourceInfo(info.name, info.reply_public_key, info.mailbox_id, order))
    return order


def language_to_answer_in(folder: Path) -> str | None:
    """The language of the pages the source used last (a tag), from the folder's
    submissions in order; None when none of them recorded one."""
    info = read_info(folder)
    language = None
    for name in info.submissions:
        try:
            data = json.loads((folder / name / MANIFEST_FILE).read_text(encoding="ascii"))
        except (OSError, ValueError):
            continue  # a submission removed by the reviewer: the others still tell
        tag = (data.get("language") or {}).get("tag")
        if isinstance(tag, str) and tag:
            language = tag
    return language


def kind_name(kind: int) -> str:
    return "first contact" if kind == FIRST_CONTACT else "follow-up"


def _write_info(folder: Path, info: SourceInfo) -> None:
    document = {
        "sealdrop_source": SOURCE_FILE_VERSION,
        "name": info.name,
        "note": (
            "Every submission in this folder was sent with the same codename. Reply with "
            f"`sealdrop reply {info.name} --out DIR`. Submissions are listed by day, the "
            "first contact first; sealdrop records no time finer than the day, so the order "
            "of follow-ups sent on the same day is not known."
        ),
        "reply_public_key": info.reply_public_key.hex(),
        "mailbox_id": info.mailbox_id.hex(),
        "submissions": list(info.submissions),
    }
    text = json.dumps(document, indent=2, ensure_ascii=True) + "\n"
    durable.replace_file(folder / SOURCE_FILE, text.encode("ascii"), FILE_MODE)
