"""The reviewer's public key as text: ``sealdrop-pub1`` and checksummed base32.

Lowercase unpadded base32 of the 32-byte X25519 key and a 4-byte checksum, so a
key that was mistyped, truncated or pasted into the wrong place is refused
instead of silently sealing uploads to nobody. Pure: text in, key out.
"""

from __future__ import annotations

import base64
import hashlib

from nacl.public import PublicKey

from .errors import IsSecretKey, KeyChecksumMismatch, MalformedKey
from .text import (
    BLANKS,
    PUBLIC_KEY_FILENAME,
    PUBLIC_KEY_PREFIX,
    SECRET_KEY_FILENAME,
    key_file_lines,
    looks_like_secret_key,
)

# The BLAKE2b personalisation ties the checksum to this encoding: the same key
# bytes hashed anywhere else cannot produce a matching checksum by accident.
_CHECKSUM_PERSON = PUBLIC_KEY_PREFIX.encode("ascii")
_CHECKSUM_BYTES = 4
_KEY_BYTES = PublicKey.SIZE
_BASE32_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_BODY_CHARS = 58  # ceil((32 + 4) * 8 / 5)


def encode_public_key(key: PublicKey) -> str:
    """The one-line text form of a reviewer public key."""
    raw = bytes(key)
    body = base64.b32encode(raw + _checksum(raw)).decode("ascii").rstrip("=").lower()
    return PUBLIC_KEY_PREFIX + body


def decode_public_key(text: str) -> PublicKey:
    """Parse the one-line public key text (surrounding whitespace is ignored)."""
    return decode_public_key_from(text, "the public key text")


def _checksum(raw_key: bytes) -> bytes:
    digest = hashlib.blake2b(raw_key, digest_size=32, person=_CHECKSUM_PERSON).digest()
    return digest[:_CHECKSUM_BYTES]


def decode_public_key_from(text: str, source: str) -> PublicKey:
    """`source` names where the text came from, for the error messages."""
    if looks_like_secret_key(text):
        raise IsSecretKey(secret_key_refusal(source))
    lines = key_file_lines(text, source)
    line = lines[0] if len(lines) == 1 else "\n".join(lines)
    if not line.startswith(PUBLIC_KEY_PREFIX):
        raise MalformedKey(
            f"{source} is not a sealdrop public key: it must be one line starting with "
            f"{PUBLIC_KEY_PREFIX!r}; use the line from the reviewer's {PUBLIC_KEY_FILENAME}"
        )
    body = line[len(PUBLIC_KEY_PREFIX) :]
    if any(char in BLANKS or char == "\n" for char in body):
        raise MalformedKey(
            f"{source} holds more than the public key (spaces or several lines); "
            f"it must be exactly the one line from {PUBLIC_KEY_FILENAME}"
        )
    if len(body) != _BODY_CHARS:
        raise MalformedKey(
            f"{source} has {len(body)} characters after {PUBLIC_KEY_PREFIX!r} where a "
            f"public key has {_BODY_CHARS}: it was truncated or has characters added; "
            f"copy the whole line from {PUBLIC_KEY_FILENAME} again"
        )
    for position, char in enumerate(body, start=len(PUBLIC_KEY_PREFIX) + 1):
        if char not in _BASE32_ALPHABET:
            raise MalformedKey(
                f"{source} has a character at position {position} that cannot appear in "
                f"a public key (only a-z and 2-7): it was mistyped; copy the whole line "
                f"from {PUBLIC_KEY_FILENAME} again"
            )
    decoded = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    raw, checksum = decoded[:_KEY_BYTES], decoded[_KEY_BYTES:]
    # Re-encoding catches a changed last character that only touches padding bits.
    if checksum != _checksum(raw) or encode_public_key(PublicKey(raw)) != line:
        raise KeyChecksumMismatch(
            f"{source} fails its checksum: a character was mistyped or changed in "
            f"copying; copy the whole line from {PUBLIC_KEY_FILENAME} again"
        )
    return PublicKey(raw)


def secret_key_refusal(source: str) -> str:
    return (
        f"{source} is a reviewer SECRET key; the server needs the public key file "
        f"({PUBLIC_KEY_FILENAME}). Never copy {SECRET_KEY_FILENAME} to the server."
    )
