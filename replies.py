"""Reply files: a reviewer's answer, sealed offline to one source's reply key.

A reply file has the spool file's layout (crypto.py) under its own magic,
``sealrply``, version 1, sealed to the source's X25519 reply public key; its
payload is a version 1 payload (records/) whose RECEIPT is the reply's
reference number and which holds a message and no attachment. It is padded like
a submission, so short replies all have the same size. It is named
``<mailbox id>-<32 random hex digits>.reply``, so the server can find a source's
replies without being able to read them. docs/FORMAT.md ("Reply files") is normative.

A reply is shown only if it is *signed*: the file is ``sealrsig``, a version byte,
an Ed25519 signature by one of the reviewer's reply-signing keys (signing.py), then
the sealed reply. The signature covers a label, the mailbox id the reply is filed
under and every byte of the sealed reply, so the server checks it before it decrypts
anything, and a reply cannot be re-filed under another mailbox or re-signed by
another key. docs/FORMAT.md ("Signed reply files") is normative.

Pure: bytes and keys in and out.
"""

from __future__ import annotations

import io
import re
import secrets
from dataclasses import dataclass

from nacl.public import PrivateKey, PublicKey
from nacl.signing import SigningKey, VerifyKey

from .crypto import PayloadSealer, open_payload
from .records.events import AttachmentStart, Day, MessageText, PayloadEnd, Receipt
from .records.layout import MalformedPayload
from .records.reader import read_payload
from .records.source import MAILBOX_ID_BYTES, mailbox_id_for
from .records.writer import PayloadWriter
from .signing import verify

REPLY_MAGIC = b"sealrply"
REPLY_VERSION = 1
REPLY_SUFFIX = ".reply"
# The server decrypts a reply in memory for each visit: keep one far below that cost.
MAX_REPLY_CHARS = 50_000
MAX_REPLY_FILE_BYTES = 1024 * 1024
_NAME = re.compile(r"([0-9a-f]{32})-([0-9a-f]{32})\.reply")
SIGNED_MAGIC = b"sealrsig"
SIGNED_VERSION = 1
SIGNATURE_BYTES = 64
SIGNED_PREFIX_BYTES = len(SIGNED_MAGIC) + 1 + SIGNATURE_BYTES
# What the signature covers starts with this label, so that a reply signature can never
# be taken for any other signature the key might one day make.
_SIGNATURE_LABEL = b"sealdrop-reply-signature-v1\x00"


class ReplyNotSigned(Exception):
    """A reply file is not signed, or not by any reply-signing key the server knows
    (forged, re-signed by another key, altered, filed under another mailbox, or written
    before replies were signed). It is never shown; the operator's copy is where to look."""


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


def sign_reply(sealed: bytes, mailbox_id: bytes, key: SigningKey) -> bytes:
    """The signed reply file around `sealed` (a `seal_reply` result) for `mailbox_id`."""
    signature = key.sign(_signed_message(mailbox_id, sealed)).signature
    return SIGNED_MAGIC + bytes([SIGNED_VERSION]) + signature + sealed


def verified_sealed_reply(data: bytes, mailbox_id: bytes, keys: tuple[VerifyKey, ...]) -> bytes:
    """The sealed reply inside signed reply file `data` if one of `keys` signed it for
    `mailbox_id`; else ReplyNotSigned."""
    if len(data) < SIGNED_PREFIX_BYTES or not data.startswith(SIGNED_MAGIC):
        raise ReplyNotSigned("the reply file is not signed")
    if data[len(SIGNED_MAGIC)] != SIGNED_VERSION:
        raise ReplyNotSigned("the reply file's signature format is unknown")
    signature = data[len(SIGNED_MAGIC) + 1 : SIGNED_PREFIX_BYTES]
    sealed = data[SIGNED_PREFIX_BYTES:]
    message = _signed_message(mailbox_id, sealed)
    if not any(verify(key, message, signature) for key in keys):
        raise ReplyNotSigned("no configured reply-signing key signed this reply")
    return sealed


def _signed_message(mailbox_id: bytes, sealed: bytes) -> bytes:
    if len(mailbox_id) != MAILBOX_ID_BYTES:
        raise ValueError("a mailbox id is 16 bytes")
    return _SIGNATURE_LABEL + mailbox_id + sealed


def belongs_to(mailbox_hex: str, reply_public_key: PublicKey) -> bool:
    return mailbox_id_for(bytes(reply_public_key)).hex() == mailbox_hex
