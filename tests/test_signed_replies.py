"""Only replies the reviewer signed are shown (issue 12, item 5).

The reproduction: anyone who learned a source's reply public key once (a seized
reviewer laptop, a leaked source.json) could write reply files that the server
showed as the reviewer's, for ever ("meet our investigator at ..."). Here such a
forger writes every kind of reply file it can without the reviewer's signing key,
into the real app's replies folder, and the source's replies page shows none of
them; the reviewer's own, written by `sealdrop keygen` + `sealdrop reply`, is shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import nacl.exceptions
import pytest
from flask import Flask
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from sealdrop import cli, codename, keys, records, replies, signing
from sealdrop.reviewer import sources

from .conftest import signed_reply

TEST_KDF = {"codename_kdf_memory": 8 * 1024, "codename_kdf_passes": 1}
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def service(make_app: Callable[..., Flask], tmp_path: Path) -> Callable[..., Flask]:
    """`service(signing_path)`: the app with codenames, replies and these signing keys."""
    for name in ("state", "replies"):
        (tmp_path / name).mkdir(mode=0o700)

    def build(signing_path: Path | None) -> Flask:
        return make_app(
            state_dir=tmp_path / "state",
            replies_dir=tmp_path / "replies",
            reply_signing_key_file=signing_path,
            **TEST_KDF,
        )

    return build


def source(tmp_path: Path) -> tuple[str, codename.SourceKeys]:
    words = codename.new_codename()
    salt = codename.load_installation_salt(tmp_path / "state")
    return words, codename.derive(words, salt, keys.KdfCost(1, 8 * 1024))


def file_reply(tmp_path: Path, mailbox_id: bytes, data: bytes) -> None:
    (tmp_path / "replies" / replies.reply_file_name(mailbox_id)).write_bytes(data)


def shown(app: Flask, words: str) -> str:
    page = app.test_client().post(
        "/replies", data=urlencode({"codename": words}), content_type=FORM
    )
    assert page.status_code == 200
    return page.get_data(as_text=True)


def write_pub(path: Path, key: SigningKey) -> Path:
    path.write_text(signing.encode_signing_public_key(key.verify_key) + "\n")
    return path


def test_a_forger_who_knows_the_reply_key_cannot_reach_the_source(
    service: Callable[..., Flask], tmp_path: Path, reply_signer: SigningKey
) -> None:
    app = service(write_pub(tmp_path / "reply-signing.pub", reply_signer))
    words, derived = source(tmp_path)
    public, mailbox = derived.reply_public_key, derived.mailbox_id
    forger = SigningKey.generate()
    genuine = signed_reply("genuine reply", public, mailbox, reply_signer)

    # Unsigned, as every reply was before: the reproduction.
    file_reply(tmp_path, mailbox, replies.seal_reply("unsigned forgery", public, "2026-12-01", "1"))
    # Signed by a key of the forger's own.
    file_reply(tmp_path, mailbox, signed_reply("own-key forgery", public, mailbox, forger))
    # The genuine signature moved onto other sealed bytes.
    other = replies.seal_reply("moved-signature forgery", public, "2026-12-01", "2")
    file_reply(tmp_path, mailbox, genuine[: replies.SIGNED_PREFIX_BYTES] + other)
    # A genuine reply re-signed by the forger.
    sealed = genuine[replies.SIGNED_PREFIX_BYTES :]
    file_reply(tmp_path, mailbox, replies.sign_reply(sealed, mailbox, forger))
    # One flipped byte in the sealed part, and a truncated file.
    flipped = bytearray(genuine)
    flipped[-100] ^= 1
    file_reply(tmp_path, mailbox, bytes(flipped))
    file_reply(tmp_path, mailbox, genuine[:-1])
    page = shown(app, words)
    assert "There are no replies for you at the moment" in page
    assert "forgery" not in page

    file_reply(tmp_path, mailbox, genuine)
    page = shown(app, words)
    assert "genuine reply" in page and "forgery" not in page


def test_a_signature_binds_the_reply_to_its_mailbox(reply_signer: SigningKey) -> None:
    mine, theirs = bytes(range(16)), bytes(16)
    data = signed_reply("hello", PrivateKey.generate().public_key, mine, reply_signer)
    signers = (reply_signer.verify_key,)
    assert replies.verified_sealed_reply(data, mine, signers) == data[replies.SIGNED_PREFIX_BYTES :]
    with pytest.raises(replies.ReplyNotSigned):
        replies.verified_sealed_reply(data, theirs, signers)
    with pytest.raises(replies.ReplyNotSigned):
        replies.verified_sealed_reply(data, mine, ())
    changed_version = data[:8] + b"\x02" + data[9:]
    with pytest.raises(replies.ReplyNotSigned, match="format is unknown"):
        replies.verified_sealed_reply(changed_version, mine, signers)


def test_any_of_several_reviewers_signing_keys_is_accepted(
    service: Callable[..., Flask], tmp_path: Path
) -> None:
    alice, bob, stranger = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    folder = tmp_path / "signing"
    folder.mkdir()
    write_pub(folder / "alice.pub", alice)
    write_pub(folder / "bob.pub", bob)
    app = service(folder)
    words, derived = source(tmp_path)
    for signer, text in ((alice, "from alice"), (bob, "from bob"), (stranger, "from a stranger")):
        data = signed_reply(text, derived.reply_public_key, derived.mailbox_id, signer)
        file_reply(tmp_path, derived.mailbox_id, data)
    page = shown(app, words)
    assert "from alice" in page and "from bob" in page and "from a stranger" not in page


def test_without_a_signing_key_no_reply_is_shown_and_the_operator_is_told(
    service: Callable[..., Flask],
    tmp_path: Path,
    reply_signer: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="sealdrop"):
        app = service(None)
    assert "reply_signing_key_file is not set" in caplog.text
    words, derived = source(tmp_path)
    file_reply(
        tmp_path,
        derived.mailbox_id,
        signed_reply("signed", derived.reply_public_key, derived.mailbox_id, reply_signer),
    )
    assert "There are no replies for you at the moment" in shown(app, words)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not a key\n", "not a reply-signing public key"),
        ("sealdrop-pub1" + "a" * 58 + "\n", "not a reply-signing public key"),
        ("sealdrop secret key for reply signing v1\nx\ny\n", "is a SECRET key"),
    ],
)
def test_an_unusable_signing_key_stops_start_up_naming_the_setting(
    service: Callable[..., Flask], tmp_path: Path, content: str, message: str
) -> None:
    from sealdrop.app import StartupRefused

    path = tmp_path / "reply-signing.pub"
    path.write_text(content)
    with pytest.raises(StartupRefused, match=message) as refused:
        service(path)
    assert "reply_signing_key_file" in str(refused.value)


def test_a_public_key_line_with_one_character_changed_fails_its_checksum() -> None:
    line = signing.encode_signing_public_key(SigningKey.generate().verify_key)
    assert signing.decode_signing_public_key(line, "x") is not None
    changed = line[:20] + ("a" if line[20] != "a" else "b") + line[21:]
    with pytest.raises(keys.KeyFileError):
        signing.decode_signing_public_key(changed, "x")


def test_keygen_makes_a_signing_key_that_reply_uses_and_the_server_accepts(
    service: Callable[..., Flask],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    offline = tmp_path / "offline"
    monkeypatch.setenv("SEALDROP_PASSPHRASE", "one passphrase for both keys")
    assert cli.main(["keygen", "--out", str(offline), "--kdf-cost", "min"]) == 0
    printed = capsys.readouterr().out
    assert "reply-signing.pub" in printed and "sealdrop-sig1" in printed
    secret = (offline / "reply-signing.key").read_text()
    assert secret.startswith("sealdrop secret key for reply signing v1\n")
    assert (offline / "reply-signing.key").stat().st_mode & 0o777 == 0o600
    assert keys.looks_like_secret_key(secret)  # so the server's checks refuse it too
    with pytest.raises(keys.KeyFileError, match="passphrase does not open"):
        signing.load_signing_secret_key(offline / "reply-signing.key", "another passphrase")
    with pytest.raises(keys.KeyFileError, match="reply-signing key"):
        keys.load_secret_key(offline / "reply-signing.key", "one passphrase for both keys")

    app = service(offline / "reply-signing.pub")
    words, derived = source(tmp_path)
    ident = records.SourceIdentity.for_key(records.FIRST_CONTACT, bytes(derived.reply_public_key))
    (tmp_path / "opened").mkdir()
    folder = sources.folder_for(tmp_path / "opened", ident)
    draft = tmp_path / "reply.txt"
    draft.write_text("Signed by the reviewer.")
    outbox = tmp_path / "outbox"
    argv = ["reply", str(folder), "--out", str(outbox), "--message-file", str(draft)]
    assert cli.main([*argv, "--signing-key", str(offline / "reply-signing.key")]) == 0
    (written,) = outbox.iterdir()
    (tmp_path / "replies" / written.name).write_bytes(written.read_bytes())
    assert "Signed by the reviewer." in shown(app, words)

    # An existing reviewer adds only the signing pair, next to an older key pair.
    older = tmp_path / "older"
    older.mkdir()
    keys.write_key_pair(older, "pw", keys.KdfCost.MIN)
    before = sorted(p.name for p in older.iterdir())
    assert (
        cli.main(["keygen", "--out", str(older), "--reply-signing-only", "--kdf-cost", "min"]) == 0
    )
    after = sorted(p.name for p in older.iterdir())
    assert sorted(set(after) - set(before)) == ["reply-signing.key", "reply-signing.pub"]
    assert (
        cli.main(["keygen", "--out", str(older), "--reply-signing-only", "--kdf-cost", "min"]) == 1
    )


# --- the vectors (tests/make_vectors.py --only signed) ------------------------------------

VECTORS = Path(__file__).resolve().parent / "vectors"
SIGNED = VECTORS / "signed"
SIGNED_FAILS = sorted(p.stem for p in SIGNED.glob("fail_*.reply"))


def vector_source() -> tuple[PrivateKey, bytes]:
    import json

    source = json.loads((VECTORS / "source_codename.json").read_text())
    return PrivateKey(bytes.fromhex(source["reply_secret_key"])), bytes.fromhex(
        source["mailbox_id"]
    )


def spec_verify(data: bytes, mailbox_id: bytes, public_key: bytes) -> bytes:
    """docs/FORMAT.md, "Signed reply files", read on its own: the sealed reply, or raise."""
    import nacl.bindings

    if data[:8] != b"sealrsig" or data[8] != 1:
        raise ValueError("not a signed reply file of version 1")
    signature, sealed = data[9:73], data[73:]
    signed = b"sealdrop-reply-signature-v1\x00" + mailbox_id + sealed
    nacl.bindings.crypto_sign_open(signature + signed, public_key)  # raises BadSignatureError
    return sealed


def test_the_signed_vectors_cover_every_way_a_signature_fails() -> None:
    assert SIGNED_FAILS == [
        "fail_signed_altered_after_signing",
        "fail_signed_bad_signature",
        "fail_signed_bad_version",
        "fail_signed_by_another_key",
        "fail_signed_for_another_mailbox",
        "fail_signed_unsigned",
    ]


def test_the_good_signed_vector_verifies_and_opens_to_what_it_expects() -> None:
    import json

    reply_key, mailbox = vector_source()
    signer = signing.load_signing_public_keys(SIGNED / "reply-signing.pub")
    seed = bytes.fromhex((SIGNED / "reply_signing_seed.hex").read_text().strip())
    assert SigningKey(seed).verify_key == signer[0]
    passphrase = (VECTORS / "PASSPHRASE").read_text()
    assert bytes(signing.load_signing_secret_key(SIGNED / "reply-signing.key", passphrase)) == seed
    data = (SIGNED / "good_signed_reply.reply").read_bytes()
    sealed = replies.verified_sealed_reply(data, mailbox, signer)
    assert spec_verify(data, mailbox, bytes(signer[0])) == sealed
    opened = replies.open_reply(sealed, reply_key, "x")
    expected = json.loads((SIGNED / "good_signed_reply.expected.json").read_text())
    assert (opened.message, opened.day, opened.reference) == (
        expected["message"],
        expected["day"],
        expected["reference"],
    )


@pytest.mark.parametrize("name", SIGNED_FAILS)
def test_every_failing_signed_vector_is_refused(name: str) -> None:
    _, mailbox = vector_source()
    signer = signing.load_signing_public_keys(SIGNED / "reply-signing.pub")
    data = (SIGNED / f"{name}.reply").read_bytes()
    assert (SIGNED / f"{name}.expected").read_text().startswith("ReplyNotSigned\n")
    with pytest.raises(replies.ReplyNotSigned):
        replies.verified_sealed_reply(data, mailbox, signer)
    with pytest.raises((ValueError, nacl.exceptions.BadSignatureError)):
        spec_verify(data, mailbox, bytes(signer[0]))
