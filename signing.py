"""Reply-signing keys: the reviewer signs every reply, the server shows only signed ones.

Without a signature, anyone who learns a source's reply public key once (from a
seized reviewer machine, a leaked `source.json`) could write reply files the server
would show as the reviewer's, for ever. So `sealdrop keygen` also makes an Ed25519
key pair: `reply-signing.key` (secret, sealed with the reviewer's passphrase exactly
like `reviewer.key`) stays offline; `reply-signing.pub` goes to the server (setting
`reply_signing_key_file`), which verifies each reply before it opens it. The
setting may also name a folder of such `.pub` files, one per reviewer who answers
(as `public_key_file` may for reviewer keys); a reply signed by any of them is shown.

Text forms (docs/FORMAT.md, "Signed reply files"): those of the reviewer's key files
under their own prefix and header (keys.REPLY_SIGNING_KEYS), read and written by the
same code (keys/public.py, keys/secret.py), the sealed secret being the 32-byte
Ed25519 seed:

    reply-signing.pub   "sealdrop-sig1" || base32(pk || BLAKE2b-32(pk, person "sealdrop-sig1")[:4])
    reply-signing.key   SIGNING_KEY_HEADER / "public key: " line / key line as in reviewer.key
"""

from __future__ import annotations

import os
from pathlib import Path

import nacl.exceptions
from nacl.signing import SigningKey, VerifyKey

from .keys import (
    DEFAULT_KEY_NAME,
    KdfCost,
    KeyFileError,
    KeyFileInaccessible,
    looks_like_secret_key,
    read_key_text,
)
from .keys.files import create_key_pair_files, refuse_existing_files
from .keys.public import decode_public_text, encode_public_text
from .keys.secret import check_pair, decode_secret_text, encode_secret_text
from .keys.text import REPLY_SIGNING_KEYS

SIGNING_PUBLIC_PREFIX = REPLY_SIGNING_KEYS.prefix
SIGNING_PUBLIC_FILENAME = REPLY_SIGNING_KEYS.public_filename
SIGNING_SECRET_FILENAME = REPLY_SIGNING_KEYS.secret_filename
MAX_SIGNING_KEYS = 16


class SigningKeyError(KeyFileError):
    """A reply-signing key file or folder is unusable; the message names it and the fix."""


# --- text forms -------------------------------------------------------------------------


def encode_signing_public_key(key: VerifyKey) -> str:
    return encode_public_text(REPLY_SIGNING_KEYS, bytes(key))


def decode_signing_public_key(text: str, source: str) -> VerifyKey:
    """Parse the one-line text form strictly; `source` names it in errors."""
    return VerifyKey(decode_public_text(REPLY_SIGNING_KEYS, text, source))


def encode_signing_secret_key(key: SigningKey, passphrase: str, cost: KdfCost) -> str:
    return encode_secret_text(
        REPLY_SIGNING_KEYS, bytes(key.verify_key), bytes(key), passphrase, cost
    )


def decode_signing_secret_key(text: str, passphrase: str, source: str) -> SigningKey:
    public, seed = decode_secret_text(REPLY_SIGNING_KEYS, text, passphrase, source)
    key = SigningKey(seed)
    check_pair(bytes(key.verify_key) == public, source)
    return key


# --- files ------------------------------------------------------------------------------


def signing_file_paths(directory: Path, name: str = DEFAULT_KEY_NAME) -> tuple[Path, Path]:
    """The reply-signing pair that goes with the reviewer key pair `name` (keys/):
    reply-signing.pub/.key for the default name, NAME-reply-signing.pub/.key otherwise,
    so that a team's keys can be made side by side."""
    prefix = "" if name == DEFAULT_KEY_NAME else f"{name}-"
    return directory / (prefix + SIGNING_PUBLIC_FILENAME), directory / (
        prefix + SIGNING_SECRET_FILENAME
    )


def write_signing_key_pair(
    directory: Path,
    passphrase: str,
    cost: KdfCost = KdfCost.SENSITIVE,
    name: str = DEFAULT_KEY_NAME,
) -> tuple[Path, Path]:
    """A new reply-signing pair in `directory`: (public path, secret path). Never
    overwrites; the secret file is 0600 from its creation."""
    public_path, secret_path = signing_file_paths(directory, name)
    refuse_existing_signing_files(directory, name)
    key = SigningKey.generate()
    create_key_pair_files(
        public_path,
        encode_signing_public_key(key.verify_key) + "\n",
        secret_path,
        encode_signing_secret_key(key, passphrase, cost),
    )
    return public_path, secret_path


def refuse_existing_signing_files(directory: Path, name: str = DEFAULT_KEY_NAME) -> None:
    refuse_existing_files(signing_file_paths(directory, name))


def load_signing_secret_key(path: Path, passphrase: str) -> SigningKey:
    return decode_signing_secret_key(
        read_key_text(path, "reply-signing key"), passphrase, str(path)
    )


def load_signing_public_keys(path: Path) -> tuple[VerifyKey, ...]:
    """The server's reply-signing public keys: one `.pub` file, or a folder of them (1 to
    MAX_SIGNING_KEYS). A secret key, a duplicate or any other file stops start-up."""
    if not path.is_dir():
        return (_load_public(path),)
    try:
        names = sorted(os.listdir(path))
    except OSError as err:
        raise KeyFileInaccessible(f"cannot list {path}: {err.strerror}") from None
    found: list[VerifyKey] = []
    for name in names:
        entry = path / name
        if not name.endswith(".pub"):
            raise SigningKeyError(
                f"{entry} is not a reply-signing public key (NAME.pub); the folder "
                f"{path} must hold only those: move it away"
            )
        key = _load_public(entry)
        if key in found:
            raise SigningKeyError(f"{entry} repeats another key in {path}: delete it")
        found.append(key)
    if not 1 <= len(found) <= MAX_SIGNING_KEYS:
        raise SigningKeyError(
            f"{path} holds {len(found)} reply-signing public keys; put 1 to "
            f"{MAX_SIGNING_KEYS} {SIGNING_PUBLIC_FILENAME} files there"
        )
    return tuple(found)


def _load_public(path: Path) -> VerifyKey:
    text = read_key_text(path, "reply-signing public key")
    if looks_like_secret_key(text):
        raise SigningKeyError(
            f"{path} is a SECRET key; the server needs only {SIGNING_PUBLIC_FILENAME}. "
            "Delete this copy from the server and keep the secret key offline"
        )
    return decode_signing_public_key(text, str(path))


def verify(key: VerifyKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True
