"""Codenames: the word list, the checksum word, normalisation, derivation and the salt file."""

from __future__ import annotations

import hashlib
import math
import os
import stat
from pathlib import Path

import pytest

from sealdrop import codename, records
from sealdrop.keys import KdfCost

SALT = bytes(range(16))


def test_the_word_list_is_the_eff_large_list_unchanged() -> None:
    words = codename.word_list()
    assert len(words) == 7776 == len(set(words))
    assert words[0] == "abacus" and words[-1] == "zoom"
    # Enough words for at least 80 bits, not counting the checksum word.
    assert codename.WORDS * math.log2(len(words)) >= 80


def test_a_new_codename_has_seven_words_and_a_checksum_word() -> None:
    text = codename.new_codename()
    words = text.split(" ")
    assert len(words) == codename.WORDS + 1
    assert words[-1] == codename.checksum_word(words[:-1])
    assert codename.normalise(text) == text
    assert codename.new_codename() != text


def test_case_and_white_space_are_forgiven() -> None:
    text = codename.new_codename()
    typed = "  " + "\t".join(word.upper() for word in text.split(" ")) + "\n"
    assert codename.normalise(typed) == text
    # Full-width letters (a phone keyboard in another script) fold to ASCII under NFKC.
    wide = "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in text)
    assert codename.normalise(wide) == text


def test_any_single_word_typo_is_caught() -> None:
    words = codename.new_codename().split(" ")
    for position in range(len(words)):
        changed = list(words)
        changed[position] = changed[position][:-1] + ("x" if changed[position][-1] != "x" else "y")
        with pytest.raises(codename.BadCodename):
            codename.normalise(" ".join(changed))
    # Two valid words swapped: every word is in the list, only the checksum catches it.
    swapped = [words[1], words[0], *words[2:]]
    if swapped != words and codename.checksum_word(swapped[:-1]) != words[-1]:
        with pytest.raises(codename.BadCodename, match="checksum"):
            codename.normalise(" ".join(swapped))


@pytest.mark.parametrize(
    "text",
    ["", "abacus", "abacus " * 8, "abacus " * 9, "not a codename at all really no no no"],
)
def test_things_that_are_not_codenames(text: str) -> None:
    with pytest.raises(codename.BadCodename):
        codename.normalise(text)


def test_the_checksum_word_is_a_labelled_hash_of_the_words() -> None:
    words = ["abacus", "abdomen", "abdominal", "abide", "abiding", "ability", "ablaze"]
    digest = hashlib.blake2b(
        " ".join(words).encode(), digest_size=8, person=b"sealdrop-cname1"
    ).digest()
    expected = codename.word_list()[int.from_bytes(digest, "big") % 7776]
    assert codename.checksum_word(words) == expected


def test_derivation_is_deterministic_and_depends_on_codename_and_salt() -> None:
    text = codename.new_codename()
    keys = codename.derive(text, SALT, codename.TEST_COST)
    assert codename.derive(text, SALT, codename.TEST_COST) == keys
    other_salt = codename.derive(text, bytes(16), codename.TEST_COST)
    other_name = codename.derive(codename.new_codename(), SALT, codename.TEST_COST)
    assert len({keys.mailbox, other_salt.mailbox, other_name.mailbox}) == 3
    assert len(keys.mailbox_id) == 16 and len(keys.mailbox) == 32
    assert keys.mailbox_id == records.mailbox_id_for(bytes(keys.reply_public_key))
    # The cost is part of the derivation: a server that changes it changes every key.
    costlier = KdfCost(codename.TEST_COST.opslimit + 1, codename.TEST_COST.memlimit)
    assert codename.derive(text, SALT, costlier) != keys


def test_derivation_matches_the_documented_construction() -> None:
    from nacl.public import PrivateKey
    from nacl.pwhash import argon2id

    text = "abacus abdomen abdominal abide abiding ability ablaze"
    text += " " + codename.checksum_word(text.split())
    master = argon2id.kdf(32, text.encode(), SALT, opslimit=1, memlimit=8192)
    secret = hashlib.blake2b(b"", digest_size=32, key=master, person=b"sealdrop-reply1").digest()
    public = bytes(PrivateKey(secret).public_key)
    mailbox = hashlib.blake2b(public, digest_size=16, person=b"sealdrop-mbox1").digest()
    keys = codename.derive(text, SALT, KdfCost(1, 8192))
    assert bytes(keys.reply_key) == secret and keys.mailbox_id == mailbox


def test_a_wrong_sized_salt_is_refused() -> None:
    with pytest.raises(ValueError):
        codename.derive(codename.new_codename(), b"short", codename.TEST_COST)


def test_the_salt_is_made_once_private_and_kept(tmp_path: Path) -> None:
    salt = codename.load_installation_salt(tmp_path)
    path = tmp_path / codename.SALT_FILE
    assert len(salt) == 16
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert codename.load_installation_salt(tmp_path) == salt


def test_a_damaged_or_exposed_salt_stops_everything(tmp_path: Path) -> None:
    path = tmp_path / codename.SALT_FILE
    path.write_bytes(b"too short")
    path.chmod(0o600)
    with pytest.raises(codename.SaltUnusable, match="restore it"):
        codename.load_installation_salt(tmp_path)
    path.write_bytes(os.urandom(16))
    path.chmod(0o644)
    with pytest.raises(codename.SaltUnusable, match="chmod 600"):
        codename.load_installation_salt(tmp_path)
    with pytest.raises(codename.SaltUnusable, match="state folder"):
        codename.load_installation_salt(tmp_path / "missing")


def test_a_salt_planted_as_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(os.urandom(16))
    target.chmod(0o600)
    (tmp_path / codename.SALT_FILE).symlink_to(target)
    with pytest.raises(codename.SaltUnusable):
        codename.load_installation_salt(tmp_path)
