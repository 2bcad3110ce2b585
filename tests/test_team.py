"""A team opening one spool: each reviewer with their own key, none disturbing the others,
and any of them able to answer the source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

from sealdrop import cli, codename, keys, records, signing
from sealdrop.reviewer import sources
from sealdrop.storage.replies import ReplyBox
from sealdrop.storage.spool import Spool

PASSPHRASE = "a team passphrase"
SALT = bytes(range(16))
TEAM = ("alice", "bob", "backup")


def test_every_reviewer_opens_the_same_submission_and_can_reply_to_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALDROP_PASSPHRASE", PASSPHRASE)
    offline = tmp_path / "offline"
    for name in TEAM:
        argv = ["keygen", "--out", str(offline), "--name", name, "--kdf-cost", "min"]
        assert cli.main(argv) == 0
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    spool = Spool(spool_dir, [keys.load_public_key(offline / f"{name}.pub") for name in TEAM])
    source = codename.derive(codename.new_codename(), SALT, codename.TEST_COST)
    identity = records.SourceIdentity.for_key(records.FIRST_CONTACT, bytes(source.reply_public_key))
    with spool.begin(identity) as submission:
        submission.add_message("The permits are forged.")
        submission.commit()
    spool_before = {p.name: p.read_bytes() for p in spool_dir.iterdir()}

    box = tmp_path / "replies"
    box.mkdir(mode=0o700)
    signers: list[VerifyKey] = []
    for name in ("alice", "bob"):
        out = tmp_path / f"opened-by-{name}"
        argv = ["open", str(spool_dir), "--key", str(offline / f"{name}.key"), "--out", str(out)]
        assert cli.main(argv) == 0
        assert {p.name: p.read_bytes() for p in spool_dir.iterdir()} == spool_before
        [folder] = [p for p in out.iterdir() if p.name.startswith(sources.SOURCE_PREFIX)]
        info = sources.read_info(folder)
        [submission_dir] = info.submissions
        assert (folder / submission_dir / "message.txt").read_text() == "The permits are forged."

        draft = tmp_path / f"{name}.txt"
        draft.write_text(f"Thank you, from {name}.\n", encoding="utf-8")
        outbox = tmp_path / f"outbox-{name}"
        signing_pub, signing_key = signing.signing_file_paths(offline, name)
        reply = ["reply", str(folder), "--out", str(outbox), "--message-file", str(draft)]
        assert cli.main([*reply, "--signing-key", str(signing_key)]) == 0
        for written in outbox.iterdir():
            os.link(written, box / written.name)
        signers += signing.load_signing_public_keys(signing_pub)

    shown = ReplyBox(box, tuple(signers)).replies_for(source.mailbox, source.reply_key)
    assert sorted(r.message for r in shown) == [
        "Thank you, from alice.\n",
        "Thank you, from bob.\n",
    ]
