"""Reviewer key files: the one-line public key text and the passphrase-protected secret key.

The public key is a single line, ``sealdrop-pub1`` followed by lowercase unpadded
base32 of the 32-byte X25519 key and a 4-byte checksum, so a key that was
mistyped, truncated or pasted into the wrong place is refused instead of
silently sealing uploads to nobody. The secret key file names its format on its
first line, shows the public key it belongs to, and holds the X25519 secret key
in a SecretBox under an Argon2id key derived from the reviewer's passphrase.
docs/FORMAT.md ("Key files") is the normative description.

The encoding functions are pure; the load/write functions add only the file
policy (size limits, O_EXCL, modes, fsync) and name the file in every error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import nacl.exceptions
import nacl.utils
from nacl.public import PrivateKey, PublicKey
from nacl.pwhash import argon2id
from nacl.secret import SecretBox

from . import durable

PUBLIC_KEY_PREFIX = "sealdrop-pub1"
SECRET_KEY_HEADER = "sealdrop secret key v1"
# The reply-signing key file (signing.py): the same layout under its own header, which
# holds the secret-key marker so that the server's checks refuse it like reviewer.key.
SIGNING_KEY_HEADER = "sealdrop secret key for reply signing v1"
PUBLIC_KEY_LABEL = "public key: "
DEFAULT_KEY_NAME = "reviewer"
PUBLIC_KEY_FILENAME = DEFAULT_KEY_NAME + ".pub"
SECRET_KEY_FILENAME = DEFAULT_KEY_NAME + ".key"
# A key pair's name labels the reviewer's key on the server (recipients.py): NAME.pub.
_KEY_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")

# The BLAKE2b personalisation ties the checksum to this encoding: the same key
# bytes hashed anywhere else cannot produce a matching checksum by accident.
_CHECKSUM_PERSON = PUBLIC_KEY_PREFIX.encode("ascii")
_CHECKSUM_BYTES = 4
_KEY_BYTES = PublicKey.SIZE
_BASE32_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_BODY_CHARS = 58  # ceil((32 + 4) * 8 / 5)
# The only whitespace a key file may hold: around a line, never inside a key.
_BLANKS = " \t"

_SECRET_KEY_MARKER = "sealdrop secret key"
_SALT_BYTES = argon2id.SALTBYTES
_PARAMS = struct.Struct(">IQ")  # opslimit (u32), memlimit (u64)
_NONCE_BYTES = SecretBox.NONCE_SIZE
_SEALED_SECRET_BYTES = _KEY_BYTES + SecretBox.MACBYTES
_BLOB_BYTES = _SALT_BYTES + _PARAMS.size + _NONCE_BYTES + _SEALED_SECRET_BYTES

# A key file is a few hundred bytes; reading more could only serve a hostile file.
_MAX_KEY_FILE_BYTES = 64 * 1024
# Loading a key runs the KDF with the costs stored in the file. These ceilings keep
# a hostile or corrupted file from demanding more memory or time than a laptop has
# (4 GiB, and at most four times the SENSITIVE passes).
MAX_STORED_MEMLIMIT = 4 * 1024 * 1024 * 1024
MAX_STORED_OPSLIMIT = 16


class KeyFileError(Exception):
    """Root of every reason a reviewer key, or a key file, is refused."""


class KeyFileInaccessible(KeyFileError):
    """The key file or its folder cannot be read or written: missing, a directory,
    no permission, disk full. The message carries the operating system's reason."""


class IsSecretKey(KeyFileError):
    """A reviewer SECRET key was given where the public key belongs (the server's
    configuration, or a public key argument). The server must never hold it."""


class IsPublicKey(KeyFileError):
    """The public key was given where the secret key is needed (opening spool files)."""


class MalformedKey(KeyFileError):
    """The text is not a sealdrop key at all, or its encoding is broken: wrong prefix
    or header line, characters outside the alphabet, wrong length, extra lines."""


class KeyChecksumMismatch(KeyFileError):
    """A public key is well formed but its checksum does not match: a character was
    mistyped or changed in copying."""


class UnsupportedKeyVersion(KeyFileError):
    """A sealdrop secret key file of a format version this program does not know."""


class KdfCostRefused(KeyFileError):
    """The key derivation costs stored in a secret key file are out of bounds; running
    them could exhaust the machine, so the file is refused before deriving anything."""


class KeyDerivationFailed(KeyFileError):
    """libsodium could not run Argon2id at the requested cost, almost always because
    the machine could not allocate the memory it needs."""


class WrongPassphrase(KeyFileError):
    """The secret key does not decrypt: wrong passphrase, or the file was altered."""


class KeyPairMismatch(KeyFileError):
    """The secret key decrypted, but the public key line written in the same file is
    not its public key: the file was edited or pieced together from two files."""


class KeyFileExists(KeyFileError):
    """A key file is already where a new one would be written; it is never overwritten."""


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


# --- public key text --------------------------------------------------------------


def encode_public_key(key: PublicKey) -> str:
    """The one-line text form of a reviewer public key."""
    raw = bytes(key)
    body = base64.b32encode(raw + _checksum(raw)).decode("ascii").rstrip("=").lower()
    return PUBLIC_KEY_PREFIX + body


def decode_public_key(text: str) -> PublicKey:
    """Parse the one-line public key text (surrounding whitespace is ignored)."""
    return _decode_public_key(text, "the public key text")


def looks_like_secret_key(text_or_bytes: str | bytes) -> bool:
    """True if this holds a sealdrop secret key file's contents (any version).

    Deliberately loose: it exists to make the server refuse to start, so a false
    alarm costs a confused operator while a miss could put the key on the server.
    """
    if isinstance(text_or_bytes, bytes):
        return _SECRET_KEY_MARKER.encode("ascii") in text_or_bytes
    return _SECRET_KEY_MARKER in text_or_bytes


def key_file_lines(text: str, source: str) -> list[str]:
    """The lines of a key file's text, read by the rules of docs/FORMAT.md ("Key files").

    ASCII only; lines end in LF or CRLF (a CR anywhere else is refused); spaces and
    tabs around a line are ignored, as are blank lines before the first line and
    after the last; no other control character may appear. MalformedKey otherwise.
    """
    if not text.isascii():
        raise MalformedKey(
            f"{source} holds characters that are not ASCII (a no-break space, a curly "
            "quote or a byte-order mark that an editor added?); a key file is plain "
            "ASCII text: copy it again from the original"
        )
    lines = []
    pieces = text.split("\n")
    for number, raw in enumerate(pieces, start=1):
        # A CR counts only as the first half of CRLF: the last piece has no LF after it.
        line = raw.removesuffix("\r") if number < len(pieces) else raw
        if "\r" in line:
            raise MalformedKey(
                f"{source} has a carriage return that does not end a line (old Mac line "
                "endings?); a key file's lines end in LF or CRLF: copy it again"
            )
        if any(char < " " and char != "\t" or char == "\x7f" for char in line):
            raise MalformedKey(
                f"{source} holds a control character; a key file is plain text: copy it "
                "again from the original"
            )
        lines.append(line.strip(_BLANKS))
    while lines and not lines[-1]:
        lines.pop()
    first = next((i for i, line in enumerate(lines) if line), len(lines))
    return lines[first:]


def labelled_key(line: str) -> str | None:
    """The key text of a secret key file's second line, or None if the label is wrong.

    The label is ``public key: `` with exactly one space after the colon: it is part
    of the format, not decoration (docs/FORMAT.md, "Key files").
    """
    if not line.startswith(PUBLIC_KEY_LABEL):
        return None
    rest = line[len(PUBLIC_KEY_LABEL) :]
    return None if rest[:1] in ("", " ", "\t") else rest


def _checksum(raw_key: bytes) -> bytes:
    digest = hashlib.blake2b(raw_key, digest_size=32, person=_CHECKSUM_PERSON).digest()
    return digest[:_CHECKSUM_BYTES]


def _decode_public_key(text: str, source: str) -> PublicKey:
    """`source` names where the text came from, for the error messages."""
    if looks_like_secret_key(text):
        raise IsSecretKey(_is_secret_key_message(source))
    lines = key_file_lines(text, source)
    line = lines[0] if len(lines) == 1 else "\n".join(lines)
    if not line.startswith(PUBLIC_KEY_PREFIX):
        raise MalformedKey(
            f"{source} is not a sealdrop public key: it must be one line starting with "
            f"{PUBLIC_KEY_PREFIX!r}; use the line from the reviewer's {PUBLIC_KEY_FILENAME}"
        )
    body = line[len(PUBLIC_KEY_PREFIX) :]
    if any(char in _BLANKS or char == "\n" for char in body):
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


def _is_secret_key_message(source: str) -> str:
    return (
        f"{source} is a reviewer SECRET key; the server needs the public key file "
        f"({PUBLIC_KEY_FILENAME}). Never copy {SECRET_KEY_FILENAME} to the server."
    )


# --- secret key text ----------------------------------------------------------------


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
    """The text of a secret key file: header line, public key line, sealed key line."""
    return (
        f"{SECRET_KEY_HEADER}\n"
        f"{PUBLIC_KEY_LABEL}{encode_public_key(key.public_key)}\n"
        f"{seal_secret(bytes(key), passphrase, cost)}\n"
    )


def decode_secret_key(text: str, passphrase: str, source: str) -> PrivateKey:
    """Parse and decrypt a secret key file's text; `source` names it in errors."""
    lines = key_file_lines(text, source)
    _check_header(lines[0] if lines else "", source)
    labelled = labelled_key(lines[1]) if len(lines) == 3 else None
    if labelled is None:
        raise MalformedKey(
            f"{source} is damaged: a secret key file has exactly three lines (header, "
            f"{PUBLIC_KEY_LABEL!r} line, key line); restore it from your backup"
        )
    try:
        public_key = _decode_public_key(labelled, "")
    except (MalformedKey, KeyChecksumMismatch):
        raise MalformedKey(
            f"{source} is damaged: its {PUBLIC_KEY_LABEL!r} line is not a valid public "
            f"key; restore it from your backup"
        ) from None
    secret = PrivateKey(open_secret(lines[2], passphrase, source))
    if secret.public_key != public_key:
        raise KeyPairMismatch(
            f"{source} names a public key that does not belong to its secret key: the "
            f"file was edited; restore it from your backup"
        )
    return secret


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


def _check_header(header: str, source: str) -> None:
    if header == SECRET_KEY_HEADER:
        return
    if header == SIGNING_KEY_HEADER:
        raise MalformedKey(
            f"{source} is the reply-signing key; opening needs the reviewer secret key "
            f"file ({SECRET_KEY_FILENAME})"
        )
    if header.startswith(PUBLIC_KEY_PREFIX):
        raise IsPublicKey(
            f"{source} is the public key; opening needs the secret key file "
            f"({SECRET_KEY_FILENAME}) from the offline machine"
        )
    if header.startswith(_SECRET_KEY_MARKER):
        raise UnsupportedKeyVersion(
            f"{source} is a sealdrop secret key of a format this version does not "
            f"know ({header!r}); upgrade sealdrop on the reviewer machine"
        )
    raise MalformedKey(
        f"{source} is not a sealdrop secret key file (its first line is not "
        f"{SECRET_KEY_HEADER!r}); give the {SECRET_KEY_FILENAME} made by `sealdrop keygen`"
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


# --- files ----------------------------------------------------------------------------


def load_public_key(path: Path) -> PublicKey:
    """Read a reviewer public key file (reviewer.pub)."""
    data = _read_key_file(path)
    if looks_like_secret_key(data):
        raise IsSecretKey(_is_secret_key_message(str(path)))
    return _decode_public_key(_as_text(data, path, "public key"), str(path))


def load_secret_key(path: Path, passphrase: str) -> PrivateKey:
    """Read and decrypt a reviewer secret key file (reviewer.key)."""
    data = _read_key_file(path)
    return decode_secret_key(_as_text(data, path, "secret key"), passphrase, str(path))


def write_key_pair(
    directory: Path,
    passphrase: str,
    cost: KdfCost = KdfCost.SENSITIVE,
    name: str = DEFAULT_KEY_NAME,
) -> tuple[Path, Path]:
    """Make a new key pair `name`.pub and `name`.key in `directory`; return their paths.

    Refuses if either file already exists, before writing anything; the secret key
    file is created 0600 from the start so its bytes are never readable by others.
    """
    refuse_existing_key_files(directory, name)
    public_path, secret_path = key_file_paths(directory, name)
    key = PrivateKey.generate()
    secret_text = encode_secret_key(key, passphrase, cost)
    public_text = encode_public_key(key.public_key) + "\n"
    _create_file(secret_path, secret_text.encode("ascii"), 0o600)
    try:
        _create_file(public_path, public_text.encode("ascii"), 0o644)
    except KeyFileError:
        # Only reached when the public file appeared meanwhile or could not be
        # written: leave no half pair behind. We created secret_path ourselves (O_EXCL).
        secret_path.unlink()
        raise
    return public_path, secret_path


def key_file_paths(directory: Path, name: str = DEFAULT_KEY_NAME) -> tuple[Path, Path]:
    """The public and secret key files of the key pair `name` in `directory`.

    MalformedKey if the name is not 1 to 40 of ``a-z 0-9 . _ -`` (starting with a
    letter or digit): it becomes a file name here and on the server, and a label.
    """
    if not _KEY_NAME.fullmatch(name):
        raise MalformedKey(
            f"the key name {name!r} is not usable; give 1 to 40 lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter or digit (like alice or backup-2027)"
        )
    return directory / f"{name}.pub", directory / f"{name}.key"


def refuse_existing_key_files(directory: Path, name: str = DEFAULT_KEY_NAME) -> None:
    """Raise KeyFileExists if either key file (or a symlink by its name) is in `directory`."""
    for path in key_file_paths(directory, name):
        if os.path.lexists(path):
            raise _exists(path)


def _exists(path: Path) -> KeyFileExists:
    return KeyFileExists(
        f"{path} already exists and is never overwritten; choose another --out folder, "
        f"or move the existing key files away if you really mean to replace them"
    )


def _create_file(path: Path, data: bytes, mode: int) -> None:
    try:
        durable.create_new_file(path, data, mode)
    except FileExistsError:
        raise _exists(path) from None
    except OSError as error:
        raise KeyFileInaccessible(f"cannot create {path}: {error.strerror}") from None


def _read_key_file(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as error:
        raise KeyFileInaccessible(f"cannot read {path}: {error.strerror}") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise MalformedKey(
            f"{path} is far too large to be a sealdrop key file; check the path you gave"
        )
    return data


def _as_text(data: bytes, path: Path, kind: str) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedKey(
            f"{path} is not a sealdrop {kind} file: it holds bytes that are not ASCII (not "
            "plain text, or a no-break space or byte-order mark an editor added); check "
            "the path, or copy the file again from the original"
        ) from None
