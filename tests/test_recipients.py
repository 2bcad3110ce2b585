"""The reviewer keys the service seals to (recipients.py): one .pub file or a folder of them,
and a service that refuses to start on a secret key, a duplicate, a stray file or a 17th key."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from sealdrop import crypto
from sealdrop.app import StartupRefused, create_app
from sealdrop.keys import IsSecretKey, KdfCost, KeyFileError, encode_public_key, encode_secret_key
from sealdrop.recipients import RecipientsRefused, load_recipients
from sealdrop.settings import Settings
from sealdrop.tests.conftest import Multipart, open_submission


def write_pub(path: Path, key: PrivateKey) -> Path:
    path.write_text(encode_public_key(key.public_key) + "\n", encoding="ascii")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "reviewers"
    path.mkdir()
    return path


def test_a_single_file_is_one_key_labelled_by_its_name(tmp_path: Path) -> None:
    key = PrivateKey.generate()
    [reviewer] = load_recipients(write_pub(tmp_path / "reviewer.pub", key))
    assert (reviewer.label, reviewer.key) == ("reviewer", key.public_key)
    assert reviewer.fingerprint == encode_public_key(key.public_key)


def test_a_folder_gives_every_pub_file_in_name_order(folder: Path) -> None:
    keys = {name: PrivateKey.generate() for name in ("team-b", "backup", "team-a")}
    for name, key in keys.items():
        write_pub(folder / f"{name}.pub", key)
    got = load_recipients(folder)
    assert [r.label for r in got] == ["backup", "team-a", "team-b"]
    assert [r.key for r in got] == [keys[n].public_key for n in ("backup", "team-a", "team-b")]


@pytest.mark.parametrize("name", ["reviewer.key", "notes.txt", "alice.pub.old", ".alice.pub"])
def test_a_stray_file_in_the_folder_is_refused_by_name(folder: Path, name: str) -> None:
    write_pub(folder / "alice.pub", PrivateKey.generate())
    write_pub(folder / name, PrivateKey.generate())
    with pytest.raises(RecipientsRefused, match="is not a public key file") as raised:
        load_recipients(folder)
    assert str(folder / name) in str(raised.value)


def test_a_subfolder_is_refused(folder: Path) -> None:
    write_pub(folder / "alice.pub", PrivateKey.generate())
    (folder / "old").mkdir()
    with pytest.raises(RecipientsRefused, match="old is in the reviewer key folder"):
        load_recipients(folder)


@pytest.mark.parametrize("name", ["bob.pub", "bob.key", "README"])
def test_a_secret_key_under_any_name_is_refused_as_such(
    folder: Path, name: str, secret_key_text: str
) -> None:
    write_pub(folder / "alice.pub", PrivateKey.generate())
    (folder / name).write_text(secret_key_text)
    with pytest.raises(IsSecretKey) as raised:
        load_recipients(folder)
    assert str(folder / name) in str(raised.value)


def test_the_same_key_twice_is_refused_naming_both_files(folder: Path) -> None:
    key = PrivateKey.generate()
    write_pub(folder / "alice.pub", key)
    write_pub(folder / "alice-copy.pub", key)
    with pytest.raises(RecipientsRefused, match="hold the same public key") as raised:
        load_recipients(folder)
    assert "alice-copy.pub and " in str(raised.value) and "alice.pub hold" in str(raised.value)


def test_sixteen_keys_at_most(folder: Path) -> None:
    for index in range(crypto.MAX_RECIPIENTS):
        write_pub(folder / f"k{index:02}.pub", PrivateKey.generate())
    assert len(load_recipients(folder)) == crypto.MAX_RECIPIENTS
    write_pub(folder / "k16.pub", PrivateKey.generate())
    with pytest.raises(RecipientsRefused, match="holds 17 public keys.*at most 16; remove 1"):
        load_recipients(folder)


def test_an_empty_folder_or_a_bad_key_is_refused(folder: Path) -> None:
    with pytest.raises(RecipientsRefused, match="holds no \\*.pub file"):
        load_recipients(folder)
    (folder / "alice.pub").write_text("sealdrop-pub1notakey\n")
    with pytest.raises(KeyFileError, match="alice.pub"):
        load_recipients(folder)


def test_the_service_seals_every_submission_to_every_key(
    folder: Path, settings: Settings, submission_body: Callable[..., Multipart]
) -> None:
    keys = [PrivateKey.generate() for _ in range(3)]
    for index, key in enumerate(keys):
        write_pub(folder / f"reviewer-{index}.pub", key)
    app = create_app(dataclasses.replace(settings, public_key_file=folder))
    body = submission_body("to the whole team", ("notes.txt", b"evidence"))
    response = app.test_client().post("/submit", data=body.body, content_type=body.content_type)
    assert response.status_code == 200
    [sealed] = settings.spool_dir.glob("*.sealed")
    with sealed.open("rb") as source:
        assert crypto.read_recipient_count(source) == 3
    for key in keys:
        opened = open_submission(sealed, key)
        assert (opened.message, opened.files) == (
            "to the whole team",
            [("notes.txt", "application/octet-stream", b"evidence")],
        )


def test_the_service_refuses_to_start_with_a_secret_key_among_the_public_ones(
    folder: Path, settings: Settings, secret_key_text: str
) -> None:
    write_pub(folder / "alice.pub", PrivateKey.generate())
    (folder / "bob.pub").write_text(secret_key_text)
    with pytest.raises(StartupRefused) as raised:
        create_app(dataclasses.replace(settings, public_key_file=folder))
    message = str(raised.value)
    assert "SECRET" in message.upper() and str(folder / "bob.pub") in message
    assert "SEALDROP_PUBLIC_KEY_FILE" in message
    assert not list(settings.spool_dir.iterdir())


@pytest.fixture
def secret_key_text() -> str:
    return encode_secret_key(PrivateKey.generate(), "a passphrase", KdfCost.MIN)
