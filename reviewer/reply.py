"""`sealdrop reply SOURCE_DIR --out DIR`: write a reply file for one source, offline.

The reply is sealed to the reply public key in SOURCE_DIR/source.json (written by
`sealdrop open`), so only whoever holds the source's codename can read it, and
signed with the reviewer's reply-signing key (``--signing-key``, opened with the
passphrase), so that the server shows it as the reviewer's. The message comes
from ``--message-file``, from standard input when it is not a terminal, or else
from $EDITOR. The file
is named ``<mailbox id>-<random>.reply``; the operator copies it into the
server's replies folder.

Exit status: 0 written, 2 nothing written (the message or a folder is unusable).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from nacl.public import PublicKey
from nacl.signing import SigningKey

from .. import durable
from ..keys import KeyFileError
from ..languages import describe_tag
from ..replies import MAX_REPLY_CHARS, new_reference, reply_file_name, seal_reply, sign_reply
from ..signing import load_signing_secret_key
from ..storage.spool import utc_day
from .passphrase import PassphraseError, read_passphrase
from .sources import SourceFolderError, language_to_answer_in, read_info
from .unpack import FILE_MODE

_EDITOR_TEMPLATE = (
    "\n# Write the reply to the source above this line. Lines starting with '#' are\n"
    "# left out. Do not write anything that would identify the source: the reply is\n"
    "# stored on the server, sealed, until the source reads and deletes it.\n"
)


class ReplyRefused(Exception):
    """The reply cannot be written: no message, too long, unreadable input or folder."""


def run_reply(args: argparse.Namespace) -> int:
    try:
        info = read_info(args.source)
        # Said before the message is written, on stderr so a piped reply stays clean.
        advice = _language_advice(language_to_answer_in(args.source))
        print(advice, file=sys.stderr)
        message = read_message(args.message_file, advice)
        signer = load_signing_secret_key(args.signing_key, read_passphrase(confirm=False))
        key = PublicKey(info.reply_public_key)
        path = write_reply(args.out, info.mailbox_id, key, message, signer)
    except (SourceFolderError, ReplyRefused, KeyFileError, PassphraseError) as err:
        print(f"sealdrop reply: {err}\nNo reply was written.", file=sys.stderr)
        return 2
    print(
        f"Wrote {path}\nCopy it into the server's replies folder (setting replies_dir); the "
        f"source sees it the next time they enter their codename. Source: {info.name}."
    )
    return 0


def _language_advice(language: str | None) -> str:
    if language is None:
        return (
            "The source's language is not recorded (submissions from before sealdrop "
            "recorded it): answer in the language of their message."
        )
    return (
        f"Answer in {describe_tag(language)}: the source last wrote through the pages in "
        "that language. Their codename is English words whatever the language."
    )


def read_message(message_file: Path | None, advice: str = "") -> str:
    if message_file is not None:
        text = _read_text(message_file)
    elif not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        text = _from_editor(advice)
    if not text.strip():
        raise ReplyRefused("the reply is empty; write a message and try again")
    if len(text) > MAX_REPLY_CHARS:
        raise ReplyRefused(
            f"the reply has {len(text)} characters, over the limit of {MAX_REPLY_CHARS}; "
            "shorten it, or split it into several replies"
        )
    return text


def write_reply(
    out: Path, mailbox_id: bytes, key: PublicKey, message: str, signer: SigningKey
) -> Path:
    data = sign_reply(seal_reply(message, key, utc_day(), new_reference()), mailbox_id, signer)
    path = out / reply_file_name(mailbox_id)
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        durable.create_new_file(path, data, FILE_MODE)
    except OSError as err:
        raise ReplyRefused(
            f"cannot write {path} ({err.strerror}); choose a folder you can write to with "
            "--out, with free space"
        ) from None
    return path


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ReplyRefused(
            f"cannot read the message file {path} ({err}); give a UTF-8 text file"
        ) from None


def _from_editor(advice: str) -> str:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "nano"
    # The draft lives in a private folder on the reviewer's offline machine only.
    with tempfile.TemporaryDirectory(prefix="sealdrop-reply-") as folder:
        draft = Path(folder) / "reply.txt"
        draft.write_text(_EDITOR_TEMPLATE + f"# {advice}\n", encoding="utf-8")
        try:
            # The reviewer's own environment: their editor needs TERM, HOME, the locale
            # (child_env.py says why every other program gets a fixed one).
            subprocess.run([*shlex.split(editor), str(draft)], check=True)
        except (OSError, subprocess.CalledProcessError) as err:
            raise ReplyRefused(
                f"the editor {editor!r} did not run ({err}); set EDITOR, or give "
                "--message-file FILE, or pipe the message in"
            ) from None
        text = _read_text(draft)
    return "".join(line for line in text.splitlines(True) if not line.startswith("#"))
