"""Key-file vectors (tests/vectors/keys/): the text rules of docs/FORMAT.md, "Key files".

Each `good_*` file loads to the vectors' key (`_sig_` files: the reply-signing key,
read by signing.py by the same rules); each `fail_*` file is refused with
exactly the error class its `.expected` file names, whether read as a file or,
for public keys, given as text.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nacl.public import PublicKey
from nacl.signing import VerifyKey

from sealdrop import keys, signing

VECTORS = Path(__file__).resolve().parent / "vectors"
KEY_VECTORS = VECTORS / "keys"
PASSPHRASE = (VECTORS / "PASSPHRASE").read_text(encoding="ascii")
PUBLIC = keys.load_public_key(VECTORS / keys.PUBLIC_KEY_FILENAME)
NAMES = sorted(p.name for p in KEY_VECTORS.iterdir() if not p.name.endswith(".expected"))


def expected(name: str) -> str:
    return (KEY_VECTORS / f"{name}.expected").read_text(encoding="utf-8").splitlines()[0]


SIGNING_PUBLIC = signing.load_signing_public_keys(VECTORS / "signed" / "reply-signing.pub")[0]


def load(path: Path) -> PublicKey | VerifyKey:
    if "_sig_" in path.name:
        if path.suffix == ".pub":
            return signing.load_signing_public_keys(path)[0]
        return signing.load_signing_secret_key(path, PASSPHRASE).verify_key
    if path.suffix == ".pub":
        return keys.load_public_key(path)
    return keys.load_secret_key(path, PASSPHRASE).public_key


def expected_key(name: str) -> PublicKey | VerifyKey:
    return SIGNING_PUBLIC if "_sig_" in name else PUBLIC


def test_every_rule_has_vectors_of_both_kinds() -> None:
    for suffix in (".pub", ".key"):
        outcomes = {expected(n) for n in NAMES if n.endswith(suffix)}
        assert "ok" in outcomes and "MalformedKey" in outcomes
    classes = {expected(n) for n in NAMES} - {"ok"}
    assert classes == {
        "MalformedKey",
        "KeyChecksumMismatch",
        "IsSecretKey",
        "IsPublicKey",
        "UnsupportedKeyVersion",
        "KdfCostRefused",
        "WrongPassphrase",
        "KeyPairMismatch",
    }


@pytest.mark.parametrize("name", NAMES)
def test_key_file_vector(name: str) -> None:
    path = KEY_VECTORS / name
    outcome = expected(name)
    if outcome == "ok":
        assert load(path) == expected_key(name)
        return
    error = getattr(keys, outcome)
    assert issubclass(error, keys.KeyFileError)
    with pytest.raises(error) as raised:
        load(path)
    assert type(raised.value) is error
    assert str(path) in str(raised.value)  # the message names the file


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith(".pub") and "_sig_" not in n])
def test_public_key_text_follows_the_same_rules(name: str) -> None:
    """The text API (a key pasted, not a file) accepts and refuses exactly the same."""
    text = (KEY_VECTORS / name).read_bytes().decode("utf-8")
    outcome = expected(name)
    if outcome == "ok":
        assert keys.decode_public_key(text) == PUBLIC
    else:
        with pytest.raises(getattr(keys, outcome)):
            keys.decode_public_key(text)
