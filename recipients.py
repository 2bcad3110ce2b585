"""The reviewer keys every submission is sealed to: one ``.pub`` file, or a folder of them.

The `public_key_file` setting names either one public key file (``reviewer.pub``,
as it always could) or a folder holding only ``*.pub`` files, one per reviewer key:
a team, and a backup key kept offline. A key's label is its file name without
``.pub`` (``sealdrop keygen --name alice`` writes ``alice.pub``), so the label needs
no change to the key text and cannot disagree with what the operator sees.

The folder is strict. Anything else in it stops start-up, named: a stray
``reviewer.key`` skipped in silence would still be a secret key on the server, and
a skipped ``alice.pub.old`` might be the key the operator thinks the team uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nacl.public import PublicKey

from .crypto import MAX_RECIPIENTS
from .keys import (
    IsSecretKey,
    KeyFileError,
    KeyFileInaccessible,
    encode_public_key,
    load_public_key,
)

PUBLIC_SUFFIX = ".pub"


class RecipientsRefused(KeyFileError):
    """The configured reviewer keys cannot be used together: a folder entry that is
    not a ``*.pub`` file, no key at all, the same key twice, or more than 16 keys.

    Raised by `load_recipients` before the service starts (and by `sealdrop check`);
    the message names the file and the fix, for the operator.
    """


@dataclass(frozen=True)
class ReviewerKey:
    """One configured reviewer public key, with the label and file it came from."""

    label: str
    path: Path
    key: PublicKey

    @property
    def fingerprint(self) -> str:
        # The public key text itself: it is what keygen printed and what the
        # reviewer can compare, character by character, with their own .pub file.
        return encode_public_key(self.key)


def load_recipients(path: Path) -> list[ReviewerKey]:
    """The reviewer keys `path` names (a .pub file, or a folder of them), in name order.

    Raises a KeyFileError subclass naming the file: IsSecretKey for a secret key
    anywhere in the folder, RecipientsRefused for the rules above, and the key
    reader's own errors for a file that is not a valid public key.
    """
    files = _key_files(path) if path.is_dir() else [path]
    keys = [ReviewerKey(_label(file), file, load_public_key(file)) for file in files]
    _refuse_duplicates(keys)
    if len(keys) > MAX_RECIPIENTS:
        raise RecipientsRefused(
            f"{path} holds {len(keys)} public keys, but a submission is sealed to at most "
            f"{MAX_RECIPIENTS}; remove {len(keys) - MAX_RECIPIENTS} of them"
        )
    return keys


def _key_files(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as scan:
            entries = sorted((entry.name, Path(entry.path)) for entry in scan)
    except OSError as err:
        raise KeyFileInaccessible(
            f"cannot read the reviewer key folder {folder}: {err.strerror}"
        ) from None
    strays = [path for name, path in entries if not _is_key_file_name(name)]
    for stray in strays:
        if stray.is_file():
            # A secret key under any name is the worst stray: say so, not "wrong name".
            _refuse_if_secret(stray)
    if strays:
        raise RecipientsRefused(
            f"{strays[0]} is in the reviewer key folder {folder} but is not a public key "
            f"file (*{PUBLIC_SUFFIX}); move it out: the folder holds only the reviewers' "
            f"{PUBLIC_SUFFIX} files"
        )
    files = [path for _, path in entries]
    if not files:
        raise RecipientsRefused(
            f"the reviewer key folder {folder} holds no *{PUBLIC_SUFFIX} file; put the "
            "reviewers' public keys (made by `sealdrop keygen`) in it"
        )
    return files


def _is_key_file_name(name: str) -> bool:
    return name.endswith(PUBLIC_SUFFIX) and len(name) > len(PUBLIC_SUFFIX) and name[0] != "."


def _refuse_if_secret(path: Path) -> None:
    try:
        load_public_key(path)
    except IsSecretKey:
        raise
    except KeyFileError:
        return  # not a secret key: the caller refuses it for its name


def _label(path: Path) -> str:
    return path.name.removesuffix(PUBLIC_SUFFIX)


def _refuse_duplicates(keys: list[ReviewerKey]) -> None:
    seen: dict[bytes, ReviewerKey] = {}
    for key in keys:
        first = seen.setdefault(bytes(key.key), key)
        if first is not key:
            raise RecipientsRefused(
                f"{first.path} and {key.path} hold the same public key; remove one of them"
            )
