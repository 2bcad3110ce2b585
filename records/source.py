"""The SOURCE record: a codename's reply key and the mailbox id derived from it.

Shared by the server (codename.py, web/followup.py, storage/), which writes it,
and the reviewer (reviewer/sources.py), which files submissions by it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# The SOURCE record's kinds: the submission that gave the codename, or one sent with it.
FIRST_CONTACT = 0x01
FOLLOW_UP = 0x02
REPLY_KEY_BYTES = 32
MAILBOX_ID_BYTES = 16
SOURCE_BODY_BYTES = 1 + REPLY_KEY_BYTES + MAILBOX_ID_BYTES
_MAILBOX_PERSON = b"sealdrop-mbox1"


def mailbox_id_for(reply_public_key: bytes) -> bytes:
    """The mailbox id that belongs to a reply public key (32 bytes): BLAKE2b-128.

    Derived from the key, so the reviewer can check that a SOURCE record's two
    values belong together, and so that someone who learns a mailbox id (it names
    reply files on the server) cannot learn the key, nor write a SOURCE record
    that the reviewer would file with that source.
    """
    if len(reply_public_key) != REPLY_KEY_BYTES:
        raise ValueError("a reply public key is 32 bytes")
    return hashlib.blake2b(
        reply_public_key, digest_size=MAILBOX_ID_BYTES, person=_MAILBOX_PERSON
    ).digest()


@dataclass(frozen=True)
class SourceIdentity:
    """A version 2 submission's SOURCE record: who to reply to, and how to file it.

    `kind` is FIRST_CONTACT or FOLLOW_UP. Submissions with the same reply key come
    from whoever holds the same codename.
    """

    kind: int
    reply_public_key: bytes
    mailbox_id: bytes

    @classmethod
    def for_key(cls, kind: int, reply_public_key: bytes) -> SourceIdentity:
        return cls(kind, reply_public_key, mailbox_id_for(reply_public_key))

    def encode(self) -> bytes:
        return bytes([self.kind]) + self.reply_public_key + self.mailbox_id

    def check(self) -> None:
        """ValueError naming the rule this identity breaks, if any."""
        if self.kind not in (FIRST_CONTACT, FOLLOW_UP):
            raise ValueError("the SOURCE kind must be FIRST_CONTACT or FOLLOW_UP")
        if len(self.reply_public_key) != REPLY_KEY_BYTES:
            raise ValueError("the reply public key must be 32 bytes")
        if self.mailbox_id != mailbox_id_for(self.reply_public_key):
            raise ValueError("the mailbox id does not belong to the reply public key")
