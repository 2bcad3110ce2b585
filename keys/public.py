"""Public keys as text: a kind's prefix (``sealdrop-pub1``, ``sealdrop-sig1``) and
checksummed base32.

Lowercase unpadded base32 of the 32-byte key and a 4-byte checksum, so a key that
was mistyped, truncated or pasted into the wrong place is refused instead of
silently sealing uploads to nobody (or trusting nobody's replies). The reviewer's
X25519 key and the reply-signing Ed25519 key (signing.py) are written and read here
alike, each under its own `KeyKind`. Pure: text in, key bytes out.
"""

from __future__ import annotations

import base64
import hashlib

from nacl.public import PublicKey

from .errors import IsSecretKey, KeyChecksumMismatch, MalformedKey
from .text import BLANKS, REVIEWER_KEYS, KeyKind, key_file_lines, looks_like_secret_key

_CHECKSUM_BYTES = 4
_KEY_BYTES = 32  # an X25519 or an Ed25519 public key
_BASE32_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_BODY_CHARS = 58  # ceil((32 + 4) * 8 / 5)


def encode_public_key(key: PublicKey) -> str:
    """The one-line text form of a reviewer public key."""
    return encode_public_text(REVIEWER_KEYS, bytes(key))


def decode_public_key(text: str) -> PublicKey:
    """Parse the one-line public key text (surrounding whitespace is ignored)."""
    return decode_public_key_from(text, "the public key text")


def decode_public_key_from(text: str, source: str) -> PublicKey:
    """`source` names where the text came from, for the error messages."""
    return PublicKey(decode_public_text(REVIEWER_KEYS, text, source))


def encode_public_text(kind: KeyKind, raw: bytes) -> str:
    """The one-line text form of the 32-byte public key `raw` of this `kind`."""
    body = base64.b32encode(raw + _checksum(kind, raw)).decode("ascii").rstrip("=").lower()
    return kind.prefix + body


def _checksum(kind: KeyKind, raw_key: bytes) -> bytes:
    # The BLAKE2b personalisation (the kind's prefix) ties the checksum to this encoding
    # and kind: the same key bytes under another prefix fail it.
    person = kind.prefix.encode("ascii")
    digest = hashlib.blake2b(raw_key, digest_size=32, person=person).digest()
    return digest[:_CHECKSUM_BYTES]


def decode_public_text(kind: KeyKind, text: str, source: str) -> bytes:
    """The 32 key bytes of a `kind` public key's text, read strictly; `source` names
    where the text came from, for the error messages."""
    if looks_like_secret_key(text):
        raise IsSecretKey(secret_key_refusal(source, kind))
    lines = key_file_lines(text, source)
    line = lines[0] if len(lines) == 1 else "\n".join(lines)
    again = f"copy the whole line from {kind.public_filename} again"
    if not line.startswith(kind.prefix):
        raise MalformedKey(
            f"{source} is not a {kind.public_name}: it must be one line starting with "
            f"{kind.prefix!r}; use the line from {kind.public_filename}"
        )
    body = line[len(kind.prefix) :]
    if any(char in BLANKS or char == "\n" for char in body):
        raise MalformedKey(
            f"{source} holds more than the public key (spaces or several lines); "
            f"it must be exactly the one line from {kind.public_filename}"
        )
    if len(body) != _BODY_CHARS:
        raise MalformedKey(
            f"{source} has {len(body)} characters after {kind.prefix!r} where a "
            f"public key has {_BODY_CHARS}: it was truncated or has characters added; {again}"
        )
    for position, char in enumerate(body, start=len(kind.prefix) + 1):
        if char not in _BASE32_ALPHABET:
            raise MalformedKey(
                f"{source} has a character at position {position} that cannot appear in "
                f"a public key (only a-z and 2-7): it was mistyped; {again}"
            )
    decoded = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    raw, checksum = decoded[:_KEY_BYTES], decoded[_KEY_BYTES:]
    # Re-encoding catches a changed last character that only touches padding bits.
    if checksum != _checksum(kind, raw) or encode_public_text(kind, raw) != line:
        raise KeyChecksumMismatch(
            f"{source} fails its checksum: a character was mistyped or changed in copying; {again}"
        )
    return raw


def secret_key_refusal(source: str, kind: KeyKind = REVIEWER_KEYS) -> str:
    return (
        f"{source} is a {kind.owner} SECRET key; the server needs the public key file "
        f"({kind.public_filename}). Never copy {kind.secret_filename} to the server."
    )
