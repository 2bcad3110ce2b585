"""Reply files: a reviewer's answer, sealed offline to one source's reply key.

A reply file has the spool file's layout (crypto.py) under its own magic,
``sealrply``, version 1, sealed to the source's X25519 reply public key; its
payload is a version 1 payload (records/) whose RECEIPT is the reply's
reference number and which holds a message and no attachment. It is padded like
a submission, so short replies all have the same size. It is named
``<mailbox id>-<32 random hex digits>.reply``, so the server can find a source's
replies without being able to read them. docs/FORMAT.md ("Reply files") is normative.

Pure: bytes and keys in and out.
"""

from __future__ import annotations

import io
import re
import secrets
from dataclasses import dataclass

from nacl.public import PrivateKey, PublicKey

from .crypto import PayloadSealer, open_payload
from .records.events import AttachmentStart, Day, MessageText, PayloadEnd, Receipt
from .records.layout import MalformedPayload
from .records.reader import read_payload
from .records.source import mailbox_id_for
from .records.writer import PayloadWriter

REPLY_MAGIC = b"sealrply"
REPLY_VERSION = 1
REPLY_SUFFIX = ".reply"
# The server decrypts a reply in memory for each visit: keep one far below that cost.
MAX_REPLY_CHARS = 50_000
MAX_REPLY_FILE_BYTES = 1024 * 1024
_NAME = re.compile(r"([0-9a-f]{32})-([0-9a-f]{32})\.reply")


@dataclass(frozen=True)
class Reply:
    """An opened reply: what the source is shown."""

    reply_id: str  # the random part of the file name
    day: str
    reference: str
    message: str


def reply_file_name(mailbox_id: bytes) -> str:
    """A new reply file's name: the mailbox id, then 128 random bits."""
    return f"{mailbox_id.hex()}-{secrets.token_hex(16)}{REPLY_SUFFIX}"


def parse_reply_name(name: str) -> tuple[str, str] | None:
    """(mailbox id hex, reply id) of a reply file name, or None if it is not one."""
    match = _NAME.fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


def new_reference() -> str:
    """A number the source can quote back, in the receipt's style: ``0412-9931``."""
    digits = f"{secrets.randbelow(10**8):08d}"
    return f"{digits[:4]}-{digits[4:]}"


def seal_reply(message: str, reply_public_key: PublicKey, day: str, reference: str) -> bytes:
    """The bytes of a reply file holding `message`, sealed to the source's reply key."""
    if not message.strip():
        raise ValueError("the reply is empty")
    if len(message) > MAX_REPLY_CHARS:
        raise ValueError(f"the reply is longer than {MAX_REPLY_CHARS} characters")
    sealer = PayloadSealer(reply_public_key, version=REPLY_VERSION, magic=REPLY_MAGIC)
    out = bytearray(sealer.header)
    writer = PayloadWriter(lambda data: out.extend(sealer.update(data)), day, reference)
    writer.message(message)
    writer.close()
    out += sealer.finalize()
    return bytes(out)


def open_reply(data: bytes, reply_key: PrivateKey, reply_id: str) -> Reply:
    """Decrypt and check a whole reply file; raise a crypto.SpoolFileError if it fails."""
    chunks = open_payload(
        io.BytesIO(data), reply_key, magic=REPLY_MAGIC, versions=frozenset({REPLY_VERSION})
    )
    day = reference = ""
    parts: list[str] = []
    for event in read_payload(chunks, REPLY_VERSION):
        if isinstance(event, Day):
            day = event.day
        elif isinstance(event, Receipt):
            reference = event.receipt
        elif isinstance(event, MessageText):
            parts.append(event.text)
        elif isinstance(event, AttachmentStart):
            raise MalformedPayload("a reply holds an attachment")
        elif isinstance(event, PayloadEnd):
            return Reply(reply_id, day, reference, "".join(parts))
    raise MalformedPayload("the reply ended without its closing records")


def belongs_to(mailbox_hex: str, reply_public_key: PublicKey) -> bool:
    return mailbox_id_for(bytes(reply_public_key)).hex() == mailbox_hex
