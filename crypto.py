"""The sealed spool file's cryptographic layer: header and chunked payload stream.

A spool file is, in version 3 (what the server writes)::

    MAGIC (8) | 3 (1) | count (1) | count x stanza (80) | stream header (24) | MAC (32) | chunks...

and in versions 1 and 2 (still read; reply files use it under their own magic)::

    MAGIC (8) | VERSION (1) | sealed file key (80) | secretstream header (24) | chunks...

The file key is a fresh random secretstream key, sealed with libsodium's
``crypto_box_seal`` to each reviewer's X25519 public key (a stanza each); the
version 3 header ends with a BLAKE2b MAC keyed by the file key, so every
recipient who opens the file provably holds the same key. The payload is cut into
fixed 64 KiB plaintext chunks, each pushed through secretstream
XChaCha20-Poly1305 with the whole header as additional data; the last chunk
carries TAG_FINAL. A version 2 payload carries the source's reply key
(records/); in version 3 that record is optional. docs/FORMAT.md is the
normative description.

This module is pure: bytes, binary streams and key objects in and out. It knows
nothing of files on disk, the web, or the records inside the payload.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from nacl import bindings
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

MAGIC = b"sealdrop"
# A submission without a source identity (no codename, so no replies) is version 1;
# one that carries the source's reply key and mailbox id (records.SOURCE) is version 2.
VERSION = 1
SOURCE_VERSION = 2
# Several recipient stanzas (a team, a backup key); the SOURCE record is optional.
RECIPIENTS_VERSION = 3
SUPPORTED_VERSIONS = frozenset({VERSION, SOURCE_VERSION, RECIPIENTS_VERSION})
# A reader tries every stanza (one X25519 each) and the header grows 80 bytes a key.
MAX_RECIPIENTS = 16
CHUNK_SIZE = 64 * 1024

_KEY_BYTES = bindings.crypto_secretstream_xchacha20poly1305_KEYBYTES
_STREAM_HEADER_BYTES = bindings.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_ABYTES = bindings.crypto_secretstream_xchacha20poly1305_ABYTES
_SEALED_KEY_BYTES = bindings.crypto_box_SEALBYTES + _KEY_BYTES
_TAG_MESSAGE = bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL = bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL

PREFIX_BYTES = len(MAGIC) + 1
HEADER_BYTES = PREFIX_BYTES + _SEALED_KEY_BYTES + _STREAM_HEADER_BYTES
STANZA_BYTES = _SEALED_KEY_BYTES
_HEADER_MAC_BYTES = 32
_HEADER_MAC_PERSON = b"sealdrop-hdr3"
ENCRYPTED_CHUNK_BYTES = CHUNK_SIZE + _ABYTES


def header_size(version: int = VERSION, recipients: int = 1) -> int:
    """The header's length in a file of `version` sealed to `recipients` keys."""
    if version != RECIPIENTS_VERSION:
        return HEADER_BYTES
    fixed = PREFIX_BYTES + 1 + _STREAM_HEADER_BYTES + _HEADER_MAC_BYTES
    return fixed + recipients * STANZA_BYTES


class SpoolFileError(Exception):
    """Root of every reason a spool file is refused. Never shown to a source."""

    cause = "unreadable"


class NotASealdropFile(SpoolFileError):
    """The file does not start with sealdrop's magic bytes: it is not ours."""

    cause = "not a sealdrop file"


class UnsupportedVersion(SpoolFileError):
    """The magic is ours but the version byte is one this reader does not know."""

    cause = "unsupported version"


class WrongKey(SpoolFileError):
    """No sealed file key in the header opens with this secret key.

    Either the file was sealed to other reviewer keys, or its header was
    altered; the two cannot be told apart, by design of the sealed box.
    """

    cause = "wrong key"


class TamperedHeader(SpoolFileError):
    """A version 3 header does not hold together, though this key opened a stanza.

    Its MAC does not match: stanzas were altered, reordered, added or removed, or
    the count changed, after sealing; or a faulty or hostile writer sealed
    different file keys to different reviewers. Also a count of 0 or above 16.
    """

    cause = "tampered header"


class TruncatedFile(SpoolFileError):
    """The file ends before its final chunk: it was cut short (copy, crash, disk)."""

    cause = "truncated"


class TamperedChunk(SpoolFileError):
    """A chunk fails authentication: bits were changed, chunks reordered or duplicated."""

    cause = "tampered"


class TrailingData(SpoolFileError):
    """Bytes follow the final chunk; something was appended to the file."""

    cause = "trailing data"


class MalformedStream(SpoolFileError):
    """Authenticated chunks break the framing rules (wrong size, empty, unknown tag).

    Only a faulty or hostile writer holding the file key can produce this.
    """

    cause = "malformed stream"


class PayloadSealer:
    """Seals a payload written in pieces, without knowing its length in advance.

    Memory is bounded by one chunk plus the piece being written: a chunk is only
    encrypted once more data proves it is not the last one, so that the final
    chunk can be tagged FINAL even when the payload is a whole number of chunks.
    """

    def __init__(
        self,
        recipients: PublicKey | Sequence[PublicKey],
        *,
        version: int = VERSION,
        magic: bytes = MAGIC,
    ) -> None:
        if len(magic) != len(MAGIC) or not 0 < version < 256:
            raise ValueError("the magic must be 8 bytes and the version one byte")
        keys = [recipients] if isinstance(recipients, PublicKey) else list(recipients)
        check_recipients(keys, version)
        file_key = bindings.crypto_secretstream_xchacha20poly1305_keygen()
        self._state = bindings.crypto_secretstream_xchacha20poly1305_state()
        stream_header = bindings.crypto_secretstream_xchacha20poly1305_init_push(
            self._state, file_key
        )
        prefix = magic + bytes([version])
        if version == RECIPIENTS_VERSION:
            stanzas = b"".join(SealedBox(key).encrypt(file_key) for key in keys)
            signed = prefix + bytes([len(keys)]) + stanzas + stream_header
            self.header = signed + _header_mac(signed, file_key)
        else:
            self.header = prefix + SealedBox(keys[0]).encrypt(file_key) + stream_header
        assert len(self.header) == header_size(version, len(keys))
        self._pending = bytearray()
        self._finished = False

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Take more plaintext; return the ciphertext that is ready (often empty)."""
        return b"".join(self.update_chunks(data))

    def update_chunks(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Like `update`, but each ready chunk's ciphertext apart (often none), in order.

        A caller that writes them one by one never joins a piece's chunks into one
        large buffer: a fresh megabyte per piece costs the copy and its page faults.
        """
        if self._finished:
            raise RuntimeError("payload already finalized")
        pending = self._pending
        # The view is released on return, so a caller may resize its bytearray at once.
        with memoryview(data) as raw, raw.cast("B") as view:
            size = len(view)
            if len(pending) + size <= CHUNK_SIZE:
                pending += view
                return []
            # Keep at least one byte back: the last chunk must be pushed with TAG_FINAL.
            # Whole chunks are cut straight from the caller's buffer, never queued: each
            # plaintext byte is copied once (the binding only takes `bytes`), and the
            # pending buffer never holds more than one chunk.
            out = []
            start = 0
            if pending:
                start = CHUNK_SIZE - len(pending)
                pending += view[:start]
                out.append(self._push(bytes(pending), _TAG_MESSAGE))
                pending.clear()
            while size - start > CHUNK_SIZE:
                out.append(self._push(bytes(view[start : start + CHUNK_SIZE]), _TAG_MESSAGE))
                start += CHUNK_SIZE
            pending += view[start:]
        return out

    def finalize(self) -> bytes:
        """Return the final chunk's ciphertext. The sealer cannot be used afterwards."""
        if self._finished:
            raise RuntimeError("payload already finalized")
        self._finished = True
        last = self._push(bytes(self._pending), _TAG_FINAL)
        self._pending = bytearray()
        return last

    def _push(self, chunk: bytes, tag: int) -> bytes:
        ciphertext: bytes = bindings.crypto_secretstream_xchacha20poly1305_push(
            self._state, chunk, self.header, tag
        )
        return ciphertext


def check_recipients(keys: Sequence[PublicKey], version: int = RECIPIENTS_VERSION) -> None:
    """Refuse a recipient list `version` cannot carry: ValueError, for the caller to word.

    Version 3 takes 1 to MAX_RECIPIENTS distinct keys (a duplicate would only cost
    every reader a stanza); versions 1 and 2 exactly one.
    """
    most = MAX_RECIPIENTS if version == RECIPIENTS_VERSION else 1
    if not 1 <= len(keys) <= most:
        raise ValueError(f"format version {version} seals to 1 to {most} keys, not {len(keys)}")
    if len({bytes(key) for key in keys}) != len(keys):
        raise ValueError("the same public key is given twice")


def sealed_size(payload_length: int, *, version: int = VERSION, recipients: int = 1) -> int:
    """The exact size of a spool file whose payload is `payload_length` bytes."""
    chunks = max(1, -(-payload_length // CHUNK_SIZE))
    return header_size(version, recipients) + payload_length + chunks * _ABYTES


def read_prefix(
    source: BinaryIO,
    *,
    magic: bytes = MAGIC,
    versions: frozenset[int] = SUPPORTED_VERSIONS,
) -> bytes:
    """Read and check magic and version; return those bytes. Needs no key."""
    prefix = _read_exactly(source, PREFIX_BYTES)
    if prefix[: len(magic)] != magic[: len(prefix)]:
        raise NotASealdropFile("the file does not start with sealdrop's magic bytes")
    if len(prefix) < PREFIX_BYTES:
        raise TruncatedFile("the file ends inside its header")
    if prefix[len(magic)] not in versions:
        known = ", ".join(str(v) for v in sorted(versions))
        raise UnsupportedVersion(
            f"format version {prefix[len(magic)]} is not supported (this reader knows "
            f"version {known}); upgrade sealdrop on the reviewer machine"
        )
    return prefix


def read_recipient_count(source: BinaryIO) -> int:
    """How many keys a spool file was sealed to (1 before version 3). Needs no key.

    The count is in the clear by design (docs/FORMAT.md says why); which keys
    they are is not: a sealed box does not name its recipient.
    """
    prefix = read_prefix(source)
    if prefix[-1] != RECIPIENTS_VERSION:
        return 1
    return _read_count(source)


class PayloadChunks(Iterator[bytes]):
    """The plaintext chunks of one sealed file, with the format version it declares.

    The magic and version (no key needed) are read when it is made, so `version`
    is known before any chunk: records.read_payload takes it to know which records
    to expect. Everything that needs the key is checked while iterating.
    """

    def __init__(
        self, source: BinaryIO, key: PrivateKey, magic: bytes, versions: frozenset[int]
    ) -> None:
        prefix = read_prefix(source, magic=magic, versions=versions)
        self.version: int = prefix[len(magic)]
        self._chunks = _open_after_prefix(source, key, prefix)

    def __next__(self) -> bytes:
        return next(self._chunks)


def open_payload(
    source: BinaryIO,
    key: PrivateKey,
    *,
    magic: bytes = MAGIC,
    versions: frozenset[int] = SUPPORTED_VERSIONS,
) -> PayloadChunks:
    """The plaintext chunks of the spool file read from `source`, as an iterator.

    Raises NotASealdropFile or UnsupportedVersion at once (the first 9 bytes).
    Every chunk is authenticated before it is yielded, but the stream as a whole
    is only proven complete when the iterator ends without raising: a caller must
    treat what it received as unverified until then.
    """
    return PayloadChunks(source, key, magic, versions)


def _open_after_prefix(source: BinaryIO, key: PrivateKey, prefix: bytes) -> Iterator[bytes]:
    if prefix[-1] == RECIPIENTS_VERSION:
        header, stream_header, file_key = _open_stanzas(source, key, prefix)
    else:
        rest = _read_header_rest(source, HEADER_BYTES - PREFIX_BYTES)
        header = prefix + rest
        stream_header = rest[_SEALED_KEY_BYTES:]
        file_key = _open_sealed_key([rest[:_SEALED_KEY_BYTES]], key)
    state = bindings.crypto_secretstream_xchacha20poly1305_state()
    bindings.crypto_secretstream_xchacha20poly1305_init_pull(state, stream_header, file_key)
    yield from _pull_chunks(source, state, header)


def _open_stanzas(source: BinaryIO, key: PrivateKey, prefix: bytes) -> tuple[bytes, bytes, bytes]:
    """Read a version 3 header; return it whole, its stream header, and the file key."""
    count = _read_count(source)
    rest = _read_header_rest(
        source, count * STANZA_BYTES + _STREAM_HEADER_BYTES + _HEADER_MAC_BYTES
    )
    signed = prefix + bytes([count]) + rest[:-_HEADER_MAC_BYTES]
    stream_header = signed[-_STREAM_HEADER_BYTES:]
    stanzas = [rest[i * STANZA_BYTES : (i + 1) * STANZA_BYTES] for i in range(count)]
    file_key = _open_sealed_key(stanzas, key)
    # Checked even though the chunks' AD covers the header too: it is what proves
    # every reviewer holds the same file key, which the chunks' MAC does not.
    if not hmac.compare_digest(_header_mac(signed, file_key), rest[-_HEADER_MAC_BYTES:]):
        raise TamperedHeader(
            "the header's MAC does not match: its recipient stanzas or their count were "
            "altered after sealing"
        )
    return signed + rest[-_HEADER_MAC_BYTES:], stream_header, file_key


def _read_count(source: BinaryIO) -> int:
    raw = source.read(1)
    if not raw:
        raise TruncatedFile("the file ends inside its header")
    if not 1 <= raw[0] <= MAX_RECIPIENTS:
        raise TamperedHeader(
            f"the header declares {raw[0]} recipient stanzas; a writer seals to 1 to "
            f"{MAX_RECIPIENTS} keys"
        )
    return raw[0]


def _read_header_rest(source: BinaryIO, size: int) -> bytes:
    rest = _read_exactly(source, size)
    if len(rest) < size:
        raise TruncatedFile("the file ends inside its header")
    return rest


def _open_sealed_key(stanzas: list[bytes], key: PrivateKey) -> bytes:
    box = SealedBox(key)
    for stanza in stanzas:
        try:
            file_key: bytes = box.decrypt(stanza)
        except CryptoError:
            continue
        return file_key
    raise WrongKey(
        "the file key does not open with this secret key: the file was sealed to "
        "another reviewer key, or its header was altered"
    )


def _header_mac(signed: bytes, file_key: bytes) -> bytes:
    return hashlib.blake2b(
        signed, digest_size=_HEADER_MAC_BYTES, key=file_key, person=_HEADER_MAC_PERSON
    ).digest()


def _pull_chunks(
    source: BinaryIO,
    state: bindings.crypto_secretstream_xchacha20poly1305_state,
    header: bytes,
) -> Iterator[bytes]:
    index = 0
    while True:
        ciphertext = _read_exactly(source, ENCRYPTED_CHUNK_BYTES)
        if len(ciphertext) < _ABYTES:
            # Too short to be any chunk, even an empty one: the stream stops without
            # its final chunk, whatever the stray bytes are.
            raise TruncatedFile(
                f"the file ends where chunk {index} should be, without a final chunk"
            )
        try:
            plaintext, tag = bindings.crypto_secretstream_xchacha20poly1305_pull(
                state, ciphertext, header
            )
        except CryptoError:
            at_end = len(ciphertext) < ENCRYPTED_CHUNK_BYTES
            hint = " (the file may have been cut short)" if at_end else ""
            raise TamperedChunk(f"chunk {index} fails authentication{hint}") from None
        if tag == _TAG_FINAL:
            if not plaintext and index > 0:
                raise MalformedStream(f"the final chunk {index} is empty")
            if source.read(1):
                raise TrailingData(f"data follows the final chunk {index}")
            yield plaintext
            return
        if tag != _TAG_MESSAGE:
            raise MalformedStream(f"chunk {index} has an unexpected tag {tag}")
        if len(plaintext) != CHUNK_SIZE:
            raise MalformedStream(f"non-final chunk {index} is {len(plaintext)} bytes, not full")
        yield plaintext
        index += 1


def _read_exactly(source: BinaryIO, size: int) -> bytes:
    """Read `size` bytes, fewer only at end of file (a pipe may return short reads)."""
    data = source.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    have = len(data)
    while have < size:
        more = source.read(size - have)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)
