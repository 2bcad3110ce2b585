"""The two kinds of key texts (the reviewer's X25519 keys, keys/; the reply-signing
Ed25519 keys, signing.py) are read by one reader: the same damage to either is refused
with the same error class, and neither kind's text is ever read as the other's."""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from sealdrop import keys, signing

PASSPHRASE = "correct horse"
COST = keys.KdfCost.MIN


@dataclass(frozen=True)
class Kind:
    name: str
    public_text: Callable[[], str]
    secret_text: Callable[[], str]
    decode_public: Callable[[str, str], object]
    decode_secret: Callable[[str, str, str], object]


def reviewer_pair() -> tuple[str, str]:
    key = PrivateKey.generate()
    return keys.encode_public_key(key.public_key), keys.encode_secret_key(key, PASSPHRASE, COST)


def signing_pair() -> tuple[str, str]:
    key = SigningKey.generate()
    return (
        signing.encode_signing_public_key(key.verify_key),
        signing.encode_signing_secret_key(key, PASSPHRASE, COST),
    )


KINDS = [
    Kind(
        "reviewer",
        lambda: reviewer_pair()[0],
        lambda: reviewer_pair()[1],
        keys.public.decode_public_key_from,
        keys.decode_secret_key,
    ),
    Kind(
        "reply-signing",
        lambda: signing_pair()[0],
        lambda: signing_pair()[1],
        signing.decode_signing_public_key,
        signing.decode_signing_secret_key,
    ),
]


def refusal(call: Callable[..., object], *args: str) -> str:
    """The name of the KeyFileError `call(*args)` raises, or "ok"."""
    try:
        call(*args)
    except keys.KeyFileError as err:
        assert "SOURCE" in str(err), err  # every message names the file
        return type(err).__name__
    return "ok"


def prefix_of(line: str) -> str:
    match = re.match(r"sealdrop-[a-z]+1", line)
    assert match is not None
    return match.group(0)


def last_changed(line: str) -> str:
    # A last character that differs only in base32's unused low bits.
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return line[:-1] + alphabet[alphabet.index(line[-1]) ^ 1]


PUBLIC_DAMAGE: dict[str, Callable[[str], str]] = {
    "as written": lambda line: line,
    "one character changed": lambda line: line[:30] + ("a" if line[30] != "a" else "b") + line[31:],
    "last character's unused bits": last_changed,
    "truncated": lambda line: line[:-1],
    "uppercase": lambda line: prefix_of(line) + line[len(prefix_of(line)) :].upper(),
    "a space inside": lambda line: line[:20] + " " + line[20:],
    "a character outside the alphabet": lambda line: line[:20] + "1" + line[21:],
    "two lines": lambda line: line + "\n" + line,
    "the secret key file": lambda line: "sealdrop secret key v1\npublic key: x\ny\n",
}


def replace_line(text: str, index: int, new: str) -> str:
    lines = text.splitlines()
    lines[index] = new
    return "\n".join(lines) + "\n"


def with_costs(text: str, opslimit: int) -> str:
    blob = bytearray(base64.b64decode(text.splitlines()[2]))
    struct.pack_into(">I", blob, 16, opslimit)
    return replace_line(text, 2, base64.b64encode(bytes(blob)).decode())


def box_altered(text: str) -> str:
    blob = bytearray(base64.b64decode(text.splitlines()[2]))
    blob[-1] ^= 1
    return replace_line(text, 2, base64.b64encode(bytes(blob)).decode())


def bumped(text: str) -> str:
    return replace_line(text, 0, text.splitlines()[0].replace(" v1", " v2"))


SECRET_DAMAGE: dict[str, Callable[[str, str, str], str]] = {
    "as written": lambda text, public, other: text,
    "a newer version": lambda text, public, other: bumped(text),
    "the public key file": lambda text, public, other: public + "\n",
    "two spaces after the label": lambda text, public, other: replace_line(
        text, 1, "public key:  " + public
    ),
    "another pair's public key": lambda text, public, other: replace_line(
        text, 1, "public key: " + other
    ),
    "a damaged public key line": lambda text, public, other: replace_line(
        text, 1, "public key: " + last_changed(public)
    ),
    "a fourth line": lambda text, public, other: text + "more\n",
    "costs out of bounds": lambda text, public, other: with_costs(text, 1000),
    "the box altered": lambda text, public, other: box_altered(text),
}


@pytest.mark.parametrize("damage", PUBLIC_DAMAGE)
def test_both_kinds_refuse_a_damaged_public_key_alike(damage: str) -> None:
    outcomes = {
        kind.name: refusal(kind.decode_public, PUBLIC_DAMAGE[damage](kind.public_text()), "SOURCE")
        for kind in KINDS
    }
    assert len(set(outcomes.values())) == 1, outcomes


@pytest.mark.parametrize("damage", SECRET_DAMAGE)
def test_both_kinds_refuse_a_damaged_secret_key_file_alike(damage: str) -> None:
    outcomes = {}
    for kind in KINDS:
        text = kind.secret_text()
        public = text.splitlines()[1].removeprefix("public key: ")
        damaged = SECRET_DAMAGE[damage](text, public, kind.public_text())
        outcomes[kind.name] = refusal(kind.decode_secret, damaged, PASSPHRASE, "SOURCE")
    assert len(set(outcomes.values())) == 1, outcomes


def test_neither_kind_reads_the_other_kinds_texts() -> None:
    reviewer, signer = KINDS
    for reader, writer in ((reviewer, signer), (signer, reviewer)):
        foreign_public = writer.public_text()
        # The same key bytes under the other prefix: the checksum is personalised too.
        own_prefix = prefix_of(reader.public_text())
        moved = own_prefix + foreign_public[len(prefix_of(foreign_public)) :]
        assert refusal(reader.decode_public, foreign_public, "SOURCE") == "MalformedKey"
        assert refusal(reader.decode_public, moved, "SOURCE") == "KeyChecksumMismatch"
        foreign_secret = writer.secret_text()
        refused = refusal(reader.decode_secret, foreign_secret, PASSPHRASE, "SOURCE")
        assert refused == "MalformedKey"


def test_the_signing_key_vectors_still_load() -> None:
    vectors = Path(__file__).resolve().parent / "vectors"
    passphrase = (vectors / "PASSPHRASE").read_text(encoding="ascii")
    secret = signing.load_signing_secret_key(vectors / "signed" / "reply-signing.key", passphrase)
    [public] = signing.load_signing_public_keys(vectors / "signed" / "reply-signing.pub")
    assert secret.verify_key == public
    seed = bytes.fromhex((vectors / "signed" / "reply_signing_seed.hex").read_text().strip())
    assert bytes(secret) == seed
