"""Reply-signing keys: the reviewer signs every reply, the server shows only signed ones.

Without a signature, anyone who learns a source's reply public key once (from a
seized reviewer machine, a leaked `source.json`) could write reply files the server
would show as the reviewer's, for ever. So `sealdrop keygen` also makes an Ed25519
key pair: `reply-signing.key` (secret, sealed with the reviewer's passphrase exactly
like `reviewer.key`) stays offline; `reply-signing.pub` goes to the server (setting
`reply_signing_key_file`), which verifies each reply before it opens it. The
setting may also name a folder of such `.pub` files, one per reviewer who answers
(as `public_key_file` may for reviewer keys); a reply signed by any of them is shown.

Text forms (docs/FORMAT.md, "Signed reply files"):

    reply-signing.pub   "sealdrop-sig1" || base32(pk || BLAKE2b-32(pk, person "sealdrop-sig1")[:4])
    reply-signing.key   SIGNING_KEY_HEADER / "public key: " line / key line as in reviewer.key,
                        the sealed secret being the 32-byte Ed25519 seed
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import nacl.exceptions
from nacl.signing import SigningKey, VerifyKey

from .keys import (
    DEFAULT_KEY_NAME,
    PUBLIC_KEY_LABEL,
    SIGNING_KEY_HEADER,
    KdfCost,
    KeyChecksumMismatch,
    KeyFileError,
    KeyFileInaccessible,
    KeyPairMismatch,
    MalformedKey,
    key_file_lines,
    labelled_key,
    looks_like_secret_key,
    open_secret,
    read_key_text,
    seal_secret,
)
from .keys.files import create_key_pair_files, refuse_existing_files

SIGNING_PUBLIC_PREFIX = "sealdrop-sig1"
SIGNING_PUBLIC_FILENAME = "reply-signing.pub"
SIGNING_SECRET_FILENAME = "reply-signing.key"
MAX_SIGNING_KEYS = 16
_CHECKSUM_BYTES = 4
_BODY_CHARS = 58  # ceil((32 + 4) * 8 / 5)
_BASE32_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")


class SigningKeyError(KeyFileError):
    """A reply-signing key file or folder is unusable; the message names it and the fix."""


# --- text forms -------------------------------------------------------------------------


def encode_signing_public_key(key: VerifyKey) -> str:
    raw = bytes(key)
    body = base64.b32encode(raw + _checksum(raw)).decode("ascii").rstrip("=").lower()
    return SIGNING_PUBLIC_PREFIX + body


def decode_signing_public_key(text: str, source: str) -> VerifyKey:
    """Parse the one-line text form strictly; `source` names it in errors."""
    lines = key_file_lines(text, source)
    line = lines[0] if len(lines) == 1 else "\n".join(lines)
    again = f"copy the whole line from {SIGNING_PUBLIC_FILENAME} (made by sealdrop keygen) again"
    if not line.startswith(SIGNING_PUBLIC_PREFIX):
        raise MalformedKey(
            f"{source} is not a reply-signing public key: it must be one line starting "
            f"with {SIGNING_PUBLIC_PREFIX!r}; {again}"
        )
    body = line[len(SIGNING_PUBLIC_PREFIX) :]
    if len(body) != _BODY_CHARS or not set(body) <= _BASE32_ALPHABET:
        raise MalformedKey(f"{source} is a damaged reply-signing public key; {again}")
    decoded = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    raw, checksum = decoded[:32], decoded[32:]
    if checksum != _checksum(raw) or encode_signing_public_key(VerifyKey(raw)) != line:
        raise KeyChecksumMismatch(f"{source} fails its checksum; {again}")
    return VerifyKey(raw)


def encode_signing_secret_key(key: SigningKey, passphrase: str, cost: KdfCost) -> str:
    return (
        f"{SIGNING_KEY_HEADER}\n"
        f"{PUBLIC_KEY_LABEL}{encode_signing_public_key(key.verify_key)}\n"
        f"{seal_secret(bytes(key), passphrase, cost)}\n"
    )


def decode_signing_secret_key(text: str, passphrase: str, source: str) -> SigningKey:
    lines = key_file_lines(text, source)
    if len(lines) != 3 or lines[0] != SIGNING_KEY_HEADER:
        raise MalformedKey(
            f"{source} is not a reply-signing key file (its first line is not "
            f"{SIGNING_KEY_HEADER!r}); give the {SIGNING_SECRET_FILENAME} made by "
            "sealdrop keygen"
        )
    labelled = labelled_key(lines[1])
    if labelled is None:
        raise MalformedKey(f"{source} is damaged; restore it from your backup")
    public = decode_signing_public_key(labelled, source)
    key = SigningKey(open_secret(lines[2], passphrase, source))
    if key.verify_key != public:
        raise KeyPairMismatch(
            f"{source} names a public key that does not belong to its secret key: the "
            "file was edited; restore it from your backup"
        )
    return key


def _checksum(raw: bytes) -> bytes:
    person = SIGNING_PUBLIC_PREFIX.encode("ascii")
    return hashlib.blake2b(raw, digest_size=32, person=person).digest()[:_CHECKSUM_BYTES]


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
