"""The sealed stream (crypto.py): every way a spool file can be refused, and the edges
of chunking. Payloads here are raw bytes; records are tests/test_records.py's job."""

from __future__ import annotations

import io
import random

import pytest
from nacl import bindings
from nacl.public import PrivateKey, PublicKey, SealedBox

from sealdrop import crypto

CHUNK = crypto.CHUNK_SIZE
SEALED_CHUNK = crypto.ENCRYPTED_CHUNK_BYTES
HEADER = crypto.HEADER_BYTES
TAG_MESSAGE = bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_PUSH = bindings.crypto_secretstream_xchacha20poly1305_TAG_PUSH
TAG_REKEY = bindings.crypto_secretstream_xchacha20poly1305_TAG_REKEY
TAG_FINAL = bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


def seal(payload: bytes, recipient: PublicKey, piece: int = 10_007) -> bytes:
    sealer = crypto.PayloadSealer(recipient)
    out = [sealer.header]
    for start in range(0, len(payload), piece):
        out.append(sealer.update(payload[start : start + piece]))
    out.append(sealer.finalize())
    return b"".join(out)


def seal_raw(
    chunks: list[tuple[bytes, int]], recipient: PublicKey, ad: bytes | None = None
) -> bytes:
    """Seal chunks with tags (and AD) of our choosing, as a faulty writer could."""
    file_key = bindings.crypto_secretstream_xchacha20poly1305_keygen()
    state = bindings.crypto_secretstream_xchacha20poly1305_state()
    stream_header = bindings.crypto_secretstream_xchacha20poly1305_init_push(state, file_key)
    header = crypto.MAGIC + bytes([crypto.VERSION]) + SealedBox(recipient).encrypt(file_key)
    header += stream_header
    pushed = [
        bindings.crypto_secretstream_xchacha20poly1305_push(
            state, plaintext, header if ad is None else ad, tag
        )
        for plaintext, tag in chunks
    ]
    return header + b"".join(pushed)


def open_all(data: bytes, key: PrivateKey) -> bytes:
    return b"".join(crypto.open_payload(io.BytesIO(data), key))


def refusal(data: bytes, key: PrivateKey) -> type[crypto.SpoolFileError]:
    with pytest.raises(crypto.SpoolFileError) as raised:
        open_all(data, key)
    return type(raised.value)


def flip(data: bytes, bit: int) -> bytes:
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


def chunks_of(data: bytes) -> tuple[bytes, list[bytes]]:
    rest = data[HEADER:]
    return data[:HEADER], [rest[i : i + SEALED_CHUNK] for i in range(0, len(rest), SEALED_CHUNK)]


# --- what is accepted -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "chunk_count"),
    [
        (0, 1),
        (1, 1),
        (CHUNK - 1, 1),
        (CHUNK, 1),
        (CHUNK + 1, 2),
        (2 * CHUNK, 2),
        (2 * CHUNK + 1, 3),
    ],
)
def test_payloads_at_chunk_edges_round_trip(length: int, chunk_count: int, key: PrivateKey) -> None:
    payload = random.Random(length).randbytes(length)
    data = seal(payload, key.public_key)

    chunks = list(crypto.open_payload(io.BytesIO(data), key))

    assert b"".join(chunks) == payload
    assert len(chunks) == chunk_count
    assert all(len(chunk) == CHUNK for chunk in chunks[:-1])
    assert len(data) == crypto.sealed_size(length) == HEADER + length + chunk_count * 17


@pytest.mark.parametrize("piece", [1, 4096, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK])
def test_the_sealed_stream_does_not_depend_on_how_the_payload_is_written(
    piece: int, key: PrivateKey
) -> None:
    payload = random.Random(piece).randbytes(2 * CHUNK + 5) if piece > 1 else bytes(CHUNK + 3)
    data = seal(payload, key.public_key, piece)
    assert len(data) == crypto.sealed_size(len(payload))
    assert open_all(data, key) == payload


def test_update_accepts_bytearray_and_memoryview(key: PrivateKey) -> None:
    sealer = crypto.PayloadSealer(key.public_key)
    buffer = bytearray(b"a" * (CHUNK + 10))
    out = sealer.header + sealer.update(buffer)
    buffer[:] = b"changed"  # the sealer must not keep a view of the caller's buffer
    out += sealer.update(memoryview(b"b" * 10)) + sealer.finalize()
    assert open_all(out, key) == b"a" * (CHUNK + 10) + b"b" * 10


def test_an_empty_payload_is_one_empty_final_chunk(key: PrivateKey) -> None:
    data = seal(b"", key.public_key)
    assert len(data) == HEADER + 17
    assert list(crypto.open_payload(io.BytesIO(data), key)) == [b""]


def test_the_header_is_magic_version_sealed_key_stream_header(key: PrivateKey) -> None:
    sealer = crypto.PayloadSealer(key.public_key)
    header = sealer.header
    assert len(header) == HEADER == 113
    assert header[:8] == b"sealdrop" and header[8] == 1
    file_key = SealedBox(key).decrypt(header[9:89])
    assert len(file_key) == 32
    # A fresh file key and ephemeral key every time.
    assert crypto.PayloadSealer(key.public_key).header[9:] != header[9:]


def test_a_sealer_cannot_be_used_after_finalize(key: PrivateKey) -> None:
    sealer = crypto.PayloadSealer(key.public_key)
    sealer.finalize()
    with pytest.raises(RuntimeError):
        sealer.update(b"x")
    with pytest.raises(RuntimeError):
        sealer.finalize()


def test_short_reads_from_a_pipe_are_reassembled(key: PrivateKey) -> None:
    payload = random.Random(7).randbytes(2 * CHUNK + 100)
    data = seal(payload, key.public_key)

    class Trickle(io.RawIOBase):
        def __init__(self) -> None:
            self._source = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return self._source.read(min(size, 999) if size >= 0 else 999)

    assert b"".join(crypto.open_payload(Trickle(), key)) == payload  # type: ignore[arg-type]


def test_read_prefix_needs_no_key() -> None:
    source = io.BytesIO(b"sealdrop\x01" + b"rest")
    assert crypto.read_prefix(source) == b"sealdrop\x01"
    assert source.read() == b"rest"


def test_the_version_is_known_before_any_chunk(key: PrivateKey) -> None:
    with pytest.raises(crypto.NotASealdropFile):
        crypto.open_payload(io.BytesIO(b"not ours at all"), key)
    sealer = crypto.PayloadSealer(key.public_key, version=crypto.SOURCE_VERSION)
    data = sealer.header + sealer.update(b"hi") + sealer.finalize()
    assert crypto.open_payload(io.BytesIO(data), key).version == crypto.SOURCE_VERSION


def test_errors_that_need_the_key_come_on_iteration(key: PrivateKey) -> None:
    iterator = crypto.open_payload(io.BytesIO(seal(b"hi", PrivateKey.generate().public_key)), key)
    with pytest.raises(crypto.WrongKey):
        next(iterator)


# --- refusals: the header -----------------------------------------------------------------


def test_wrong_key(key: PrivateKey) -> None:
    data = seal(b"hello", PrivateKey.generate().public_key)
    assert refusal(data, key) is crypto.WrongKey


@pytest.mark.parametrize("version", [0, 4, 255])
def test_unknown_version(version: int, key: PrivateKey) -> None:
    data = bytearray(seal(b"hello", key.public_key))
    data[8] = version
    with pytest.raises(crypto.UnsupportedVersion, match="upgrade sealdrop"):
        open_all(bytes(data), key)
    with pytest.raises(crypto.UnsupportedVersion):
        crypto.read_prefix(io.BytesIO(bytes(data)))


@pytest.mark.parametrize(
    "data",
    [
        b"SEALDROP\x01" + bytes(200),
        b"\x00" * 300,
        b"age-encryption.org/v1\n",
        b"x",
        b"sealdrox\x01",
    ],
)
def test_not_ours(data: bytes, key: PrivateKey) -> None:
    assert refusal(data, key) is crypto.NotASealdropFile


def test_every_bit_flip_in_the_header_is_refused_for_its_cause(key: PrivateKey) -> None:
    data = seal(b"a short payload", key.public_key)
    expected = {
        range(0, 8): crypto.NotASealdropFile,
        range(8, 9): crypto.UnsupportedVersion,
        range(9, 89): crypto.WrongKey,  # the sealed box authenticates its whole 80 bytes
        range(89, 113): crypto.TamperedChunk,  # secretstream header: key schedule and AD
    }
    for byte_range, error in expected.items():
        for byte in byte_range:
            for bit in range(8):
                flipped = flip(data, 8 * byte + bit)
                if flipped[8] == crypto.RECIPIENTS_VERSION:
                    # Read as a version 3 header, whose count (the sealed key's first
                    # byte here) and MAC cannot hold; tests/test_crypto_recipients.py.
                    assert refusal(flipped, key) is not None
                    continue
                assert refusal(flipped, key) is error, (byte, bit)


def test_a_bit_flip_anywhere_in_the_chunks_is_refused(key: PrivateKey) -> None:
    data = seal(random.Random(3).randbytes(CHUNK + 500), key.public_key)
    starts = [HEADER, HEADER + SEALED_CHUNK]
    # The edges of each chunk (encrypted tag byte, MAC) and a random sample inside.
    offsets = {s + d for s in starts for d in range(0, 24)}
    offsets |= {HEADER + SEALED_CHUNK - 1 - d for d in range(17)}
    offsets |= {len(data) - 1 - d for d in range(17)}
    offsets |= set(random.Random(4).sample(range(HEADER, len(data)), 150))
    for offset in sorted(offsets):
        bit = 8 * offset + offset % 8
        assert refusal(flip(data, bit), key) is crypto.TamperedChunk, offset


def test_the_header_is_authenticated_data_of_every_chunk(key: PrivateKey) -> None:
    payload = bytes(CHUNK + 10)
    without_ad = seal_raw(
        [(payload[:CHUNK], TAG_MESSAGE), (payload[CHUNK:], TAG_FINAL)], key.public_key, ad=b""
    )
    assert refusal(without_ad, key) is crypto.TamperedChunk
    # A header from another file (another file key) does not fit these chunks.
    one, two = seal(payload, key.public_key), seal(payload, key.public_key)
    assert refusal(one[:HEADER] + two[HEADER:], key) is crypto.TamperedChunk


# --- refusals: truncation, order, trailing data --------------------------------------------------


def test_truncation_at_every_byte_of_a_small_file(key: PrivateKey) -> None:
    data = seal(b"x" * 100, key.public_key)
    assert len(data) == HEADER + 117
    for length in range(len(data)):
        got = refusal(data[:length], key)
        if length < HEADER + 17:
            # Inside the header, or too few bytes after it to be any chunk.
            assert got is crypto.TruncatedFile, length
        else:
            # A cut final chunk cannot be told from a changed one.
            assert got is crypto.TamperedChunk, length


def test_truncation_around_chunk_boundaries(key: PrivateKey) -> None:
    data = seal(bytes(2 * CHUNK + 100), key.public_key)
    for boundary in (HEADER + SEALED_CHUNK, HEADER + 2 * SEALED_CHUNK):
        assert refusal(data[:boundary], key) is crypto.TruncatedFile
        assert refusal(data[: boundary + 16], key) is crypto.TruncatedFile
        assert refusal(data[: boundary + 17], key) is crypto.TamperedChunk
        assert refusal(data[: boundary - 1], key) is crypto.TamperedChunk


def test_reordered_duplicated_and_dropped_chunks(key: PrivateKey) -> None:
    header, chunks = chunks_of(seal(bytes(2 * CHUNK + 100), key.public_key))
    a, b, c = chunks
    for order in ([b, a, c], [a, c, b], [c, b, a], [a, a, b, c], [a, b, b, c], [a, c], [b, c]):
        assert refusal(header + b"".join(order), key) is crypto.TamperedChunk
    assert refusal(header + a + b + c + c, key) is crypto.TamperedChunk
    assert refusal(header + a + b, key) is crypto.TruncatedFile


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 100, bytes(SEALED_CHUNK)])
def test_data_after_a_full_final_chunk(extra: bytes, key: PrivateKey) -> None:
    data = seal(bytes(CHUNK), key.public_key)
    assert refusal(data + extra, key) is crypto.TrailingData


def test_data_after_a_short_final_chunk_fails_that_chunk(key: PrivateKey) -> None:
    data = seal(b"short", key.public_key)
    assert refusal(data + b"\x00", key) is crypto.TamperedChunk


def test_a_full_final_chunk_followed_by_valid_chunks(key: PrivateKey) -> None:
    data = seal_raw([(bytes(CHUNK), TAG_FINAL), (b"more", TAG_FINAL)], key.public_key)
    assert refusal(data, key) is crypto.TrailingData


# --- refusals: chunks that authenticate but break the rules ---------------------------------


def test_an_empty_final_chunk_after_others(key: PrivateKey) -> None:
    data = seal_raw([(bytes(CHUNK), TAG_MESSAGE), (b"", TAG_FINAL)], key.public_key)
    with pytest.raises(crypto.MalformedStream, match="empty"):
        open_all(data, key)


def test_an_empty_non_final_chunk(key: PrivateKey) -> None:
    # Followed by more data, the 17-byte chunk is read together with the next one's
    # bytes and fails authentication; at the end of the file it is refused by rule.
    data = seal_raw([(b"", TAG_MESSAGE), (b"end", TAG_FINAL)], key.public_key)
    assert refusal(data, key) is crypto.TamperedChunk
    data = seal_raw([(b"", TAG_MESSAGE)], key.public_key)
    assert refusal(data, key) is crypto.MalformedStream


def test_a_short_non_final_chunk_at_the_end(key: PrivateKey) -> None:
    data = seal_raw([(b"short", TAG_MESSAGE)], key.public_key)
    with pytest.raises(crypto.MalformedStream, match="not full"):
        open_all(data, key)


def test_a_short_non_final_chunk_in_the_middle(key: PrivateKey) -> None:
    data = seal_raw([(b"short", TAG_MESSAGE), (b"end", TAG_FINAL)], key.public_key)
    assert refusal(data, key) is crypto.TamperedChunk


@pytest.mark.parametrize("tag", [TAG_PUSH, TAG_REKEY])
def test_tags_other_than_message_and_final(tag: int, key: PrivateKey) -> None:
    data = seal_raw([(bytes(CHUNK), tag), (b"end", TAG_FINAL)], key.public_key)
    with pytest.raises(crypto.MalformedStream, match="tag"):
        open_all(data, key)


def test_a_missing_final_tag_is_truncation(key: PrivateKey) -> None:
    data = seal_raw([(bytes(CHUNK), TAG_MESSAGE), (bytes(CHUNK), TAG_MESSAGE)], key.public_key)
    assert refusal(data, key) is crypto.TruncatedFile


# --- the error classes ------------------------------------------------------------------------


def test_each_refusal_has_its_own_class_and_cause() -> None:
    classes = [
        crypto.NotASealdropFile,
        crypto.UnsupportedVersion,
        crypto.WrongKey,
        crypto.TruncatedFile,
        crypto.TamperedChunk,
        crypto.TrailingData,
        crypto.MalformedStream,
    ]
    assert all(issubclass(cls, crypto.SpoolFileError) for cls in classes)
    causes = [cls.cause for cls in classes]
    assert len(set(causes)) == len(causes)
    assert all(cls.__doc__ for cls in classes)
