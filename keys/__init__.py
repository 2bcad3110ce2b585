"""Reviewer key files: the one-line public key text and the passphrase-protected secret key.

The public key is a single line, ``sealdrop-pub1`` followed by lowercase unpadded
base32 of the 32-byte X25519 key and a 4-byte checksum, so a key that was
mistyped, truncated or pasted into the wrong place is refused instead of
silently sealing uploads to nobody. The secret key file names its format on its
first line, shows the public key it belongs to, and holds the X25519 secret key
in a SecretBox under an Argon2id key derived from the reviewer's passphrase.
docs/FORMAT.md ("Key files") is the normative description.

One job per module: ``errors`` (every refusal), ``text`` (the text rules every
key file is read by), ``public`` and ``secret`` (the two texts, pure), ``files``
(reading and writing them: size limits, O_EXCL, modes, fsync). This package's
names are the public API, gathered here for its callers.
"""

from __future__ import annotations

from .errors import (
    IsPublicKey,
    IsSecretKey,
    KdfCostRefused,
    KeyChecksumMismatch,
    KeyDerivationFailed,
    KeyFileError,
    KeyFileExists,
    KeyFileInaccessible,
    KeyPairMismatch,
    MalformedKey,
    UnsupportedKeyVersion,
    WrongPassphrase,
)
from .files import (
    key_file_paths,
    load_public_key,
    load_secret_key,
    read_key_text,
    refuse_existing_key_files,
    write_key_pair,
)
from .public import decode_public_key, encode_public_key
from .secret import (
    MAX_STORED_MEMLIMIT,
    MAX_STORED_OPSLIMIT,
    KdfCost,
    decode_secret_key,
    encode_secret_key,
    open_secret,
    seal_secret,
)
from .text import (
    DEFAULT_KEY_NAME,
    PUBLIC_KEY_FILENAME,
    PUBLIC_KEY_LABEL,
    PUBLIC_KEY_PREFIX,
    SECRET_KEY_FILENAME,
    SECRET_KEY_HEADER,
    SIGNING_KEY_HEADER,
    key_file_lines,
    labelled_key,
    looks_like_secret_key,
)

__all__ = [
    "DEFAULT_KEY_NAME",
    "MAX_STORED_MEMLIMIT",
    "MAX_STORED_OPSLIMIT",
    "PUBLIC_KEY_FILENAME",
    "PUBLIC_KEY_LABEL",
    "PUBLIC_KEY_PREFIX",
    "SECRET_KEY_FILENAME",
    "SECRET_KEY_HEADER",
    "SIGNING_KEY_HEADER",
    "IsPublicKey",
    "IsSecretKey",
    "KdfCost",
    "KdfCostRefused",
    "KeyChecksumMismatch",
    "KeyDerivationFailed",
    "KeyFileError",
    "KeyFileExists",
    "KeyFileInaccessible",
    "KeyPairMismatch",
    "MalformedKey",
    "UnsupportedKeyVersion",
    "WrongPassphrase",
    "decode_public_key",
    "decode_secret_key",
    "encode_public_key",
    "encode_secret_key",
    "key_file_lines",
    "key_file_paths",
    "labelled_key",
    "load_public_key",
    "load_secret_key",
    "looks_like_secret_key",
    "open_secret",
    "read_key_text",
    "refuse_existing_key_files",
    "seal_secret",
    "write_key_pair",
]
