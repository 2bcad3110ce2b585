"""Secret key files: format line, public key line, sealed key line.

The 32-byte secret (the reviewer's X25519 key, or the reply-signing Ed25519 seed of
signing.py, each under its own `KeyKind` header) is held in a SecretBox under an
Argon2id key derived from the reviewer's passphrase, with the costs stored in the
file and bounded before any derivation. Pure: text and passphrase in, key out.
"""

from __future__ import annotations

import base64
import binascii
import struct
import unicodedata
from dataclasses import dataclass
from typing import ClassVar

import nacl.exceptions
import nacl.utils
from nacl.public import PrivateKey, PublicKey
from nacl.pwhash import argon2id
from nacl.secret import SecretBox

from .errors import (
    IsPublicKey,
    KdfCostRefused,
    KeyChecksumMismatch,
    KeyDerivationFailed,
    KeyPairMismatch,
    MalformedKey,
    UnsupportedKeyVersion,
    WrongPassphrase,
)
from .public import decode_public_text, encode_public_text
from .text import (
    KEY_KINDS,
    PUBLIC_KEY_LABEL,
    REVIEWER_KEYS,
    SECRET_KEY_MARKER,
    KeyKind,
    key_file_lines,
    labelled_key,
)

_SALT_BYTES = argon2id.SALTBYTES
_PARAMS = struct.Struct(">IQ")  # opslimit (u32), memlimit (u64)
_NONCE_BYTES = SecretBox.NONCE_SIZE
_SEALED_SECRET_BYTES = PublicKey.SIZE + SecretBox.MACBYTES
_BLOB_BYTES = _SALT_BYTES + _PARAMS.size + _NONCE_BYTES + _SEALED_SECRET_BYTES
# Loading a key runs the KDF with the costs stored in the file. These ceilings keep
# a hostile or corrupted file from demanding more memory or time than a laptop has
# (4 GiB, and at most four times the SENSITIVE passes).
MAX_STORED_MEMLIMIT = 4 * 1024 * 1024 * 1024
MAX_STORED_OPSLIMIT = 16


@dataclass(frozen=True)
class KdfCost:
    """Argon2id costs: passes over memory (opslimit) and memory in bytes (memlimit)."""

    opslimit: int
    memlimit: int

    SENSITIVE: ClassVar[KdfCost]
    MODERATE: ClassVar[KdfCost]
    MIN: ClassVar[KdfCost]


KdfCost.SENSITIVE = KdfCost(argon2id.OPSLIMIT_SENSITIVE, argon2id.MEMLIMIT_SENSITIVE)
KdfCost.MODERATE = KdfCost(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)
# Only for tests: it makes the passphrase no harder to guess than a plain hash.
KdfCost.MIN = KdfCost(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)


def _normalise_passphrase(passphrase: str) -> bytes:
    # The same passphrase typed on another keyboard or OS may arrive composed or
    # decomposed; NFC makes both derive the same key.
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _derive_box(passphrase: str, salt: bytes, cost: KdfCost, source: str) -> SecretBox:
    try:
        key = argon2id.kdf(
            SecretBox.KEY_SIZE,
            _normalise_passphrase(passphrase),
            salt,
            opslimit=cost.opslimit,
            memlimit=cost.memlimit,
        )
    except nacl.exceptions.RuntimeError:
        raise KeyDerivationFailed(
            f"the passphrase key derivation for {source} failed; it needs "
            f"{cost.memlimit // (1024 * 1024)} MiB of free memory: close other programs "
            f"or use a machine with more memory"
        ) from None
    return SecretBox(key)


def seal_secret(secret: bytes, passphrase: str, cost: KdfCost) -> str:
    """The key line of a secret key file: base64 of salt, costs, nonce and the
    passphrase-sealed 32-byte `secret` (docs/FORMAT.md, "Secret key file")."""
    if not passphrase:
        raise ValueError("the passphrase must not be empty")
    salt = nacl.utils.random(_SALT_BYTES)
    nonce = nacl.utils.random(_NONCE_BYTES)
    box = _derive_box(passphrase, salt, cost, "the new secret key")
    sealed = box.encrypt(secret, nonce).ciphertext
    blob = salt + _PARAMS.pack(cost.opslimit, cost.memlimit) + nonce + sealed
    assert len(blob) == _BLOB_BYTES
    return base64.b64encode(blob).decode("ascii")


def encode_secret_key(key: PrivateKey, passphrase: str, cost: KdfCost) -> str:
    """The text of a reviewer secret key file."""
    return encode_secret_text(REVIEWER_KEYS, bytes(key.public_key), bytes(key), passphrase, cost)


def decode_secret_key(text: str, passphrase: str, source: str) -> PrivateKey:
    """Parse and decrypt a reviewer secret key file's text; `source` names it in errors."""
    public, secret = decode_secret_text(REVIEWER_KEYS, text, passphrase, source)
    key = PrivateKey(secret)
    check_pair(bytes(key.public_key) == public, source)
    return key


def encode_secret_text(
    kind: KeyKind, public: bytes, secret: bytes, passphrase: str, cost: KdfCost
) -> str:
    """The text of a `kind` secret key file: header line, public key line, sealed key line."""
    return (
        f"{kind.header}\n"
        f"{PUBLIC_KEY_LABEL}{encode_public_text(kind, public)}\n"
        f"{seal_secret(secret, passphrase, cost)}\n"
    )


def decode_secret_text(
    kind: KeyKind, text: str, passphrase: str, source: str
) -> tuple[bytes, bytes]:
    """The public key bytes a `kind` secret key file names, and the 32-byte secret it
    seals; the caller checks that they are a pair (`check_pair`), which only it can."""
    lines = key_file_lines(text, source)
    _check_header(kind, lines[0] if lines else "", source)
    labelled = labelled_key(lines[1]) if len(lines) == 3 else None
    if labelled is None:
        raise MalformedKey(
            f"{source} is damaged: a secret key file has exactly three lines (header, "
            f"{PUBLIC_KEY_LABEL!r} line, key line); restore it from your backup"
        )
    try:
        public = decode_public_text(kind, labelled, "")
    except (MalformedKey, KeyChecksumMismatch):
        raise MalformedKey(
            f"{source} is damaged: its {PUBLIC_KEY_LABEL!r} line is not a valid public "
            f"key; restore it from your backup"
        ) from None
    return public, open_secret(lines[2], passphrase, source)


def check_pair(matches: bool, source: str) -> None:
    """KeyPairMismatch unless the opened secret's public key is the one the file names."""
    if not matches:
        raise KeyPairMismatch(
            f"{source} names a public key that does not belong to its secret key: the "
            f"file was edited; restore it from your backup"
        )


def open_secret(line: str, passphrase: str, source: str) -> bytes:
    """The 32-byte secret sealed in a secret key file's key line (see `seal_secret`)."""
    try:
        blob = base64.b64decode(line, validate=True)
    except binascii.Error:
        blob = b""
    if len(blob) != _BLOB_BYTES:
        raise MalformedKey(
            f"{source} is damaged: its key line is not {_BLOB_BYTES} bytes of base64; "
            f"restore it from your backup"
        )
    salt, rest = blob[:_SALT_BYTES], blob[_SALT_BYTES:]
    opslimit, memlimit = _PARAMS.unpack_from(rest)
    rest = rest[_PARAMS.size :]
    nonce, sealed = rest[:_NONCE_BYTES], rest[_NONCE_BYTES:]
    cost = KdfCost(opslimit, memlimit)
    _check_stored_cost(cost, source)
    box = _derive_box(passphrase, salt, cost, source)
    try:
        return box.decrypt(sealed, nonce)
    except nacl.exceptions.CryptoError:
        raise WrongPassphrase(
            f"the passphrase does not open {source}: check it and try again (or the "
            f"file was altered: restore it from your backup)"
        ) from None


def _check_header(kind: KeyKind, header: str, source: str) -> None:
    if header == kind.header:
        return
    other = next((k for k in KEY_KINDS if header == k.header), None)
    if other is not None:
        raise MalformedKey(
            f"{source} is the {other.secret_name} file; this needs the {kind.secret_name} "
            f"file ({kind.secret_filename})"
        )
    if any(header.startswith(k.prefix) for k in KEY_KINDS):
        raise IsPublicKey(
            f"{source} is a public key; this needs the secret key file "
            f"({kind.secret_filename}) from the offline machine"
        )
    if header.startswith(SECRET_KEY_MARKER):
        raise UnsupportedKeyVersion(
            f"{source} is a sealdrop secret key of a format this version does not "
            f"know ({header!r}); upgrade sealdrop on the reviewer machine"
        )
    raise MalformedKey(
        f"{source} is not a {kind.secret_name} file (its first line is not "
        f"{kind.header!r}); give the {kind.secret_filename} made by `sealdrop keygen`"
    )


def _check_stored_cost(cost: KdfCost, source: str) -> None:
    ops_ok = argon2id.OPSLIMIT_MIN <= cost.opslimit <= MAX_STORED_OPSLIMIT
    mem_ok = argon2id.MEMLIMIT_MIN <= cost.memlimit <= MAX_STORED_MEMLIMIT
    if not (ops_ok and mem_ok):
        raise KdfCostRefused(
            f"{source} asks for a key derivation cost out of bounds (opslimit "
            f"{cost.opslimit}, memlimit {cost.memlimit} bytes; at most "
            f"{MAX_STORED_OPSLIMIT} and {MAX_STORED_MEMLIMIT}): it is damaged or was not "
            f"made by sealdrop; restore it from your backup"
        )
