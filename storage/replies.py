"""The server's replies folder: reply files the operator copied in, found by mailbox id.

The folder is read afresh on every request, so a reply copied in is shown at the
next visit without a restart. A reply is read whole into memory (it is small by
construction), decrypted with the reply key derived from the codename the source
just typed, and never written anywhere in plaintext. Deleting a reply unlinks its
file. Nothing else in the code touches this folder.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nacl.public import PrivateKey
from nacl.signing import VerifyKey

from ..crypto import SpoolFileError
from ..private_folder import folder_problem
from ..replies import (
    MAX_REPLY_FILE_BYTES,
    Reply,
    ReplyNotSigned,
    open_reply,
    parse_reply_name,
    verified_sealed_reply,
)
from .spool import midnight_utc, utc_day


class RepliesError(Exception):
    """Root of the replies folder's failures; the message is for the operator."""


class RepliesFolderUnusable(RepliesError):
    """The replies folder breaks the private-folder rule (`private_folder`): missing, not
    a real folder, open to others, not the service's, or not usable by it. Raised by
    `ReplyBox.check` at start-up."""


class ReplyBox:
    """The replies folder. Every file name it uses comes from `parse_reply_name`."""

    def __init__(self, directory: Path, signers: tuple[VerifyKey, ...] = ()) -> None:
        self.directory = Path(directory)
        # The reviewer's reply-signing public keys: with none, no reply is ever shown.
        self.signers = signers

    def check(self) -> None:
        problem = folder_problem(self.directory, "replies folder")
        if problem is not None:
            raise RepliesFolderUnusable(str(problem))

    def names_for(self, mailbox: str) -> list[str]:
        """The reply file names filed under `mailbox` (32 hex digits), sorted."""
        try:
            with os.scandir(self.directory) as scan:
                names = [entry.name for entry in scan]
        except OSError as err:
            raise RepliesError(
                f"cannot list the replies folder {self.directory} ({err.strerror}); check "
                "its owner and mode (700)"
            ) from None
        return sorted(n for n in names if (p := parse_reply_name(n)) and p[0] == mailbox)

    def replies_for(self, mailbox: str, reply_key: PrivateKey) -> list[Reply]:
        """Every reply to `mailbox` that opens with `reply_key`, oldest day first.

        A file not signed by one of `signers`, or that does not open (damaged, or planted
        by someone who knows the mailbox id or even the reply key), is not shown: the
        source cannot do anything about it, and the operator's copy is where to look.
        """
        shown = []
        for name in self.names_for(mailbox):
            data = self._read(name)
            if data is None:
                continue
            parsed = parse_reply_name(name)
            assert parsed is not None
            try:
                sealed = verified_sealed_reply(data, bytes.fromhex(mailbox), self.signers)
                shown.append(open_reply(sealed, reply_key, parsed[1]))
            except (ReplyNotSigned, SpoolFileError):
                continue
        return sorted(shown, key=lambda reply: (reply.day, reply.reference, reply.reply_id))

    def delete(self, mailbox: str, reply_id: str) -> bool:
        """Remove one reply to `mailbox`; False if there was none by that id."""
        name = f"{mailbox}-{reply_id}.reply"
        parsed = parse_reply_name(name)
        if parsed is None or parsed != (mailbox, reply_id):
            return False
        try:
            os.unlink(self.directory / name)
        except FileNotFoundError:
            return False
        except OSError as err:
            raise RepliesError(
                f"cannot remove a reply from {self.directory} ({err.strerror}); check its "
                "owner and mode (700)"
            ) from None
        # The folder's times would otherwise say when a source last came back.
        midnight = midnight_utc(utc_day())
        try:
            os.utime(self.directory, (midnight, midnight))
        except OSError:
            pass  # a precaution only; the reply is gone either way
        return True

    def _read(self, name: str) -> bytes | None:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        path = self.directory / name
        try:
            try:
                # Reading would otherwise stamp the file's access time with the visit.
                fd = os.open(path, flags | os.O_NOATIME)
            except PermissionError:
                fd = os.open(path, flags)  # O_NOATIME needs the file's owner
        except OSError:
            return None  # removed meanwhile (deleted in another tab), or a planted link
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_REPLY_FILE_BYTES:
                return None
            return os.read(fd, MAX_REPLY_FILE_BYTES + 1)[:MAX_REPLY_FILE_BYTES]
        finally:
            os.close(fd)
