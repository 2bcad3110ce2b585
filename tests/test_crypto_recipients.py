"""Format version 3 (crypto.py): one payload, its file key sealed to several reviewer keys.

Each recipient opens the same bytes; the header's count, stanzas and MAC hold together or
the file is refused; the limit and duplicates are refused when sealing."""

from __future__ import annotations

import hashlib
import io

import pytest
from nacl import bindings
from nacl.public import PrivateKey, PublicKey, SealedBox

from sealdrop import crypto
from sealdrop.tests.test_crypto import open_all, refusal

V3 = crypto.RECIPIENTS_VERSION
STANZA = crypto.STANZA_BYTES
PAYLOAD = bytes(range(256)) * 700  # three chunks


@pytest.fixture(scope="module")
def keys() -> list[PrivateKey]:
    return [PrivateKey.generate() for _ in range(crypto.MAX_RECIPIENTS + 1)]


def seal(payload: bytes, recipients: list[PublicKey]) -> bytes:
    sealer = crypto.PayloadSealer(recipients, version=V3)
    return sealer.header + sealer.update(payload) + sealer.finalize()


def stanza_at(index: int) -> slice:
    start = crypto.PREFIX_BYTES + 1 + index * STANZA
    return slice(start, start + STANZA)


def test_every_recipient_opens_the_same_payload(keys: list[PrivateKey]) -> None:
    three = keys[:3]
    data = seal(PAYLOAD, [k.public_key for k in three])
    assert data[:10] == crypto.MAGIC + bytes([V3, 3])
    assert len(data) == crypto.sealed_size(len(PAYLOAD), version=V3, recipients=3)
    for key in three:
        assert open_all(data, key) == PAYLOAD
    assert refusal(data, keys[3]) is crypto.WrongKey


def test_the_header_grows_one_stanza_a_key(keys: list[PrivateKey]) -> None:
    for count in (1, 2, crypto.MAX_RECIPIENTS):
        sealer = crypto.PayloadSealer([k.public_key for k in keys[:count]], version=V3)
        assert len(sealer.header) == crypto.header_size(V3, count) == 66 + 80 * count
        assert crypto.read_recipient_count(io.BytesIO(sealer.header)) == count


def test_the_count_needs_no_key_and_is_1_before_version_3(keys: list[PrivateKey]) -> None:
    old = crypto.PayloadSealer(keys[0].public_key).header
    assert crypto.read_recipient_count(io.BytesIO(old)) == 1


def test_sixteen_keys_at_most_and_never_the_same_twice(keys: list[PrivateKey]) -> None:
    publics = [k.public_key for k in keys]
    with pytest.raises(ValueError, match="1 to 16 keys, not 17"):
        crypto.PayloadSealer(publics, version=V3)
    with pytest.raises(ValueError, match="1 to 16 keys, not 0"):
        crypto.PayloadSealer([], version=V3)
    with pytest.raises(ValueError, match="twice"):
        crypto.PayloadSealer([publics[0], publics[1], publics[0]], version=V3)
    # Versions 1 and 2 have room for one sealed key only.
    with pytest.raises(ValueError, match="1 to 1 keys, not 2"):
        crypto.PayloadSealer(publics[:2], version=crypto.SOURCE_VERSION)


@pytest.mark.parametrize("count", [0, crypto.MAX_RECIPIENTS + 1, 255])
def test_a_count_out_of_range_is_refused_before_any_key(count: int, keys: list[PrivateKey]) -> None:
    data = bytearray(seal(b"x", [keys[0].public_key]))
    data[9] = count
    with pytest.raises(crypto.TamperedHeader, match=f"declares {count} recipient"):
        open_all(bytes(data), keys[0])
    with pytest.raises(crypto.TamperedHeader):
        crypto.read_recipient_count(io.BytesIO(bytes(data)))


@pytest.mark.parametrize("position", [0, 1, 2])
def test_altering_anothers_stanza_is_caught_by_the_header_mac(
    position: int, keys: list[PrivateKey]
) -> None:
    data = bytearray(seal(PAYLOAD, [k.public_key for k in keys[:3]]))
    data[stanza_at(position).start + 40] ^= 1
    for index, key in enumerate(keys[:3]):
        expected = crypto.WrongKey if index == position else crypto.TamperedHeader
        assert refusal(bytes(data), key) is expected, (position, index)


def test_reordered_stanzas_are_refused(keys: list[PrivateKey]) -> None:
    data = bytearray(seal(PAYLOAD, [k.public_key for k in keys[:3]]))
    first, last = bytes(data[stanza_at(0)]), bytes(data[stanza_at(2)])
    data[stanza_at(0)], data[stanza_at(2)] = last, first
    for key in keys[:3]:
        assert refusal(bytes(data), key) is crypto.TamperedHeader


def test_a_count_changed_within_range_is_refused(keys: list[PrivateKey]) -> None:
    data = bytearray(seal(PAYLOAD, [k.public_key for k in keys[:3]]))
    for count, key, expected in (
        (2, keys[0], crypto.TamperedHeader),  # its stanza still read, the MAC differs
        (2, keys[2], crypto.WrongKey),  # its stanza is no longer in the header
        (4, keys[1], crypto.TamperedHeader),  # the stream header read as a 4th stanza
    ):
        data[9] = count
        assert refusal(bytes(data), key) is expected, (count, key)


def test_every_bit_flip_in_a_version_3_header_is_refused(keys: list[PrivateKey]) -> None:
    data = seal(b"a short payload", [k.public_key for k in keys[:2]])
    reader = keys[1]  # its stanza is the second
    header = crypto.header_size(V3, 2)
    for byte in range(crypto.PREFIX_BYTES, header):
        for bit in range(8):
            changed = bytearray(data)
            changed[byte] ^= 1 << bit
            cause = refusal(bytes(changed), reader)
            if byte == crypto.PREFIX_BYTES:
                # A larger count may also run past this short file's end.
                allowed = (crypto.TamperedHeader, crypto.WrongKey, crypto.TruncatedFile)
                assert cause in allowed, bit
            elif stanza_at(1).start <= byte < stanza_at(1).stop:
                assert cause is crypto.WrongKey, (byte, bit)
            else:
                assert cause is crypto.TamperedHeader, (byte, bit)


def test_the_header_is_the_ad_of_every_chunk(keys: list[PrivateKey]) -> None:
    """A writer that got the MAC right but used other AD is still refused, at chunk 0."""
    key = keys[0]
    file_key = bindings.crypto_secretstream_xchacha20poly1305_keygen()
    state = bindings.crypto_secretstream_xchacha20poly1305_state()
    stream_header = bindings.crypto_secretstream_xchacha20poly1305_init_push(state, file_key)
    signed = crypto.MAGIC + bytes([V3, 1]) + SealedBox(key.public_key).encrypt(file_key)
    signed += stream_header
    header = signed + documented_mac(signed, file_key)
    chunk = bindings.crypto_secretstream_xchacha20poly1305_push(
        state, b"payload", b"", bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL
    )
    with pytest.raises(crypto.TamperedChunk, match="chunk 0"):
        open_all(header + chunk, key)


def test_different_file_keys_for_different_reviewers_are_refused(
    keys: list[PrivateKey],
) -> None:
    """A hostile writer cannot show two reviewers two different files under one header."""
    alice, bob = keys[0], keys[1]
    key_a = bindings.crypto_secretstream_xchacha20poly1305_keygen()
    key_b = bindings.crypto_secretstream_xchacha20poly1305_keygen()
    state = bindings.crypto_secretstream_xchacha20poly1305_state()
    stream_header = bindings.crypto_secretstream_xchacha20poly1305_init_push(state, key_a)
    signed = crypto.MAGIC + bytes([V3, 2])
    signed += SealedBox(alice.public_key).encrypt(key_a)
    signed += SealedBox(bob.public_key).encrypt(key_b)
    signed += stream_header
    header = signed + documented_mac(signed, key_a)
    chunk = bindings.crypto_secretstream_xchacha20poly1305_push(
        state, b"payload", header, bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL
    )
    assert open_all(header + chunk, alice) == b"payload"
    assert refusal(header + chunk, bob) is crypto.TamperedHeader


def test_truncated_inside_the_stanzas(keys: list[PrivateKey]) -> None:
    data = seal(b"x", [k.public_key for k in keys[:3]])
    for end in (crypto.PREFIX_BYTES, crypto.PREFIX_BYTES + 1, stanza_at(2).start + 5):
        assert refusal(data[:end], keys[0]) is crypto.TruncatedFile, end


def test_old_readers_refuse_version_3_as_unsupported(keys: list[PrivateKey]) -> None:
    data = seal(b"x", [keys[0].public_key])
    old = frozenset({crypto.VERSION, crypto.SOURCE_VERSION})
    with pytest.raises(crypto.UnsupportedVersion, match="upgrade sealdrop"):
        b"".join(crypto.open_payload(io.BytesIO(data), keys[0], versions=old))


def documented_mac(signed: bytes, file_key: bytes) -> bytes:
    """docs/FORMAT.md's header MAC, written from the document."""
    return hashlib.blake2b(signed, digest_size=32, key=file_key, person=b"sealdrop-hdr3").digest()
