"""Key files on disk: read with a size limit, written once (O_EXCL, exact modes, fsync).

Every error names the file. The text inside is keys/public.py's and
keys/secret.py's business; here is only the file policy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from nacl.public import PrivateKey, PublicKey

from .. import durable
from .errors import IsSecretKey, KeyFileError, KeyFileExists, KeyFileInaccessible, MalformedKey
from .public import decode_public_key_from, encode_public_key, secret_key_refusal
from .secret import KdfCost, decode_secret_key, encode_secret_key
from .text import DEFAULT_KEY_NAME, looks_like_secret_key

# A key pair's name labels the reviewer's key on the server (recipients.py): NAME.pub.
_KEY_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
# A key file is a few hundred bytes; reading more could only serve a hostile file.
_MAX_KEY_FILE_BYTES = 64 * 1024


def load_public_key(path: Path) -> PublicKey:
    """Read a reviewer public key file (reviewer.pub)."""
    data = _read_key_file(path)
    if looks_like_secret_key(data):
        raise IsSecretKey(secret_key_refusal(str(path)))
    return decode_public_key_from(_as_text(data, path, "public key"), str(path))


def load_secret_key(path: Path, passphrase: str) -> PrivateKey:
    """Read and decrypt a reviewer secret key file (reviewer.key)."""
    return decode_secret_key(read_key_text(path, "secret key"), passphrase, str(path))


def read_key_text(path: Path, kind: str) -> str:
    """The text of the key file at `path` (at most 64 KiB, ASCII); `kind` names it in errors."""
    return _as_text(_read_key_file(path), path, kind)


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
    create_key_pair_files(public_path, public_text, secret_path, secret_text)
    return public_path, secret_path


def create_key_pair_files(
    public_path: Path, public_text: str, secret_path: Path, secret_text: str
) -> None:
    """Create a key pair's two files, the secret one 0600 from its creation and first;
    never overwrites, and leaves no half pair behind (KeyFileError)."""
    _create_file(secret_path, secret_text.encode("ascii"), 0o600)
    try:
        _create_file(public_path, public_text.encode("ascii"), 0o644)
    except KeyFileError:
        # Only reached when the public file appeared meanwhile or could not be
        # written. We created secret_path ourselves (O_EXCL).
        secret_path.unlink()
        raise


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
    refuse_existing_files(key_file_paths(directory, name))


def refuse_existing_files(paths: Iterable[Path]) -> None:
    """Raise KeyFileExists for the first of `paths` that exists (a symlink counts)."""
    for path in paths:
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
