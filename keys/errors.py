"""Every reason a reviewer key, or a key file, is refused: one class each.

docs/FORMAT.md ("Refusals (key files)") lists them; each message names the file
and what to do, for the reviewer or the operator who reads it.
"""

from __future__ import annotations


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
