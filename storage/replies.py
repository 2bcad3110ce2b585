"""The server's replies folder: reply files the operator copied in, found by mailbox id.

The folder is read afresh on every request, so a reply copied in is shown at the
next visit without a restart. A reply is read whole into memory (it is small by
construction), decrypted with the reply key derived from the codename the source
just typed, and never written anywhere in plaintext. Deleting a reply unlinks its
file. Nothing else in the code touches this folder.

A visit must leave no time on the disk: the folder is listed and every file read
with O_NOATIME, so no access time changes. O_NOATIME needs the file's owner, and
an operator may copy replies in as root: such a file is not read at a visit (its
access time would say when its source came back) until the sweep adopts it
(`adopt_foreign`, storage/sweep.py) as a copy the service owns.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nacl.public import PrivateKey
from nacl.signing import VerifyKey

from .. import durable
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
from ..spool_names import random_name
from .spool import day_of, list_quietly, midnight_utc, utc_day

# A reply its source deleted, until the next sweep unlinks it.
DELETED_SUFFIX = ".deleted"


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
            names = list_quietly(self.directory)
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
        """Take one reply to `mailbox` away from its source; False if there was none by
        that id.

        The file is renamed to a hidden ``.deleted`` name at once (the source never sees
        it again) and unlinked by the next sweep (`remove_deleted`): a file unlinked now
        would leave the moment of the visit in its freed inode, which a seized disk
        keeps until the inode is reused.
        """
        name = f"{mailbox}-{reply_id}.reply"
        parsed = parse_reply_name(name)
        if parsed is None or parsed != (mailbox, reply_id):
            return False
        try:
            os.rename(self.directory / name, self.directory / f".{random_name()}{DELETED_SUFFIX}")
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

    def remove_deleted(self) -> int:
        """Unlink the replies sources deleted since the last sweep; return how many."""
        removed = 0
        try:
            names = list_quietly(self.directory)
        except OSError:
            return 0  # `sealdrop check` names an unreadable folder
        for name in names:
            if name.startswith(".") and name.endswith(DELETED_SUFFIX):
                try:
                    os.unlink(self.directory / name)
                except OSError:
                    continue  # tried again at the next sweep
                removed += 1
        return removed

    def adopt_foreign(self) -> int:
        """Replace every reply file the service does not own by an identical one it owns.

        Run by the sweep, at moments unrelated to any visit: reading a file copied in
        by root sets its access time once, now, instead of at its source's next visit.
        Returns how many were adopted; a file that cannot be read is left as it is
        (`sealdrop check` names it).
        """
        adopted = 0
        for name in sorted(self._all_names()):
            path = self.directory / name
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if info.st_uid == os.geteuid() or not stat.S_ISREG(info.st_mode):
                continue
            if info.st_size > MAX_REPLY_FILE_BYTES:
                continue
            try:
                data = path.read_bytes()
                copy = self.directory / f".{random_name()}.adopt"
                durable.create_new_file(copy, data)
                midnight = midnight_utc(day_of(info.st_mtime))
                os.utime(copy, (midnight, midnight))
                os.rename(copy, path)
            except OSError:
                continue
            adopted += 1
        if adopted:
            try:
                durable.fsync_directory(self.directory)
            except OSError:
                pass  # renames already made; the next sweep syncs again
        return adopted

    def _all_names(self) -> list[str]:
        try:
            return [n for n in list_quietly(self.directory) if parse_reply_name(n)]
        except OSError as err:
            raise RepliesError(
                f"cannot list the replies folder {self.directory} ({err.strerror}); check "
                "its owner and mode (700)"
            ) from None

    def _read(self, name: str) -> bytes | None:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOATIME
        try:
            # Reading without O_NOATIME would stamp the file's access time with the visit.
            fd = os.open(self.directory / name, flags)
        except OSError:
            # Removed meanwhile (deleted in another tab), a planted link, or not the
            # service's own (O_NOATIME refused): shown once the sweep has adopted it.
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_REPLY_FILE_BYTES:
                return None
            return os.read(fd, MAX_REPLY_FILE_BYTES + 1)[:MAX_REPLY_FILE_BYTES]
        finally:
            os.close(fd)
