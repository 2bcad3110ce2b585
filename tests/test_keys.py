from __future__ import annotations

import base64
import os
import stat
import struct
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

import nacl.encoding
import nacl.hash
import pytest
from nacl.public import PrivateKey, PublicKey, SealedBox

from sealdrop import keys

FAST = keys.KdfCost.MIN
# Fixed vector: the key bytes 00 01 02 ... 1f.
VECTOR_KEY = PublicKey(bytes(range(32)))
VECTOR_TEXT = "sealdrop-pub1aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypzmwvzfq"
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return keys.write_key_pair(tmp_path, "correct horse", FAST)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- public key text ---------------------------------------------------------------


def test_public_key_text_matches_the_fixed_vector() -> None:
    assert keys.encode_public_key(VECTOR_KEY) == VECTOR_TEXT
    assert bytes(keys.decode_public_key(VECTOR_TEXT)) == bytes(VECTOR_KEY)


def test_public_key_text_follows_the_documented_construction() -> None:
    # An independent implementation of docs/FORMAT.md, with libsodium's BLAKE2b.
    raw = bytes(VECTOR_KEY)
    person = b"sealdrop-pub1".ljust(16, b"\0")
    digest = nacl.hash.blake2b(raw, digest_size=32, person=person, encoder=nacl.encoding.RawEncoder)
    body = base64.b32encode(raw + digest[:4]).decode("ascii").rstrip("=").lower()
    assert "sealdrop-pub1" + body == VECTOR_TEXT


def test_public_key_text_round_trips_and_is_one_lowercase_line() -> None:
    key = PrivateKey.generate().public_key
    text = keys.encode_public_key(key)
    assert len(text) == len("sealdrop-pub1") + 58
    assert text == text.lower() and "\n" not in text
    assert keys.decode_public_key(f"  {text}\n") == key


def test_every_single_character_change_is_caught_by_the_checksum() -> None:
    start = len("sealdrop-pub1")
    for index in range(start, len(VECTOR_TEXT)):
        for char in ALPHABET:
            if char == VECTOR_TEXT[index]:
                continue
            changed = VECTOR_TEXT[:index] + char + VECTOR_TEXT[index + 1 :]
            with pytest.raises(keys.KeyChecksumMismatch, match="mistyped"):
                keys.decode_public_key(changed)


def test_swapped_neighbours_are_caught() -> None:
    start = len("sealdrop-pub1")
    for index in range(start, len(VECTOR_TEXT) - 1):
        a, b = VECTOR_TEXT[index], VECTOR_TEXT[index + 1]
        if a == b:
            continue
        swapped = VECTOR_TEXT[:index] + b + a + VECTOR_TEXT[index + 2 :]
        with pytest.raises(keys.KeyChecksumMismatch):
            keys.decode_public_key(swapped)


def test_every_truncation_is_refused_as_truncated() -> None:
    for length in range(len("sealdrop-pub1"), len(VECTOR_TEXT)):
        with pytest.raises(keys.MalformedKey, match="truncated"):
            keys.decode_public_key(VECTOR_TEXT[:length])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "not a sealdrop public key"),
        ("age1qqqqqqqq", "not a sealdrop public key"),
        (VECTOR_TEXT.upper(), "not a sealdrop public key"),
        (VECTOR_TEXT[:-1] + "1", "mistyped"),
        (VECTOR_TEXT[:20] + "A" + VECTOR_TEXT[21:], "mistyped"),
        (VECTOR_TEXT + "a", "characters added"),
        (VECTOR_TEXT + "\n" + VECTOR_TEXT, "more than the public key"),
    ],
)
def test_malformed_public_key_text_is_refused(text: str, fragment: str) -> None:
    with pytest.raises(keys.MalformedKey, match=fragment):
        keys.decode_public_key(text)


# --- key files --------------------------------------------------------------------


def test_key_pair_round_trip(pair: tuple[Path, Path]) -> None:
    public_path, secret_path = pair
    assert public_path.name == "reviewer.pub" and secret_path.name == "reviewer.key"
    public = keys.load_public_key(public_path)
    secret = keys.load_secret_key(secret_path, "correct horse")
    assert secret.public_key == public
    sealed = SealedBox(public).encrypt(b"evidence")
    assert SealedBox(secret).decrypt(sealed) == b"evidence"


def test_secret_key_file_names_its_format_and_its_public_key(pair: tuple[Path, Path]) -> None:
    public_path, secret_path = pair
    lines = secret_path.read_text().splitlines()
    assert lines[0] == "sealdrop secret key v1"
    assert lines[1] == "public key: " + public_path.read_text().strip()
    assert len(lines) == 3
    assert public_path.read_text() == public_path.read_text().strip() + "\n"


def test_key_files_have_exact_modes_whatever_the_umask(tmp_path: Path, umask_zero: None) -> None:
    public_path, secret_path = keys.write_key_pair(tmp_path, "pw", FAST)
    assert _mode(secret_path) == 0o600
    assert _mode(public_path) == 0o644


def test_wrong_passphrase_is_refused(pair: tuple[Path, Path]) -> None:
    with pytest.raises(keys.WrongPassphrase, match=str(pair[1])):
        keys.load_secret_key(pair[1], "wrong horse")


def test_passphrase_is_unicode_normalised(tmp_path: Path) -> None:
    composed = unicodedata.normalize("NFC", "caf\u00e9 na\u00efve")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    _, secret_path = keys.write_key_pair(tmp_path, composed, FAST)
    keys.load_secret_key(secret_path, decomposed)


def test_secret_key_given_as_public_key_is_refused(pair: tuple[Path, Path]) -> None:
    secret_path = pair[1]
    with pytest.raises(keys.IsSecretKey) as caught:
        keys.load_public_key(secret_path)
    message = str(caught.value)
    assert str(secret_path) in message
    assert "SECRET key" in message and "Never copy reviewer.key to the server" in message
    with pytest.raises(keys.IsSecretKey):
        keys.decode_public_key(secret_path.read_text())


def test_public_key_given_as_secret_key_is_refused(pair: tuple[Path, Path]) -> None:
    public_path = pair[0]
    with pytest.raises(keys.IsPublicKey) as caught:
        keys.load_secret_key(public_path, "correct horse")
    assert str(public_path) in str(caught.value)
    assert "reviewer.key" in str(caught.value)


def test_looks_like_secret_key(pair: tuple[Path, Path]) -> None:
    public_path, secret_path = pair
    assert keys.looks_like_secret_key(secret_path.read_text())
    assert keys.looks_like_secret_key(secret_path.read_bytes())
    assert not keys.looks_like_secret_key(public_path.read_text())
    assert not keys.looks_like_secret_key(public_path.read_bytes())


def test_refuses_to_overwrite_and_leaves_existing_files_untouched(tmp_path: Path) -> None:
    for existing in ("reviewer.pub", "reviewer.key"):
        folder = tmp_path / existing
        folder.mkdir()
        (folder / existing).write_bytes(b"precious")
        with pytest.raises(keys.KeyFileExists, match=existing):
            keys.write_key_pair(folder, "pw", FAST)
        assert [p.name for p in folder.iterdir()] == [existing]
        assert (folder / existing).read_bytes() == b"precious"


def test_a_dangling_symlink_counts_as_existing(tmp_path: Path) -> None:
    (tmp_path / "reviewer.key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(keys.KeyFileExists):
        keys.write_key_pair(tmp_path, "pw", FAST)
    assert not (tmp_path / "elsewhere").exists()


def test_a_public_file_appearing_mid_write_leaves_no_half_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encode = keys.encode_secret_key

    def encode_then_race(key: PrivateKey, passphrase: str, cost: keys.KdfCost) -> str:
        (tmp_path / "reviewer.pub").write_text("someone else's\n")
        return encode(key, passphrase, cost)

    monkeypatch.setattr(keys.files, "encode_secret_key", encode_then_race)
    with pytest.raises(keys.KeyFileExists):
        keys.write_key_pair(tmp_path, "pw", FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviewer.pub"]
    assert (tmp_path / "reviewer.pub").read_text() == "someone else's\n"


def test_missing_file_is_reported_as_inaccessible(tmp_path: Path) -> None:
    with pytest.raises(keys.KeyFileInaccessible, match="nowhere.pub"):
        keys.load_public_key(tmp_path / "nowhere.pub")
    with pytest.raises(keys.KeyFileInaccessible):
        keys.load_secret_key(tmp_path, "pw")


def test_missing_folder_when_writing_is_reported(tmp_path: Path) -> None:
    with pytest.raises(keys.KeyFileInaccessible, match="cannot create"):
        keys.write_key_pair(tmp_path / "absent", "pw", FAST)


# --- damaged or hostile secret key files ----------------------------------------------


def _rewrite_blob(secret_path: Path, opslimit: int, memlimit: int) -> None:
    header, public_line, blob_line = secret_path.read_text().splitlines()
    blob = bytearray(base64.b64decode(blob_line))
    struct.pack_into(">IQ", blob, 16, opslimit, memlimit)
    encoded = base64.b64encode(bytes(blob)).decode()
    secret_path.write_text(f"{header}\n{public_line}\n{encoded}\n")


@pytest.mark.parametrize(
    ("opslimit", "memlimit"),
    [
        (4, 1 << 40),  # 1 TiB of memory
        (4, 4 * 1024**3 + 1024),
        (0xFFFFFFFF, 8192),  # four billion passes
        (0, 8192),
        (1, 1024),
    ],
)
def test_hostile_stored_cost_is_refused_before_deriving(
    pair: tuple[Path, Path], opslimit: int, memlimit: int
) -> None:
    _rewrite_blob(pair[1], opslimit, memlimit)
    started = time.monotonic()
    with pytest.raises(keys.KdfCostRefused, match=str(pair[1])):
        keys.load_secret_key(pair[1], "correct horse")
    assert time.monotonic() - started < 1


def test_a_changed_stored_cost_within_bounds_fails_as_wrong_passphrase(
    pair: tuple[Path, Path],
) -> None:
    _rewrite_blob(pair[1], 2, 8192)
    with pytest.raises(keys.WrongPassphrase):
        keys.load_secret_key(pair[1], "correct horse")


def test_every_flipped_bit_in_the_sealed_key_is_detected(pair: tuple[Path, Path]) -> None:
    header, public_line, blob_line = pair[1].read_text().splitlines()
    blob = base64.b64decode(blob_line)
    for offset in (0, 16 + 12, 16 + 12 + 24, len(blob) - 1):
        damaged = bytearray(blob)
        damaged[offset] ^= 0x01
        encoded = base64.b64encode(bytes(damaged)).decode()
        pair[1].write_text(f"{header}\n{public_line}\n{encoded}\n")
        with pytest.raises(keys.WrongPassphrase):
            keys.load_secret_key(pair[1], "correct horse")


def test_a_public_key_line_from_another_pair_is_detected(pair: tuple[Path, Path]) -> None:
    header, _, blob_line = pair[1].read_text().splitlines()
    other = keys.encode_public_key(PrivateKey.generate().public_key)
    pair[1].write_text(f"{header}\npublic key: {other}\n{blob_line}\n")
    with pytest.raises(keys.KeyPairMismatch, match="edited"):
        keys.load_secret_key(pair[1], "correct horse")


def test_crlf_line_endings_are_accepted(pair: tuple[Path, Path]) -> None:
    public_path, secret_path = pair
    secret_path.write_bytes(secret_path.read_bytes().replace(b"\n", b"\r\n"))
    public_path.write_bytes(public_path.read_bytes().replace(b"\n", b"\r\n"))
    assert keys.load_secret_key(secret_path, "correct horse").public_key == (
        keys.load_public_key(public_path)
    )


@pytest.mark.parametrize(
    ("mangle", "error", "fragment"),
    [
        (lambda t: t.replace("v1", "v2", 1), keys.UnsupportedKeyVersion, "upgrade"),
        (lambda t: "-----BEGIN PRIVATE KEY-----\n" + t, keys.MalformedKey, "not a sealdrop"),
        (lambda t: t + "extra line\n", keys.MalformedKey, "three lines"),
        (lambda t: t.rsplit("\n", 2)[0] + "\n", keys.MalformedKey, "three lines"),
        (lambda t: t.replace("public key: ", "pubkey: "), keys.MalformedKey, "three lines"),
        (lambda t: t[:-10] + "\n", keys.MalformedKey, "base64"),
        (lambda t: t[:-3] + "!=\n", keys.MalformedKey, "base64"),
        (lambda t: t.replace("sealdrop-pub1", "sealdrop-pub1a"), keys.MalformedKey, "damaged"),
    ],
)
def test_damaged_secret_key_files_are_refused(
    pair: tuple[Path, Path], mangle: Callable[[str], str], error: type[Exception], fragment: str
) -> None:
    pair[1].write_text(mangle(pair[1].read_text()))
    with pytest.raises(error, match=fragment) as caught:
        keys.load_secret_key(pair[1], "correct horse")
    assert str(pair[1]) in str(caught.value)


def test_binary_and_huge_files_are_refused(tmp_path: Path) -> None:
    binary = tmp_path / "spool.bin"
    binary.write_bytes(b"sealdrop\x01\xff\xfe")
    with pytest.raises(keys.MalformedKey, match="not plain text"):
        keys.load_public_key(binary)
    huge = tmp_path / "huge"
    huge.write_bytes(b"a" * (1024 * 1024))
    with pytest.raises(keys.MalformedKey, match="too large"):
        keys.load_secret_key(huge, "pw")


def test_every_error_is_a_key_file_error_with_a_docstring() -> None:
    classes = [
        value
        for value in vars(keys).values()
        if isinstance(value, type) and issubclass(value, keys.KeyFileError)
    ]
    assert len(classes) >= 10
    for cls in classes:
        assert cls.__doc__ and cls.__doc__.strip()


@pytest.mark.slow
def test_round_trip_at_the_default_sensitive_cost(tmp_path: Path) -> None:
    public_path, secret_path = keys.write_key_pair(tmp_path, "correct horse")
    blob = base64.b64decode(secret_path.read_text().splitlines()[2])
    assert struct.unpack_from(">IQ", blob, 16) == (4, 1024**3)
    secret = keys.load_secret_key(secret_path, "correct horse")
    assert secret.public_key == keys.load_public_key(public_path)
