"""Reply files and the replies folder; `sealdrop open` grouping by source; `sealdrop reply`."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from sealdrop import cli, codename, crypto, keys, records, replies
from sealdrop.reviewer import sources
from sealdrop.storage.replies import RepliesFolderUnusable, ReplyBox
from sealdrop.storage.spool import Spool

from .conftest import SIGNING_PASSPHRASE, signed_reply

PASSPHRASE = "reply tests passphrase"
SALT = bytes(16)


def source_keys() -> codename.SourceKeys:
    return codename.derive(codename.new_codename(), SALT, codename.TEST_COST)


def test_a_reply_opens_only_with_the_sources_key() -> None:
    key = source_keys()
    data = replies.seal_reply(
        "Which port? Ñandú 象", key.reply_public_key, "2026-12-01", "0001-0002"
    )
    reply = replies.open_reply(data, key.reply_key, "ab" * 16)
    assert (reply.message, reply.day, reply.reference) == (
        "Which port? Ñandú 象",
        "2026-12-01",
        "0001-0002",
    )
    with pytest.raises(crypto.WrongKey):
        replies.open_reply(data, source_keys().reply_key, "ab" * 16)
    # Padded like a submission: a short reply is the 16 KiB floor plus the sealing.
    assert len(data) == crypto.sealed_size(records.MIN_PADDED_PAYLOAD)


def test_a_reply_is_not_a_spool_file_and_a_spool_file_is_not_a_reply() -> None:
    key = source_keys()
    data = replies.seal_reply("hello", key.reply_public_key, "2026-12-01", "0001-0002")
    with pytest.raises(crypto.NotASealdropFile):
        list(crypto.open_payload(io.BytesIO(data), key.reply_key))
    sealer = crypto.PayloadSealer(key.reply_public_key)
    out = bytearray(sealer.header)
    writer = records.PayloadWriter(lambda d: out.extend(sealer.update(d)), "2026-12-01", "1")
    writer.message("a submission, not a reply")
    writer.close()
    out += sealer.finalize()
    with pytest.raises(crypto.NotASealdropFile):
        replies.open_reply(bytes(out), key.reply_key, "ab" * 16)


def test_a_reply_with_an_attachment_is_refused() -> None:
    key = source_keys()
    sealer = crypto.PayloadSealer(key.reply_public_key, magic=replies.REPLY_MAGIC)
    out = bytearray(sealer.header)
    writer = records.PayloadWriter(lambda d: out.extend(sealer.update(d)), "2026-12-01", "1")
    writer.begin_attachment("x.exe", "application/octet-stream")
    writer.attachment_data(b"MZ")
    writer.end_attachment()
    writer.close()
    out += sealer.finalize()
    with pytest.raises(records.MalformedPayload, match="attachment"):
        replies.open_reply(bytes(out), key.reply_key, "ab" * 16)


SIGNER = SigningKey.generate()


@pytest.fixture
def box(tmp_path: Path) -> ReplyBox:
    folder = tmp_path / "replies"
    folder.mkdir(mode=0o700)
    box = ReplyBox(folder, (SIGNER.verify_key,))
    box.check()
    return box


def put(box: ReplyBox, key: codename.SourceKeys, text: str, day: str = "2026-12-01") -> str:
    name = replies.reply_file_name(key.mailbox_id)
    data = signed_reply(text, key.reply_public_key, key.mailbox_id, SIGNER, day)
    (box.directory / name).write_bytes(data)
    return name


def test_the_box_shows_a_source_only_its_own_replies(box: ReplyBox) -> None:
    mine, other = source_keys(), source_keys()
    put(box, mine, "second", "2026-12-02")
    put(box, mine, "first", "2026-12-01")
    put(box, other, "not yours")
    (box.directory / "notes.txt").write_text("operator's file")
    shown = box.replies_for(mine.mailbox, mine.reply_key)
    assert [r.message for r in shown] == ["first", "second"]
    assert [r.message for r in box.replies_for(other.mailbox, other.reply_key)] == ["not yours"]
    # A valid codename with no replies sees exactly what a wrong one sees: nothing.
    nobody = source_keys()
    assert box.replies_for(nobody.mailbox, nobody.reply_key) == []


def test_a_reply_planted_under_a_known_mailbox_id_is_not_shown(box: ReplyBox) -> None:
    mine = source_keys()
    put(box, mine, "real")
    forged = signed_reply("forged", source_keys().reply_public_key, mine.mailbox_id, SIGNER)
    (box.directory / replies.reply_file_name(mine.mailbox_id)).write_bytes(forged)
    (box.directory / replies.reply_file_name(mine.mailbox_id)).write_bytes(b"garbage")
    link = box.directory / replies.reply_file_name(mine.mailbox_id)
    link.symlink_to(box.directory / sorted(os.listdir(box.directory))[0])
    huge = box.directory / replies.reply_file_name(mine.mailbox_id)
    huge.write_bytes(bytes(replies.MAX_REPLY_FILE_BYTES + 1))
    assert [r.message for r in box.replies_for(mine.mailbox, mine.reply_key)] == ["real"]


def test_deleting_a_reply_unlinks_only_that_file(box: ReplyBox) -> None:
    mine, other = source_keys(), source_keys()
    keep = put(box, mine, "keep")
    gone = put(box, mine, "delete me")
    theirs = put(box, other, "theirs")
    gone_id = gone.split("-")[1].removesuffix(".reply")
    theirs_id = theirs.split("-")[1].removesuffix(".reply")
    assert not box.delete(mine.mailbox, theirs_id)  # another mailbox's reply id
    assert not box.delete(mine.mailbox, "../" + gone_id)
    assert box.delete(mine.mailbox, gone_id)
    assert not box.delete(mine.mailbox, gone_id)
    assert [r.message for r in box.replies_for(mine.mailbox, mine.reply_key)] == ["keep"]
    # Unlinked by the next sweep, not during the visit (its freed inode would date it).
    assert box.remove_deleted() == 1
    assert sorted(os.listdir(box.directory)) == sorted([keep, theirs])


def test_an_unusable_replies_folder_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(RepliesFolderUnusable, match="install -d -m 700"):
        ReplyBox(tmp_path / "missing").check()
    open_folder = tmp_path / "open"
    open_folder.mkdir(mode=0o755)
    open_folder.chmod(0o755)
    with pytest.raises(RepliesFolderUnusable, match="chmod 700"):
        ReplyBox(open_folder).check()


# --- the reviewer's side ------------------------------------------------------------------


def submit(spool: Spool, text: str, source: records.SourceIdentity | None) -> None:
    with spool.begin(source) as submission:
        submission.add_message(text)
        submission.commit()


def test_open_files_a_sources_submissions_together_and_reply_reaches_them(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    reply_signer: SigningKey,
    reply_signing_key_file: Path,
) -> None:
    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    _, secret_path = keys.write_key_pair(key_dir, PASSPHRASE, keys.KdfCost.MIN)
    reviewer = keys.load_secret_key(secret_path, PASSPHRASE)
    monkeypatch.setenv("SEALDROP_PASSPHRASE", PASSPHRASE)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    spool = Spool(spool_dir, reviewer.public_key)
    alice, bob = source_keys(), source_keys()
    first = records.SourceIdentity.for_key(records.FIRST_CONTACT, bytes(alice.reply_public_key))
    again = records.SourceIdentity.for_key(records.FOLLOW_UP, bytes(alice.reply_public_key))
    submit(spool, "alice first", first)
    submit(spool, "bob first", records.SourceIdentity.for_key(1, bytes(bob.reply_public_key)))
    submit(spool, "no codename", None)
    out = tmp_path / "out"
    assert cli.main(["open", str(spool_dir), "--key", str(secret_path), "--out", str(out)]) == 0
    submit(spool, "alice again", again)
    assert cli.main(["open", str(spool_dir), "--key", str(secret_path), "--out", str(out)]) == 0
    summary = capsys.readouterr().out

    folders = sorted(p for p in out.iterdir() if p.name.startswith(sources.SOURCE_PREFIX))
    assert len(folders) == 2
    loose = [p for p in out.iterdir() if p.is_dir() and p.name[:4].isdigit()]
    assert [(p / "message.txt").read_text() for p in loose] == ["no codename"]
    by_text = {}
    for folder in folders:
        info = sources.read_info(folder)
        texts = [(folder / name / "message.txt").read_text() for name in info.submissions]
        by_text[texts[0]] = (folder, info, texts)
    alice_folder, alice_info, alice_texts = by_text["alice first"]
    assert alice_texts == ["alice first", "alice again"]  # the first contact first
    assert alice_info.reply_public_key == bytes(alice.reply_public_key)
    assert alice_info.mailbox_id == alice.mailbox_id
    assert alice_folder.name == sources.SOURCE_PREFIX + sources.friendly_name(
        bytes(alice.reply_public_key)
    )
    manifest = json.loads((alice_folder / alice_info.submissions[1] / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "follow-up"
    assert f"Source {alice_folder.name}: 2 submission(s)" in summary

    message = tmp_path / "reply.txt"
    message.write_text("Thank you. Which port?\n", encoding="utf-8")
    monkeypatch.setenv("SEALDROP_PASSPHRASE", SIGNING_PASSPHRASE)
    outbox = tmp_path / "outbox"
    assert (
        cli.main(
            ["reply", str(alice_folder), "--out", str(outbox), "--message-file", str(message)]
            + ["--signing-key", str(reply_signing_key_file)]
        )
        == 0
    )
    (written,) = outbox.iterdir()
    assert written.name.startswith(alice.mailbox + "-") and written.name.endswith(".reply")
    box_dir = tmp_path / "replies"
    box_dir.mkdir(mode=0o700)
    (box_dir / written.name).write_bytes(written.read_bytes())
    signers = (reply_signer.verify_key,)
    shown = ReplyBox(box_dir, signers).replies_for(alice.mailbox, alice.reply_key)
    assert [r.message for r in shown] == ["Thank you. Which port?\n"]
    assert ReplyBox(box_dir, signers).replies_for(bob.mailbox, bob.reply_key) == []
    # Only the reviewer's signing key makes it shown.
    assert ReplyBox(box_dir).replies_for(alice.mailbox, alice.reply_key) == []


def test_reply_refuses_an_empty_message_and_a_changed_source_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    reply_signing_key_file: Path,
) -> None:
    monkeypatch.setenv("SEALDROP_PASSPHRASE", SIGNING_PASSPHRASE)
    alice = source_keys()
    ident = records.SourceIdentity.for_key(records.FIRST_CONTACT, bytes(alice.reply_public_key))
    folder = sources.folder_for(tmp_path, ident)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    outbox = tmp_path / "outbox"
    argv = ["reply", str(folder), "--out", str(outbox), "--message-file", str(empty)]
    argv += ["--signing-key", str(reply_signing_key_file)]
    assert cli.main(argv) == 2
    assert "empty" in capsys.readouterr().err
    data = json.loads((folder / sources.SOURCE_FILE).read_text())
    data["mailbox_id"] = "00" * 16
    (folder / sources.SOURCE_FILE).write_text(json.dumps(data))
    empty.write_text("hello")
    assert cli.main(argv) == 2
    assert "changed" in capsys.readouterr().err
    assert not outbox.exists() or not list(outbox.iterdir())


def test_friendly_names_are_stable_and_distinct() -> None:
    first = bytes(PrivateKey.generate().public_key)
    second = bytes(PrivateKey.generate().public_key)
    assert sources.friendly_name(first) == sources.friendly_name(first)
    assert sources.friendly_name(first) != sources.friendly_name(second)
    assert len(sources.friendly_name(first).split("-")) >= 3
