"""Regenerate the spool format test vectors in tests/vectors/.

Run from the repository root::

    .venv/bin/python tests/make_vectors.py              # every vector
    .venv/bin/python tests/make_vectors.py --only v2    # version 2 and reply files only
    .venv/bin/python tests/make_vectors.py --only v1    # version 1 only
    .venv/bin/python tests/make_vectors.py --only cut   # cut uploads (CUT record) only
    .venv/bin/python tests/make_vectors.py --only v3    # version 3 (several keys) only
    .venv/bin/python tests/make_vectors.py --only keys  # key files (tests/vectors/keys/)
    .venv/bin/python tests/make_vectors.py --only signed  # signed replies (tests/vectors/signed/)
    .venv/bin/python tests/make_vectors.py --only lang  # the LANGUAGE record only

The version 1 set (`good_*`, `fail_*`) is quoted byte for byte by docs/FORMAT.md's
worked example: `--only v2` writes the version 2 set (`*_v2_*.sealed`: submissions
with a SOURCE record) and the reply files (`*_reply_*.reply`, magic `sealrply`)
without touching a version 1 file; `--only cut` writes the cut uploads
(`*_cut_*.sealed`: payloads closed by a CUT record) and touches nothing else;
`--only v3` writes the version 3 set (`*_v3_*.sealed`: the file key sealed to
several reviewer keys) and nothing else; `--only lang` writes the LANGUAGE record set
(`*_lang_*.sealed`: the pages' language, record 0x81) and nothing else.

Sealed boxes and file keys are random, so each run writes different `.sealed`
bytes; everything a vector is checked against (`*.expected.json`, `*.expected`)
is deterministic, and the tests check outcomes only. The vectors are committed
once: regenerate them only on purpose, never to make a failing test pass. The
reviewer key pair in tests/vectors/ is reused when it exists, so the worked
example in docs/FORMAT.md stays valid for the key.

Good vectors are written by the real PayloadWriter and PayloadSealer; this
script also encodes the same payloads with its own minimal encoder (built from
docs/FORMAT.md alone) and stops if the two disagree by a single byte. Fail
vectors are built from good ones by the smallest change that breaks one rule.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nacl import bindings
from nacl.public import PrivateKey, PublicKey, SealedBox

from sealdrop import codename, crypto, keys, records, replies

VECTORS = Path(__file__).resolve().parent / "vectors"
# Test-only: this passphrase and the key it protects are public. Never use them.
PASSPHRASE = "sealdrop test vectors only - this key is public"
DAY = "2026-11-29"
RECEIPT = "4821-0937-5561"
# Attachments up to this size have their content in the expected JSON as base64.
INLINE_CONTENT_LIMIT = 4096
_HEADER = records.RECORD_HEADER


@dataclass(frozen=True)
class Attachment:
    name: str
    media_type: str
    content: bytes


@dataclass(frozen=True)
class Submission:
    message: str = ""
    attachments: tuple[Attachment, ...] = ()
    # (position among the top-level records after RECEIPT, record type, body)
    optional_records: tuple[tuple[int, int, bytes], ...] = field(default=())
    # Version 2: (kind, the source's reply public key) for the SOURCE record.
    source: tuple[int, bytes] | None = None
    # A reply file's RECEIPT holds its reference number instead.
    receipt: str = RECEIPT
    # An upload cut off (records.CUT_IN_*): in the message, in the last attachment
    # (which then has no ATTACHMENT_END), or after the last part.
    cut: int | None = None
    # The LANGUAGE record's tag (right after SOURCE, or RECEIPT without one).
    language: str | None = None


def filler(label: str, size: int) -> bytes:
    """Deterministic, incompressible content, so expected digests never change."""
    return hashlib.shake_256(label.encode("utf-8")).digest(size)


# --- an independent encoder, from docs/FORMAT.md -------------------------------------


def record(record_type: int, body: bytes) -> bytes:
    return _HEADER.pack(record_type, len(body)) + body


def cut_record(where: int, received: int) -> bytes:
    """CUT: where (u8) || received (u64)."""
    return record(records.CUT, where.to_bytes(1, "big") + received.to_bytes(8, "big"))


def source_body(kind: int, reply_public_key: bytes) -> bytes:
    """kind || reply_public_key || BLAKE2b-128(reply_public_key, person "sealdrop-mbox1")."""
    mailbox = hashlib.blake2b(reply_public_key, digest_size=16, person=b"sealdrop-mbox1")
    return bytes([kind]) + reply_public_key + mailbox.digest()


def top_level_records(sub: Submission) -> list[bytes]:
    """SUBMISSION, RECEIPT (and SOURCE), the body records and optional ones, (CUT,) MANIFEST."""
    body: list[bytes] = []
    if sub.message:
        body.append(record(records.MESSAGE, sub.message.encode("utf-8")))
    manifest = len(sub.attachments).to_bytes(4, "big")
    for number, attachment in enumerate(sub.attachments, 1):
        name = attachment.name.encode("utf-8")
        media = attachment.media_type.encode("ascii")
        begin = len(name).to_bytes(2, "big") + name + len(media).to_bytes(2, "big") + media
        parts = [record(records.ATTACHMENT_BEGIN, begin)]
        for start in range(0, len(attachment.content), records.MAX_RECORD_BODY):
            piece = attachment.content[start : start + records.MAX_RECORD_BODY]
            parts.append(record(records.ATTACHMENT_DATA, piece))
        if sub.cut == records.CUT_IN_ATTACHMENT and number == len(sub.attachments):
            parts.append(cut_record(records.CUT_IN_ATTACHMENT, len(attachment.content)))
        else:
            parts.append(record(records.ATTACHMENT_END, b""))
        body.append(b"".join(parts))
        manifest += len(attachment.content).to_bytes(8, "big")
        manifest += hashlib.sha256(attachment.content).digest()
    for position, record_type, optional_body in sorted(sub.optional_records, reverse=True):
        body.insert(position, record(record_type, optional_body))
    if sub.cut == records.CUT_IN_MESSAGE:
        body.append(cut_record(records.CUT_IN_MESSAGE, len(sub.message.encode("utf-8"))))
    elif sub.cut == records.CUT_BETWEEN_PARTS:
        body.append(cut_record(records.CUT_BETWEEN_PARTS, 0))
    source = [] if sub.source is None else [record(records.SOURCE, source_body(*sub.source))]
    language = [] if sub.language is None else [record(0x81, sub.language.encode("ascii"))]
    return [
        record(records.SUBMISSION, DAY.encode("ascii")),
        record(records.RECEIPT, sub.receipt.encode("ascii")),
        *source,
        *language,
        *body,
        record(records.MANIFEST, manifest),
    ]


def padme(length: int) -> int:
    if length < 2:
        return length
    exponent = length.bit_length() - 1
    low_bits = exponent - exponent.bit_length()
    mask = (1 << low_bits) - 1
    return (length + mask) & ~mask


def pad(unpadded: bytes, *, fill: int = 0, adjust: int = 0) -> bytes:
    """Append one PADDING record; `fill` and `adjust` exist only to break the rules."""
    target = max(padme(len(unpadded) + _HEADER.size), 16 * 1024) + adjust
    padding_body = target - len(unpadded) - _HEADER.size
    return unpadded + record(records.PADDING, bytes([fill]) * padding_body)


def encode_payload(sub: Submission) -> bytes:
    return pad(b"".join(top_level_records(sub)))


def unpadded_length(sub: Submission) -> int:
    return sum(len(part) for part in top_level_records(sub))


# --- the real writer and sealer -----------------------------------------------------


def write_payload(sub: Submission) -> bytes:
    if sub.optional_records:
        # PayloadWriter never writes optional records; only the encoder above can.
        return encode_payload(sub)
    out = bytearray()
    source = None
    if sub.source is not None:
        source = records.SourceIdentity.for_key(*sub.source)
    writer = records.PayloadWriter(out.extend, DAY, sub.receipt, source, sub.language)
    if sub.message:
        writer.message(sub.message)
    for number, attachment in enumerate(sub.attachments, 1):
        writer.begin_attachment(attachment.name, attachment.media_type)
        writer.attachment_data(attachment.content)
        if sub.cut != records.CUT_IN_ATTACHMENT or number < len(sub.attachments):
            writer.end_attachment()
    if sub.cut is not None:
        writer.cut(in_message=sub.cut == records.CUT_IN_MESSAGE)
    writer.close()
    payload = bytes(out)
    if payload != encode_payload(sub):
        sys.exit("PayloadWriter and the FORMAT.md encoder disagree: fix one of them")
    return payload


def seal(
    payload: bytes,
    recipient: PublicKey,
    version: int = crypto.VERSION,
    magic: bytes = crypto.MAGIC,
) -> bytes:
    sealer = crypto.PayloadSealer(recipient, version=version, magic=magic)
    out = [sealer.header]
    # Odd piece sizes so chunking never lines up with the writes by luck.
    for start in range(0, len(payload), 10_007):
        out.append(sealer.update(payload[start : start + 10_007]))
    out.append(sealer.finalize())
    sealed = b"".join(out)
    assert len(sealed) == crypto.sealed_size(len(payload))
    return sealed


def seal_raw(chunks: list[tuple[bytes, int]], recipient: PublicKey) -> bytes:
    """Seal chunks with tags of our choosing: the only way to break the chunk rules."""
    file_key = bindings.crypto_secretstream_xchacha20poly1305_keygen()
    state = bindings.crypto_secretstream_xchacha20poly1305_state()
    stream_header = bindings.crypto_secretstream_xchacha20poly1305_init_push(state, file_key)
    header = crypto.MAGIC + bytes([crypto.VERSION]) + SealedBox(recipient).encrypt(file_key)
    header += stream_header
    out = [header]
    for plaintext, tag in chunks:
        out.append(
            bindings.crypto_secretstream_xchacha20poly1305_push(state, plaintext, header, tag)
        )
    return b"".join(out)


def split_chunks(sealed: bytes) -> tuple[bytes, list[bytes]]:
    header, rest = sealed[: crypto.HEADER_BYTES], sealed[crypto.HEADER_BYTES :]
    size = crypto.ENCRYPTED_CHUNK_BYTES
    return header, [rest[i : i + size] for i in range(0, len(rest), size)]


def flip_bit(data: bytes, bit: int) -> bytes:
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


# --- the vectors ----------------------------------------------------------------------


def sized_attachment(label: str, payload_target: int) -> Submission:
    """A submission whose records plus the first padding header are `payload_target`."""
    base = Submission(message=label, attachments=(Attachment("fill.bin", "application/x", b""),))
    # A non-empty attachment adds one ATTACHMENT_DATA header to the empty one's records.
    size = payload_target - _HEADER.size - unpadded_length(base) - _HEADER.size
    content = filler(label, size)
    sub = Submission(message=label, attachments=(Attachment("fill.bin", "application/x", content),))
    assert unpadded_length(sub) + _HEADER.size == payload_target
    return sub


GOOD: dict[str, Submission] = {
    "good_empty_message": Submission(),
    "good_one_byte": Submission(attachments=(Attachment("one-byte.txt", "text/plain", b"A"),)),
    "good_chunk_minus_one": sized_attachment("chunk minus one", crypto.CHUNK_SIZE - 1),
    "good_exactly_one_chunk": sized_attachment("exactly one chunk", crypto.CHUNK_SIZE),
    "good_chunk_plus_one": sized_attachment("chunk plus one", crypto.CHUNK_SIZE + 1),
    "good_two_full_chunks": sized_attachment("two full chunks", 2 * crypto.CHUNK_SIZE),
    "good_several_attachments": Submission(
        message="Three files.\nThe second one is empty.\n",
        attachments=(
            Attachment("notes.txt", "text/plain", b"Truck seen at the sawmill gate, 02:10.\n"),
            Attachment("empty.dat", "application/octet-stream", b""),
            Attachment("photo.jpg", "image/jpeg", filler("photo.jpg", 3000)),
        ),
    ),
    "good_unicode_names": Submission(
        message="Éléphants près de la rivière — 象牙 🐘 (NFD: e\u0301)",
        attachments=(
            Attachment("carte_forêt.pdf", "application/pdf", filler("carte", 100)),
            Attachment("象牙交易.txt", "text/plain", "二〇二六年\n".encode()),
            Attachment("🐘🌳.png", "image/png", filler("emoji", 50)),
            Attachment("cafe\u0301 (NFD).txt", "text/plain", b"decomposed"),
        ),
    ),
    "good_hostile_name": Submission(
        message="Attachment names chosen to escape the output folder.",
        attachments=(
            Attachment("../../etc/passwd", "text/plain", b"root:x:0:0::/root:/bin/sh\n"),
            Attachment("/etc/shadow", "text/plain", b"absolute"),
            Attachment("..", "application/octet-stream", b"dot dot"),
            Attachment("", "application/octet-stream", b"no name"),
            Attachment("a\\..\\..\\evil.bat", "text/plain", b"backslashes"),
            Attachment("nul\x00byte.txt", "text/plain", b"nul"),
            Attachment("\u202etxt.exe", "application/x-msdownload", b"right-to-left override"),
            Attachment("ok.txt", "text/html\r\nX-Injected: 1", b"control characters in type"),
        ),
    ),
    "good_unknown_optional_record": Submission(
        message="An old reader skips records 0x80-0xFE.",
        attachments=(Attachment("kept.txt", "text/plain", b"still here"),),
        optional_records=(
            (0, 0x80, b"future optional data"),
            (2, 0xFE, b""),
        ),
    ),
}


def expected_json(sub: Submission, payload: bytes, sealed: bytes) -> dict[str, object]:
    return {
        "day": DAY,
        "receipt": RECEIPT,
        "message": sub.message,
        "attachments": [
            {
                "name": a.name,
                "media_type": a.media_type,
                "size": len(a.content),
                "sha256": hashlib.sha256(a.content).hexdigest(),
                **(
                    {"content_base64": base64.b64encode(a.content).decode("ascii")}
                    if len(a.content) <= INLINE_CONTENT_LIMIT
                    else {}
                ),
            }
            for a in sub.attachments
        ],
        "skipped_records": [
            {"type": record_type, "length": len(body)}
            for _, record_type, body in sorted(sub.optional_records)
        ],
        "payload_length": len(payload),
        "file_size": len(sealed),
    }


def fail_vectors(
    public: PublicKey, payloads: dict[str, bytes], sealed: dict[str, bytes]
) -> dict[str, tuple[str, str, bytes]]:
    """name -> (expected error class, why, file bytes)."""
    small = sealed["good_empty_message"]
    one_full = sealed["good_exactly_one_chunk"]
    two = sealed["good_chunk_plus_one"]
    three_payload = sized_attachment("three chunks", 2 * crypto.CHUNK_SIZE + 1)
    three = seal(write_payload(three_payload), public)
    header3, chunks3 = split_chunks(three)
    assert len(chunks3) == 3
    sealed_key_at = crypto.PREFIX_BYTES
    stream_header_at = (
        crypto.HEADER_BYTES - bindings.crypto_secretstream_xchacha20poly1305_HEADERBYTES
    )
    first_chunk_at = crypto.HEADER_BYTES

    def record_level(sub_records: list[bytes], **pad_args: int) -> bytes:
        return seal(pad(b"".join(sub_records), **pad_args), public)

    plain = top_level_records(GOOD["good_one_byte"])  # SUBMISSION RECEIPT attachment MANIFEST
    wrong_manifest = bytearray(plain[-1])
    wrong_manifest[-1] ^= 0x01
    tag_message = bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
    tag_final = bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL
    attachment = plain[2]
    begin_end = len(attachment) - _HEADER.size  # split before ATTACHMENT_END

    def build(make: Callable[[], bytes], error: str, why: str) -> tuple[str, str, bytes]:
        return error, why, make()

    return {
        "fail_empty_file": build(lambda: b"", "TruncatedFile", "a zero-byte file"),
        "fail_truncated_in_header": build(
            lambda: small[:60], "TruncatedFile", "cut inside the sealed file key"
        ),
        "fail_truncated_after_header": build(
            lambda: small[: crypto.HEADER_BYTES], "TruncatedFile", "the header and no chunk"
        ),
        "fail_truncated_mid_chunk": build(
            lambda: small[: len(small) // 2],
            "TamperedChunk",
            "cut inside the only chunk; indistinguishable from a changed last chunk",
        ),
        "fail_truncated_at_chunk_boundary": build(
            lambda: two[: crypto.HEADER_BYTES + crypto.ENCRYPTED_CHUNK_BYTES],
            "TruncatedFile",
            "cut after chunk 0 (tagged MESSAGE); the FINAL chunk is missing",
        ),
        "fail_truncated_chunk_stub": build(
            lambda: two[: crypto.HEADER_BYTES + crypto.ENCRYPTED_CHUNK_BYTES + 16],
            "TruncatedFile",
            "16 bytes after chunk 0: too short to be any chunk",
        ),
        "fail_flipped_bit": build(
            lambda: flip_bit(small, 8 * (first_chunk_at + 1000)),
            "TamperedChunk",
            "one bit changed inside chunk 0's ciphertext",
        ),
        "fail_flipped_bit_sealed_key": build(
            lambda: flip_bit(small, 8 * (sealed_key_at + 40)),
            "WrongKey",
            "one bit changed inside the sealed file key",
        ),
        "fail_flipped_bit_stream_header": build(
            lambda: flip_bit(small, 8 * stream_header_at),
            "TamperedChunk",
            "one bit changed in the secretstream header (key schedule and AD both change)",
        ),
        "fail_trailing_data": build(
            lambda: one_full + b"\x00",
            "TrailingData",
            "one byte after a full (64 KiB) final chunk",
        ),
        "fail_trailing_data_after_short_final": build(
            lambda: small + b"\x00",
            "TamperedChunk",
            "one byte after a short final chunk: it is read as part of that chunk",
        ),
        "fail_wrong_key": build(
            lambda: seal(payloads["good_empty_message"], PrivateKey.generate().public_key),
            "WrongKey",
            "a valid file sealed to another reviewer key",
        ),
        "fail_bad_version": build(
            # Version 3 was free when this vector was made; it now names the
            # multi-recipient header, so the file's byte 8 was changed to 4 in place.
            lambda: crypto.MAGIC + bytes([4]) + small[crypto.PREFIX_BYTES :],
            "UnsupportedVersion",
            "version byte 4",
        ),
        "fail_not_ours": build(
            lambda: b"age-encryption.org/v1\n-> X25519 " + bytes(200),
            "NotASealdropFile",
            "the start of another format's file",
        ),
        "fail_swapped_chunks": build(
            lambda: header3 + chunks3[1] + chunks3[0] + chunks3[2],
            "TamperedChunk",
            "chunks 0 and 1 of a three-chunk file exchanged",
        ),
        "fail_duplicated_chunk": build(
            lambda: header3 + chunks3[0] + chunks3[0] + chunks3[1] + chunks3[2],
            "TamperedChunk",
            "chunk 0 of a three-chunk file repeated",
        ),
        "fail_empty_final_chunk": build(
            lambda: seal_raw(
                [(payloads["good_exactly_one_chunk"], tag_message), (b"", tag_final)], public
            ),
            "MalformedStream",
            "a full MESSAGE chunk holding a valid payload, then an empty FINAL chunk",
        ),
        "fail_unknown_critical_record": build(
            lambda: record_level([*plain[:2], record(0x08, b"critical"), *plain[2:]]),
            "MalformedPayload",
            "a record of type 0x08 (unknown, below 0x80) after RECEIPT",
        ),
        "fail_reserved_record_ff": build(
            lambda: record_level([*plain[:2], record(0xFF, b""), *plain[2:]]),
            "MalformedPayload",
            "a record of the reserved type 0xFF",
        ),
        "fail_optional_record_inside_attachment": build(
            lambda: record_level(
                [
                    *plain[:2],
                    attachment[:begin_end] + record(0x80, b"x") + attachment[begin_end:],
                    plain[3],
                ]
            ),
            "MalformedPayload",
            "an optional 0x80 record between ATTACHMENT_DATA and ATTACHMENT_END",
        ),
        "fail_record_after_manifest": build(
            lambda: record_level([*plain, record(0x80, b"late")]),
            "MalformedPayload",
            "an optional 0x80 record after MANIFEST (only PADDING may follow it)",
        ),
        "fail_manifest_mismatch": build(
            lambda: record_level([*plain[:-1], bytes(wrong_manifest)]),
            "MalformedPayload",
            "the manifest's SHA-256 for attachment 0 has one bit changed",
        ),
        "fail_padding_not_zero": build(
            lambda: record_level(plain, fill=0x01),
            "MalformedPayload",
            "the padding bytes are 0x01, not zero",
        ),
        "fail_padding_wrong_length": build(
            lambda: record_level(plain, adjust=-1),
            "MalformedPayload",
            "the payload is one byte shorter than its Padmé length",
        ),
    }


# --- version 2 (the SOURCE record) and reply files ---------------------------------------

# Test-only: this codename, salt and the reply key they derive are public.
SOURCE_WORD_INDICES = (3113, 3945, 3402, 6721, 1788, 4999, 7007)
SOURCE_SALT = hashlib.shake_256(b"sealdrop test vectors codename salt").digest(16)
SOURCE_COST = codename.TEST_COST
REFERENCE = "0412-9931"
KIND_NAMES = {records.FIRST_CONTACT: "first contact", records.FOLLOW_UP: "follow-up"}
V2_MARKERS = ("good_v2_", "fail_v2_", "good_reply_", "fail_reply_")
SOURCE_FILE = "source_codename.json"


CUT_MARKERS = ("good_cut_", "fail_cut_")
V3_MARKERS = ("good_v3_", "fail_v3_")
LANG_MARKERS = ("good_lang_", "fail_lang_")


def vector_set(name: str) -> str:
    """The set a vector file belongs to: "v1", "v2", "cut", "v3" or "lang"."""
    if name.startswith(LANG_MARKERS):
        return "lang"
    if name.startswith(CUT_MARKERS):
        return "cut"
    if name.startswith(V3_MARKERS):
        return "v3"
    return "v2" if name.startswith(V2_MARKERS) or name == SOURCE_FILE else "v1"


def source_codename() -> str:
    words = [codename.word_list()[index] for index in SOURCE_WORD_INDICES]
    return " ".join([*words, codename.checksum_word(words)])


def source_keys() -> codename.SourceKeys:
    return codename.derive(source_codename(), SOURCE_SALT, SOURCE_COST)


def source_json(keys_: codename.SourceKeys) -> dict[str, object]:
    """The derivation vector: from codename and salt to the reply key and mailbox id."""
    return {
        "codename": source_codename(),
        "salt": SOURCE_SALT.hex(),
        "opslimit": SOURCE_COST.opslimit,
        "memlimit": SOURCE_COST.memlimit,
        "reply_secret_key": bytes(keys_.reply_key).hex(),
        "reply_public_key": bytes(keys_.reply_public_key).hex(),
        "mailbox_id": keys_.mailbox,
    }


def good_v2(reply_public_key: bytes) -> dict[str, Submission]:
    first = (records.FIRST_CONTACT, reply_public_key)
    follow = (records.FOLLOW_UP, reply_public_key)
    return {
        "good_v2_first_contact": Submission(
            message="Logs leave the reserve at night by the river road.",
            attachments=(Attachment("permit.jpg", "image/jpeg", filler("permit", 2500)),),
            source=first,
        ),
        "good_v2_follow_up": Submission(
            message="The port is Mombasa. The bill of lading is attached.",
            attachments=(Attachment("bill-of-lading.pdf", "application/pdf", b"%PDF-1.4 bill"),),
            source=follow,
        ),
        "good_v2_follow_up_empty": Submission(source=follow),
        "good_v2_follow_up_two_chunks": Submission(
            message="A long follow-up.",
            attachments=(Attachment("video.mp4", "video/mp4", filler("video", 70_000)),),
            source=follow,
        ),
        "good_v2_optional_record_after_source": Submission(
            message="An optional record may follow SOURCE.",
            optional_records=((0, 0x80, b"future optional data"),),
            source=first,
        ),
    }


REPLIES: dict[str, str] = {
    "good_reply_short": "Thank you. Which port did the truck leave from?\n",
    # Exactly MAX_REPLY_CHARS characters of 1 to 4 UTF-8 bytes each: two chunks.
    "good_reply_longest": ("象牙🐘 é\n" * replies.MAX_REPLY_CHARS)[: replies.MAX_REPLY_CHARS],
}


def expected_source(source: tuple[int, bytes]) -> dict[str, object]:
    kind, reply_public_key = source
    return {
        "kind": kind,
        "kind_name": KIND_NAMES[kind],
        "reply_public_key": reply_public_key.hex(),
        "mailbox_id": records.mailbox_id_for(reply_public_key).hex(),
    }


def expected_v2_json(sub: Submission, payload: bytes, sealed: bytes) -> dict[str, object]:
    assert sub.source is not None
    return {
        "version": crypto.SOURCE_VERSION,
        "source": expected_source(sub.source),
        **expected_json(sub, payload, sealed),
    }


def expected_reply_json(
    message: str, keys_: codename.SourceKeys, payload: bytes, sealed: bytes
) -> dict[str, object]:
    return {
        "magic": replies.REPLY_MAGIC.decode("ascii"),
        "version": replies.REPLY_VERSION,
        "reply_public_key": bytes(keys_.reply_public_key).hex(),
        "mailbox_id": keys_.mailbox,
        "day": DAY,
        "reference": REFERENCE,
        "message": message,
        "payload_length": len(payload),
        "file_size": len(sealed),
    }


def fail_v2_vectors(
    public: PublicKey, keys_: codename.SourceKeys, good: dict[str, bytes], reply: bytes
) -> dict[str, tuple[str, str, bytes]]:
    """name -> (expected error class, why, file bytes), read as a submission."""
    reply_pk = bytes(keys_.reply_public_key)
    plain = top_level_records(
        Submission(message="m", source=(records.FOLLOW_UP, reply_pk))
    )  # SUBMISSION RECEIPT SOURCE MESSAGE MANIFEST
    good_source = source_body(records.FOLLOW_UP, reply_pk)
    wrong_mailbox = bytearray(good_source)
    wrong_mailbox[-1] ^= 0x01
    other_key_mailbox = good_source[:33] + records.mailbox_id_for(bytes(32))
    v2 = crypto.SOURCE_VERSION

    def sealed(parts: list[bytes], version: int = v2) -> bytes:
        return seal(pad(b"".join(parts)), public, version)

    def source(body: bytes) -> bytes:
        return record(records.SOURCE, body)

    changed = bytearray(good["good_v2_follow_up"])
    changed[len(crypto.MAGIC)] = crypto.VERSION
    return {
        "fail_v2_no_source": (
            "MalformedPayload",
            "a version 2 file whose payload has no SOURCE record (a version 1 payload)",
            sealed([*plain[:2], *plain[3:]]),
        ),
        "fail_v2_source_wrong_mailbox": (
            "MalformedPayload",
            "the SOURCE record's mailbox id has one bit changed: it is not the reply key's",
            sealed([*plain[:2], source(bytes(wrong_mailbox)), *plain[3:]]),
        ),
        "fail_v2_source_other_mailbox": (
            "MalformedPayload",
            "the SOURCE record names the mailbox id of another reply key",
            sealed([*plain[:2], source(other_key_mailbox), *plain[3:]]),
        ),
        "fail_v2_source_bad_kind": (
            "MalformedPayload",
            "the SOURCE record's kind is 3 (only 1 and 2 exist)",
            sealed([*plain[:2], source(b"\x03" + good_source[1:]), *plain[3:]]),
        ),
        "fail_v2_source_short": (
            "MalformedPayload",
            "the SOURCE record is 48 bytes (the mailbox id lost its last byte)",
            sealed([*plain[:2], source(good_source[:-1]), *plain[3:]]),
        ),
        "fail_v2_source_long": (
            "MalformedPayload",
            "the SOURCE record is 50 bytes (one byte after the mailbox id)",
            sealed([*plain[:2], source(good_source + b"\x00"), *plain[3:]]),
        ),
        "fail_v2_source_twice": (
            "MalformedPayload",
            "a second SOURCE record after the first",
            sealed([*plain[:3], plain[2], *plain[3:]]),
        ),
        "fail_v2_source_after_message": (
            "MalformedPayload",
            "MESSAGE, then SOURCE: SOURCE must be the third record",
            sealed([*plain[:2], plain[3], plain[2], plain[4]]),
        ),
        "fail_v2_optional_record_before_source": (
            "MalformedPayload",
            "an optional 0x80 record between RECEIPT and SOURCE",
            sealed([*plain[:2], record(0x80, b"x"), *plain[2:]]),
        ),
        "fail_v2_record_in_version_1": (
            "MalformedPayload",
            "a valid SOURCE record in a file whose header says version 1",
            sealed(plain, crypto.VERSION),
        ),
        "fail_v2_version_byte_changed": (
            "TamperedChunk",
            "good_v2_follow_up with its version byte changed to 1 (the header is every chunk's AD)",
            bytes(changed),
        ),
        "fail_v2_reply_file": (
            "NotASealdropFile",
            "good_reply_short (magic sealrply) given to the submission reader",
            reply,
        ),
    }


def fail_reply_vectors(
    keys_: codename.SourceKeys, good: dict[str, bytes], payloads: dict[str, bytes]
) -> dict[str, tuple[str, str, bytes]]:
    """name -> (expected error class, why, file bytes), read as a reply."""
    short, longest = good["good_reply_short"], good["good_reply_longest"]
    reply_pk = keys_.reply_public_key
    magic = replies.REPLY_MAGIC
    with_file = Submission(
        message="A reply with a file.",
        attachments=(Attachment("a.txt", "text/plain", b"not allowed"),),
        receipt=REFERENCE,
    )
    return {
        "fail_reply_truncated_mid_chunk": (
            "TamperedChunk",
            "good_reply_short cut in the middle of its only chunk",
            short[: len(short) // 2],
        ),
        "fail_reply_truncated_at_chunk_boundary": (
            "TruncatedFile",
            "good_reply_longest cut after chunk 0",
            longest[: crypto.HEADER_BYTES + crypto.ENCRYPTED_CHUNK_BYTES],
        ),
        "fail_reply_flipped_bit": (
            "TamperedChunk",
            "one bit changed inside chunk 0 of good_reply_short",
            flip_bit(short, 8 * (crypto.HEADER_BYTES + 1000)),
        ),
        "fail_reply_wrong_key": (
            "WrongKey",
            "good_reply_short's payload sealed to another source's reply key",
            seal(payloads["good_reply_short"], PrivateKey.generate().public_key, 1, magic),
        ),
        "fail_reply_submission_magic": (
            "NotASealdropFile",
            "good_reply_short's payload sealed to the reply key under the magic sealdrop",
            seal(payloads["good_reply_short"], reply_pk),
        ),
        "fail_reply_bad_version": (
            "UnsupportedVersion",
            "good_reply_short with version byte 2 (replies are version 1 only)",
            magic + b"\x02" + short[crypto.PREFIX_BYTES :],
        ),
        "fail_reply_with_attachment": (
            "MalformedPayload",
            "a validly sealed reply holding an attachment (replies hold a message only)",
            seal(encode_payload(with_file), reply_pk, 1, magic),
        ),
    }


# --- cut uploads (the CUT record) ---------------------------------------------------------

CUT_NAMES = {
    records.CUT_IN_MESSAGE: "message",
    records.CUT_IN_ATTACHMENT: "attachment",
    records.CUT_BETWEEN_PARTS: "between parts",
}


def cut_at_chunk_boundary() -> Submission:
    """A file cut so that its CUT record starts exactly at payload offset 65 536."""
    base = Submission(
        message="Cut where a chunk ends.",
        attachments=(Attachment("long.bin", "application/octet-stream", b""),),
        cut=records.CUT_IN_ATTACHMENT,
    )
    cut_at = unpadded_length(base) - len(cut_record(0, 0)) - _HEADER.size - 4 - 40
    size = crypto.CHUNK_SIZE - cut_at - _HEADER.size
    content = filler("cut at a chunk boundary", size)
    sub = Submission(
        message=base.message,
        attachments=(Attachment("long.bin", "application/octet-stream", content),),
        cut=records.CUT_IN_ATTACHMENT,
    )
    payload = b"".join(top_level_records(sub))
    assert payload[crypto.CHUNK_SIZE] == records.CUT, "the CUT record must start a chunk"
    return sub


def good_cut(reply_public_key: bytes) -> dict[str, Submission]:
    permit = Attachment("permit.jpg", "image/jpeg", filler("permit", 2500))
    return {
        "good_cut_in_message": Submission(
            message="Logs leave the reserve at night by the riv",
            cut=records.CUT_IN_MESSAGE,
        ),
        "good_cut_at_file_start": Submission(
            message="The video follows.",
            attachments=(Attachment("video.mp4", "video/mp4", b""),),
            cut=records.CUT_IN_ATTACHMENT,
        ),
        "good_cut_mid_file": Submission(
            message="Two files; the second was cut.",
            attachments=(permit, Attachment("video.mp4", "video/mp4", filler("video", 3000))),
            cut=records.CUT_IN_ATTACHMENT,
        ),
        "good_cut_at_chunk_boundary": cut_at_chunk_boundary(),
        "good_cut_between_parts": Submission(
            message="Cut after the first file, before the second began.",
            attachments=(permit,),
            cut=records.CUT_BETWEEN_PARTS,
        ),
        "good_cut_v2_follow_up": Submission(
            message="A follow-up cut inside its file.",
            attachments=(Attachment("scan.pdf", "application/pdf", filler("scan", 1200)),),
            source=(records.FOLLOW_UP, reply_public_key),
            cut=records.CUT_IN_ATTACHMENT,
        ),
    }


def expected_cut_json(sub: Submission, payload: bytes, sealed: bytes) -> dict[str, object]:
    assert sub.cut is not None
    if sub.cut == records.CUT_IN_MESSAGE:
        index, received = 0, len(sub.message.encode("utf-8"))
    elif sub.cut == records.CUT_IN_ATTACHMENT:
        index, received = len(sub.attachments) - 1, len(sub.attachments[-1].content)
    else:
        index, received = len(sub.attachments), 0
    base = (
        expected_v2_json(sub, payload, sealed)
        if sub.source
        else expected_json(sub, payload, sealed)
    )
    return {
        **base,
        "cut": {
            "where": sub.cut,
            "where_name": CUT_NAMES[sub.cut],
            "index": index,
            "received": received,
        },
    }


def fail_cut_vectors(public: PublicKey) -> dict[str, tuple[str, str, bytes]]:
    """name -> (expected error class, why, file bytes): CUT records in the wrong place."""
    message = record(records.MESSAGE, b"m")
    begin = (1).to_bytes(2, "big") + b"a" + (1).to_bytes(2, "big") + b"b"
    opened = record(records.ATTACHMENT_BEGIN, begin) + record(records.ATTACHMENT_DATA, b"xyz")
    ended = opened + record(records.ATTACHMENT_END, b"")
    start = top_level_records(Submission())[:2]
    manifest_xyz = record(
        records.MANIFEST,
        (1).to_bytes(4, "big") + (3).to_bytes(8, "big") + hashlib.sha256(b"xyz").digest(),
    )
    full = b"xyz" + b"-the rest the source never sent"
    manifest_full = record(
        records.MANIFEST,
        (1).to_bytes(4, "big") + len(full).to_bytes(8, "big") + hashlib.sha256(full).digest(),
    )
    empty_manifest = record(records.MANIFEST, bytes(4))
    in_file = cut_record(records.CUT_IN_ATTACHMENT, 3)

    def sealed(*parts: bytes) -> bytes:
        return seal(pad(b"".join([*start, *parts])), public)

    malformed = "MalformedPayload"
    return {
        "fail_cut_after_attachment_end": (
            malformed,
            "a CUT record of kind attachment after the attachment's ATTACHMENT_END",
            sealed(message, ended, in_file, manifest_xyz),
        ),
        "fail_cut_then_attachment": (
            malformed,
            "a CUT record (between parts) followed by a whole attachment",
            sealed(message, cut_record(records.CUT_BETWEEN_PARTS, 0), ended, manifest_xyz),
        ),
        "fail_cut_then_attachment_end": (
            malformed,
            "a CUT record inside an attachment, then that attachment's ATTACHMENT_END",
            sealed(opened, in_file, record(records.ATTACHMENT_END, b""), manifest_xyz),
        ),
        "fail_cut_then_optional_record": (
            malformed,
            "an optional 0x80 record between CUT and MANIFEST (only MANIFEST may follow CUT)",
            sealed(
                message, cut_record(records.CUT_IN_MESSAGE, 1), record(0x80, b"x"), empty_manifest
            ),
        ),
        "fail_cut_twice": (
            malformed,
            "two CUT records",
            sealed(opened, in_file, cut_record(records.CUT_BETWEEN_PARTS, 0), manifest_xyz),
        ),
        "fail_cut_in_message_after_attachment": (
            malformed,
            "a CUT record of kind message after an attachment",
            sealed(message, ended, cut_record(records.CUT_IN_MESSAGE, 1), manifest_xyz),
        ),
        "fail_cut_wrong_count": (
            malformed,
            "a CUT record inside an attachment of 3 bytes that says 2 arrived",
            sealed(opened, cut_record(records.CUT_IN_ATTACHMENT, 2), manifest_xyz),
        ),
        "fail_cut_manifest_claims_whole_file": (
            malformed,
            "the manifest lists the whole file although only 3 bytes of it are in the payload",
            sealed(opened, in_file, manifest_full),
        ),
        "fail_cut_no_content": (
            malformed,
            "a CUT record in a payload with no message text and no attachment byte",
            sealed(cut_record(records.CUT_BETWEEN_PARTS, 0), empty_manifest),
        ),
        "fail_cut_body_long": (
            malformed,
            "a CUT record of 10 bytes (the body is 9)",
            sealed(
                message,
                record(records.CUT, bytes([records.CUT_IN_MESSAGE]) + bytes(8) + b"\x01"),
                empty_manifest,
            ),
        ),
        "fail_cut_unknown_kind": (
            malformed,
            "a CUT record of kind 4 (only 1, 2 and 3 exist)",
            sealed(message, cut_record(4, 0), empty_manifest),
        ),
    }


def make_cut(public: PublicKey) -> None:
    remove_stale("cut")
    reply_public_key = bytes(source_keys().reply_public_key)
    for name, sub in good_cut(reply_public_key).items():
        payload = write_payload(sub)
        version = crypto.VERSION if sub.source is None else crypto.SOURCE_VERSION
        sealed = seal(payload, public, version)
        (VECTORS / f"{name}.sealed").write_bytes(sealed)
        write_json(VECTORS / f"{name}.expected.json", expected_cut_json(sub, payload, sealed))
    for name, (error, why, data) in fail_cut_vectors(public).items():
        write_fail(name, ".sealed", error, why, data)


# --- version 3: the file key sealed to several reviewer keys ----------------------------

V3 = crypto.RECIPIENTS_VERSION


@dataclass(frozen=True)
class GoodV3:
    sub: Submission
    others: int  # throwaway reviewer keys, not kept
    reader_at: int  # the vector reviewer key's stanza among them


def good_v3(reply_public_key: bytes) -> dict[str, GoodV3]:
    first = (records.FIRST_CONTACT, reply_public_key)
    return {
        "good_v3_one_key": GoodV3(
            Submission(
                message="One reviewer key: a header of one stanza.",
                attachments=(Attachment("one-byte.txt", "text/plain", b"A"),),
            ),
            others=0,
            reader_at=0,
        ),
        "good_v3_reader_first": GoodV3(
            Submission(message="Three keys; the reader's is the first stanza."), 2, 0
        ),
        "good_v3_reader_middle": GoodV3(
            Submission(
                message="Three keys; the reader's is the second. Sent with a codename.",
                source=first,
            ),
            2,
            1,
        ),
        "good_v3_reader_last": GoodV3(
            Submission(message="Sixteen keys, the most; the reader's is the last."),
            crypto.MAX_RECIPIENTS - 1,
            crypto.MAX_RECIPIENTS - 1,
        ),
        "good_v3_two_chunks": GoodV3(
            Submission(
                message="Two keys and two chunks: the header is the AD of both.",
                attachments=(Attachment("video.mp4", "video/mp4", filler("v3 video", 70_000)),),
                optional_records=((0, 0x80, b"future optional data"),),
                source=(records.FOLLOW_UP, reply_public_key),
            ),
            1,
            1,
        ),
    }


def recipients_with(public: PublicKey, others: int, reader_at: int) -> list[PublicKey]:
    keys_ = [PrivateKey.generate().public_key for _ in range(others)]
    keys_.insert(reader_at, public)
    return keys_


def seal_v3(payload: bytes, recipients: list[PublicKey]) -> bytes:
    sealer = crypto.PayloadSealer(recipients, version=V3)
    out = [sealer.header]
    for start in range(0, len(payload), 10_007):
        out.append(sealer.update(payload[start : start + 10_007]))
    out.append(sealer.finalize())
    sealed = b"".join(out)
    assert len(sealed) == crypto.sealed_size(len(payload), version=V3, recipients=len(recipients))
    return sealed


def header_mac(signed: bytes, file_key: bytes) -> bytes:
    """docs/FORMAT.md: BLAKE2b-256 keyed by the file key, personalisation sealdrop-hdr3."""
    return hashlib.blake2b(signed, digest_size=32, key=file_key, person=b"sealdrop-hdr3").digest()


def seal_v3_raw(
    payload: bytes,
    stanzas: list[bytes],
    file_key: bytes,
    *,
    mac_key: bytes | None = None,
    without_mac_in_ad: bool = False,
) -> bytes:
    """A version 3 file built from docs/FORMAT.md, with the rules a hostile writer breaks."""
    state = bindings.crypto_secretstream_xchacha20poly1305_state()
    stream_header = bindings.crypto_secretstream_xchacha20poly1305_init_push(state, file_key)
    signed = crypto.MAGIC + bytes([V3, len(stanzas)]) + b"".join(stanzas) + stream_header
    header = signed + header_mac(signed, mac_key or file_key)
    ad = signed if without_mac_in_ad else header
    size = crypto.CHUNK_SIZE
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
    out = [header]
    for index, piece in enumerate(pieces):
        final = index == len(pieces) - 1
        tag = bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL if final else 0
        out.append(bindings.crypto_secretstream_xchacha20poly1305_push(state, piece, ad, tag))
    return b"".join(out)


def expected_v3_json(good: GoodV3, payload: bytes, sealed: bytes) -> dict[str, object]:
    source = {} if good.sub.source is None else {"source": expected_source(good.sub.source)}
    return {
        "version": V3,
        "recipients": good.others + 1,
        "reader_stanza": good.reader_at,
        **source,
        **expected_json(good.sub, payload, sealed),
    }


def fail_v3_vectors(
    public: PublicKey, reply_public_key: bytes, good: dict[str, bytes]
) -> dict[str, tuple[str, str, bytes]]:
    """name -> (expected error class, why, file bytes), read with the vector reviewer key."""
    stanza = crypto.STANZA_BYTES
    count_at = crypto.PREFIX_BYTES

    def stanza_start(index: int) -> int:
        return count_at + 1 + index * stanza

    def changed(name: str, offset: int, value: int | None = None) -> bytes:
        data = bytearray(good[name])
        data[offset] = data[offset] ^ 0x01 if value is None else value
        return bytes(data)

    first = good["good_v3_reader_first"]
    swapped = bytearray(first)
    swapped[stanza_start(0) : stanza_start(1)] = first[stanza_start(2) : stanza_start(3)]
    swapped[stanza_start(2) : stanza_start(3)] = first[stanza_start(0) : stanza_start(1)]
    small = write_payload(Submission(message="m"))
    other = PrivateKey.generate().public_key
    key_a = bindings.crypto_secretstream_xchacha20poly1305_keygen()
    key_b = bindings.crypto_secretstream_xchacha20poly1305_keygen()
    mac_at = crypto.header_size(V3, 3) - 32
    source = record(records.SOURCE, source_body(records.FIRST_CONTACT, reply_public_key))
    plain = top_level_records(Submission(message="m"))  # SUBMISSION RECEIPT MESSAGE MANIFEST
    return {
        "fail_v3_wrong_key": (
            "WrongKey",
            "sealed to three other reviewer keys, none of them the reader's",
            seal_v3(small, [PrivateKey.generate().public_key for _ in range(3)]),
        ),
        "fail_v3_own_stanza_altered": (
            "WrongKey",
            "good_v3_reader_middle with one bit changed in the reader's own stanza (the second)",
            changed("good_v3_reader_middle", stanza_start(1) + 40),
        ),
        "fail_v3_other_stanza_altered": (
            "TamperedHeader",
            "good_v3_reader_first with one bit changed in the third stanza (another key's)",
            changed("good_v3_reader_first", stanza_start(2) + 40),
        ),
        "fail_v3_stanzas_reordered": (
            "TamperedHeader",
            "good_v3_reader_first with its first and third stanzas exchanged",
            bytes(swapped),
        ),
        "fail_v3_count_decreased": (
            "TamperedHeader",
            "good_v3_reader_first with the count 3 changed to 2",
            changed("good_v3_reader_first", count_at, 2),
        ),
        "fail_v3_count_increased": (
            "TamperedHeader",
            "good_v3_reader_first with the count 3 changed to 4 (the stream header, the MAC "
            "and the first chunk's start are read as a fourth stanza)",
            changed("good_v3_reader_first", count_at, 4),
        ),
        "fail_v3_count_zero": (
            "TamperedHeader",
            "good_v3_one_key with the count 1 changed to 0",
            changed("good_v3_one_key", count_at, 0),
        ),
        "fail_v3_count_above_limit": (
            "TamperedHeader",
            "good_v3_reader_last with the count 16 changed to 17",
            changed("good_v3_reader_last", count_at, crypto.MAX_RECIPIENTS + 1),
        ),
        "fail_v3_stream_header_altered": (
            "TamperedHeader",
            "good_v3_reader_first with one bit changed in the stream header",
            changed("good_v3_reader_first", stanza_start(3) + 5),
        ),
        "fail_v3_header_mac_altered": (
            "TamperedHeader",
            "good_v3_reader_first with one bit changed in the header MAC",
            changed("good_v3_reader_first", mac_at + 7),
        ),
        "fail_v3_two_file_keys": (
            "TamperedHeader",
            "a hostile writer sealed one file key to another key and a second one to the "
            "reader; the stream and the MAC use the first",
            seal_v3_raw(
                small,
                [SealedBox(other).encrypt(key_a), SealedBox(public).encrypt(key_b)],
                key_a,
            ),
        ),
        "fail_v3_header_not_the_ad": (
            "TamperedChunk",
            "a valid header and MAC, but the chunks' AD leaves out the MAC",
            seal_v3_raw(small, [SealedBox(public).encrypt(key_a)], key_a, without_mac_in_ad=True),
        ),
        "fail_v3_truncated_in_stanzas": (
            "TruncatedFile",
            "good_v3_reader_first cut inside its second stanza",
            first[: stanza_start(1) + 30],
        ),
        "fail_v3_version_byte_changed": (
            "WrongKey",
            "good_v3_reader_first with its version byte set to 2: read as one sealed key, "
            "the count and 79 bytes of the first stanza open with no key",
            changed("good_v3_reader_first", count_at - 1, crypto.SOURCE_VERSION),
        ),
        "fail_v3_source_after_message": (
            "MalformedPayload",
            "validly sealed; a SOURCE record after MESSAGE (it may only be the third record)",
            seal_v3(pad(b"".join([*plain[:3], source, plain[3]])), [public]),
        ),
        "fail_v3_source_twice": (
            "MalformedPayload",
            "validly sealed; two SOURCE records",
            seal_v3(pad(b"".join([*plain[:2], source, source, *plain[2:]])), [public]),
        ),
    }


def make_v3(public: PublicKey) -> None:
    remove_stale("v3")
    reply_public_key = bytes(source_keys().reply_public_key)
    sealed: dict[str, bytes] = {}
    for name, good in good_v3(reply_public_key).items():
        payload = write_payload(good.sub)
        sealed[name] = seal_v3(payload, recipients_with(public, good.others, good.reader_at))
        (VECTORS / f"{name}.sealed").write_bytes(sealed[name])
        write_json(VECTORS / f"{name}.expected.json", expected_v3_json(good, payload, sealed[name]))
    for name, (error, why, data) in fail_v3_vectors(public, reply_public_key, sealed).items():
        write_fail(name, ".sealed", error, why, data)


# --- the LANGUAGE record: the language of the pages the source used ----------------------

LANGUAGE = 0x81


def good_lang(reply_public_key: bytes) -> dict[str, tuple[int, Submission]]:
    """name -> (format version, submission): what the spool writes (version 3), and the
    record in a version 1 file, where it is as optional as anywhere."""
    return {
        "good_lang_v3_swahili_with_codename": (
            V3,
            Submission(
                message="Pembe za ndovu zinavushwa usiku kupitia lango la kaskazini.",
                attachments=(Attachment("picha.jpg", "image/jpeg", filler("lang photo", 1500)),),
                source=(records.FIRST_CONTACT, reply_public_key),
                language="sw",
            ),
        ),
        "good_lang_v3_arabic_without_codename": (
            V3,
            Submission(message="شاحنات العاج تغادر ليلاً.", language="ar"),
        ),
        "good_lang_v3_chinese_with_script": (
            V3,
            Submission(
                message="象牙在夜里运出。",
                source=(records.FOLLOW_UP, reply_public_key),
                language="zh-Hans",
            ),
        ),
        "good_lang_v1_french": (
            crypto.VERSION,
            Submission(message="Les camions partent la nuit.", language="fr"),
        ),
    }


def expected_lang_json(
    version: int, sub: Submission, payload: bytes, sealed: bytes
) -> dict[str, object]:
    source = {} if sub.source is None else {"source": expected_source(sub.source)}
    v3 = {"version": V3, "recipients": 1} if version == V3 else {}
    return {**v3, **source, "language": sub.language, **expected_json(sub, payload, sealed)}


def fail_lang_vectors(public: PublicKey) -> dict[str, tuple[str, str, bytes]]:
    """name -> (expected error class, why, file bytes): LANGUAGE records that break a rule."""
    start = top_level_records(Submission())[:2]
    message = record(records.MESSAGE, b"m")
    empty_manifest = record(records.MANIFEST, bytes(4))
    source = record(
        records.SOURCE, source_body(records.FIRST_CONTACT, bytes(source_keys().reply_public_key))
    )

    def sealed(*parts: bytes, version: int = V3) -> bytes:
        payload = pad(b"".join([*start, *parts]))
        return seal_v3(payload, [public]) if version == V3 else seal(payload, public, version)

    malformed = "MalformedPayload"
    return {
        "fail_lang_not_a_tag": (
            malformed,
            "a LANGUAGE record holding 'sw ke' (a space is not part of a BCP 47 tag)",
            sealed(record(LANGUAGE, b"sw ke"), message, empty_manifest),
        ),
        "fail_lang_empty": (
            malformed,
            "an empty LANGUAGE record",
            sealed(record(LANGUAGE, b""), message, empty_manifest),
        ),
        "fail_lang_too_long": (
            malformed,
            "a LANGUAGE record of 36 bytes, well-formed otherwise (the limit is 35)",
            sealed(
                record(LANGUAGE, b"sw-abcdefgh-abcdefgh-abcdefgh-abcdef"), message, empty_manifest
            ),
        ),
        "fail_lang_after_message": (
            malformed,
            "a LANGUAGE record after the MESSAGE record (it must come before any content)",
            sealed(message, record(LANGUAGE, b"sw"), empty_manifest),
        ),
        "fail_lang_twice": (
            malformed,
            "two LANGUAGE records",
            sealed(record(LANGUAGE, b"sw"), record(LANGUAGE, b"fr"), message, empty_manifest),
        ),
        "fail_lang_before_source": (
            malformed,
            "a version 3 LANGUAGE record before the SOURCE record (SOURCE must be third)",
            sealed(record(LANGUAGE, b"sw"), source, message, empty_manifest),
        ),
    }


def make_lang(public: PublicKey) -> None:
    remove_stale("lang")
    reply_public_key = bytes(source_keys().reply_public_key)
    for name, (version, sub) in good_lang(reply_public_key).items():
        payload = write_payload(sub)
        sealed = seal_v3(payload, [public]) if version == V3 else seal(payload, public, version)
        (VECTORS / f"{name}.sealed").write_bytes(sealed)
        write_json(
            VECTORS / f"{name}.expected.json", expected_lang_json(version, sub, payload, sealed)
        )
    for name, (error, why, data) in fail_lang_vectors(public).items():
        write_fail(name, ".sealed", error, why, data)


# --- writing ------------------------------------------------------------------------------


def write_json(path: Path, data: dict[str, object]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_fail(name: str, suffix: str, error: str, why: str, data: bytes) -> None:
    (VECTORS / f"{name}{suffix}").write_bytes(data)
    (VECTORS / f"{name}.expected").write_text(f"{error}\n{why}\n", encoding="utf-8")


def remove_stale(which: str) -> None:
    for pattern in ("*.sealed", "*.reply", "*.expected*", SOURCE_FILE):
        for stale in VECTORS.glob(pattern):
            if vector_set(stale.name) == which:
                stale.unlink()


def make_v1(public: PublicKey) -> None:
    remove_stale("v1")
    payloads: dict[str, bytes] = {}
    sealed: dict[str, bytes] = {}
    for name, sub in GOOD.items():
        payloads[name] = write_payload(sub)
        sealed[name] = seal(payloads[name], public)
        (VECTORS / f"{name}.sealed").write_bytes(sealed[name])
        write_json(
            VECTORS / f"{name}.expected.json", expected_json(sub, payloads[name], sealed[name])
        )
    for name, (error, why, data) in fail_vectors(public, payloads, sealed).items():
        write_fail(name, ".sealed", error, why, data)


def make_v2(public: PublicKey) -> None:
    remove_stale("v2")
    keys_ = source_keys()
    write_json(VECTORS / SOURCE_FILE, source_json(keys_))
    sealed: dict[str, bytes] = {}
    for name, sub in good_v2(bytes(keys_.reply_public_key)).items():
        payload = write_payload(sub)
        sealed[name] = seal(payload, public, crypto.SOURCE_VERSION)
        (VECTORS / f"{name}.sealed").write_bytes(sealed[name])
        write_json(VECTORS / f"{name}.expected.json", expected_v2_json(sub, payload, sealed[name]))

    reply_payloads: dict[str, bytes] = {}
    reply_files: dict[str, bytes] = {}
    for name, message in REPLIES.items():
        data = replies.seal_reply(message, keys_.reply_public_key, DAY, REFERENCE)
        chunks = crypto.open_payload(
            io.BytesIO(data), keys_.reply_key, magic=replies.REPLY_MAGIC, versions=frozenset({1})
        )
        payload = b"".join(chunks)
        if payload != encode_payload(Submission(message=message, receipt=REFERENCE)):
            sys.exit("seal_reply and the FORMAT.md encoder disagree: fix one of them")
        reply_payloads[name], reply_files[name] = payload, data
        (VECTORS / f"{name}.reply").write_bytes(data)
        write_json(
            VECTORS / f"{name}.expected.json", expected_reply_json(message, keys_, payload, data)
        )

    for name, (error, why, data) in fail_v2_vectors(
        public, keys_, sealed, reply_files["good_reply_short"]
    ).items():
        write_fail(name, ".sealed", error, why, data)
    for name, (error, why, data) in fail_reply_vectors(keys_, reply_files, reply_payloads).items():
        write_fail(name, ".reply", error, why, data)


# --- signed reply files (--only signed) -------------------------------------------------
SIGNED_VECTORS = VECTORS / "signed"
SIGNED_MESSAGE = "Signed by the reviewer. Meet nobody you do not know.\n"


def make_signed() -> None:
    """tests/vectors/signed/: the reviewer's test signing key, and reply files for the
    source of source_codename.json: one good, and each way a signature can fail."""
    from nacl.signing import SigningKey

    from sealdrop import signing

    SIGNED_VECTORS.mkdir(exist_ok=True)
    for stale in SIGNED_VECTORS.iterdir():
        stale.unlink()
    signer = SigningKey.generate()
    (SIGNED_VECTORS / "reply-signing.key").write_text(
        signing.encode_signing_secret_key(signer, PASSPHRASE, keys.KdfCost.MIN)
    )
    (SIGNED_VECTORS / "reply-signing.pub").write_text(
        signing.encode_signing_public_key(signer.verify_key) + "\n"
    )
    (SIGNED_VECTORS / "reply_signing_seed.hex").write_text(bytes(signer).hex() + "\n")
    keys_ = source_keys()
    mailbox = keys_.mailbox_id
    sealed = replies.seal_reply(SIGNED_MESSAGE, keys_.reply_public_key, DAY, REFERENCE)
    good = replies.sign_reply(sealed, mailbox, signer)
    prefix = replies.SIGNED_PREFIX_BYTES
    bad_signature = bytearray(good)
    bad_signature[prefix - 1] ^= 0x01
    altered = bytearray(good)
    altered[-1] ^= 0x01
    other_mailbox = replies.sign_reply(sealed, bytes(reversed(mailbox)), signer)
    files = {
        "good_signed_reply": (good, ""),
        "fail_signed_unsigned": (sealed, "an unsigned reply (as written before signatures)"),
        "fail_signed_bad_signature": (bytes(bad_signature), "the signature's last bit flipped"),
        "fail_signed_by_another_key": (
            replies.sign_reply(sealed, mailbox, SigningKey.generate()),
            "the same sealed reply, re-signed by a key that is not the reviewer's",
        ),
        "fail_signed_for_another_mailbox": (
            other_mailbox,
            "signed by the reviewer for another mailbox id, filed under this one",
        ),
        "fail_signed_altered_after_signing": (bytes(altered), "the sealed part's last bit flipped"),
        "fail_signed_bad_version": (good[:8] + b"\x02" + good[9:], "version byte 02"),
    }
    for name, (data, why) in files.items():
        (SIGNED_VECTORS / f"{name}.reply").write_bytes(data)
        if name.startswith("good_"):
            write_json(
                SIGNED_VECTORS / f"{name}.expected.json",
                {"message": SIGNED_MESSAGE, "day": DAY, "reference": REFERENCE},
            )
        else:
            (SIGNED_VECTORS / f"{name}.expected").write_text(f"ReplyNotSigned\n{why}\n")


# --- key files (--only keys) -------------------------------------------------------
KEY_VECTORS = VECTORS / "keys"
# docs/FORMAT.md's fixed public key (the bytes 00..1f): valid, and not the vectors' key.
OTHER_PUBLIC = "sealdrop-pub1aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypzmwvzfq"


def key_file_vectors(pub: str, key: str) -> dict[str, tuple[str, str, str]]:
    """name -> (expected: "ok" or an error class, why, file text), every one a small edit
    of the vectors' own key pair, so the set is the same on every run."""
    header, label_line, blob = key.splitlines()
    label_body = label_line[len(keys.PUBLIC_KEY_LABEL) :]
    nbsp = "\u00a0"

    def secret(*lines: str, end: str = "\n") -> str:
        return end.join(lines) + end

    altered_blob = base64.b64encode(
        bytes(b ^ (1 if i == 99 else 0) for i, b in enumerate(base64.b64decode(blob)))
    ).decode("ascii")
    costly = bytearray(base64.b64decode(blob))
    costly[16:20] = (1000).to_bytes(4, "big")
    costly_blob = base64.b64encode(bytes(costly)).decode("ascii")
    return {
        "good_pub_as_written.pub": ("ok", "exactly what keygen writes", pub + "\n"),
        "good_pub_crlf.pub": ("ok", "CRLF line ending", pub + "\r\n"),
        "good_pub_no_newline.pub": ("ok", "no final newline", pub),
        "good_pub_blanks_around.pub": (
            "ok",
            "spaces and tabs around the line, blank lines before and after it",
            "\n \t\n\t " + pub + " \t\n\n",
        ),
        "fail_pub_nbsp_before.pub": (
            "MalformedKey",
            "a no-break space before the key",
            nbsp + pub + "\n",
        ),
        "fail_pub_nbsp_after.pub": (
            "MalformedKey",
            "a no-break space after the key",
            pub + nbsp + "\n",
        ),
        "fail_pub_bom.pub": (
            "MalformedKey",
            "a UTF-8 byte-order mark first",
            "\ufeff" + pub + "\n",
        ),
        "fail_pub_bare_cr.pub": ("MalformedKey", "a bare CR line ending", pub + "\r"),
        "fail_pub_vertical_tab.pub": (
            "MalformedKey",
            "a vertical tab (not a blank)",
            "\x0b" + pub + "\n",
        ),
        "fail_pub_space_inside.pub": (
            "MalformedKey",
            "a space inside the key",
            pub[:30] + " " + pub[30:] + "\n",
        ),
        "fail_pub_two_lines.pub": (
            "MalformedKey",
            "the key twice, on two lines",
            pub + "\n" + pub + "\n",
        ),
        "fail_pub_uppercase.pub": ("MalformedKey", "the key in upper case", pub.upper() + "\n"),
        "fail_pub_truncated.pub": ("MalformedKey", "the last character missing", pub[:-1] + "\n"),
        "fail_pub_checksum.pub": (
            "KeyChecksumMismatch",
            "one character changed",
            pub[:40] + ("b" if pub[40] != "b" else "c") + pub[41:] + "\n",
        ),
        "fail_pub_is_secret_key.pub": ("IsSecretKey", "the secret key file given as public", key),
        "good_key_as_written.key": ("ok", "exactly what keygen writes", key),
        "good_key_crlf.key": (
            "ok",
            "CRLF line endings",
            secret(header, label_line, blob, end="\r\n"),
        ),
        "good_key_no_newline.key": ("ok", "no final newline", key.rstrip("\n")),
        "good_key_blanks_around.key": (
            "ok",
            "spaces and tabs around each line, blank lines before and after",
            "\n\n " + secret(header + "\t", "\t" + label_line + " ", " " + blob) + " \n\n",
        ),
        "fail_key_bare_cr.key": (
            "MalformedKey",
            "bare CR line endings",
            secret(header, label_line, blob, end="\r"),
        ),
        "fail_key_label_no_space.key": (
            "MalformedKey",
            "'public key:' with no space before the key",
            secret(header, "public key:" + label_body, blob),
        ),
        "fail_key_label_two_spaces.key": (
            "MalformedKey",
            "two spaces after 'public key:'",
            secret(header, "public key:  " + label_body, blob),
        ),
        "fail_key_label_tab.key": (
            "MalformedKey",
            "a tab after 'public key:'",
            secret(header, "public key:\t" + label_body, blob),
        ),
        "fail_key_label_nbsp.key": (
            "MalformedKey",
            "a no-break space after 'public key:'",
            secret(header, "public key:" + nbsp + label_body, blob),
        ),
        "fail_key_label_capital.key": (
            "MalformedKey",
            "'Public key: ' with a capital P",
            secret(header, "P" + label_line[1:], blob),
        ),
        "fail_key_blank_line_inside.key": (
            "MalformedKey",
            "a blank line between the header and the public key line",
            secret(header, "", label_line, blob),
        ),
        "fail_key_nul.key": (
            "MalformedKey",
            "a NUL at the end of line 3",
            secret(header, label_line, blob + "\x00"),
        ),
        "fail_key_is_public_key.key": (
            "IsPublicKey",
            "the public key file given as secret",
            pub + "\n",
        ),
        "fail_key_unknown_version.key": (
            "UnsupportedKeyVersion",
            "header 'sealdrop secret key v2'",
            secret("sealdrop secret key v2", label_line, blob),
        ),
        "fail_key_costs.key": (
            "KdfCostRefused",
            "opslimit 1000 stored: refused before any derivation",
            secret(header, label_line, costly_blob),
        ),
        "fail_key_box_altered.key": (
            "WrongPassphrase",
            "the last byte of the sealed key changed (indistinguishable from a wrong passphrase)",
            secret(header, label_line, altered_blob),
        ),
        "fail_key_other_public_key.key": (
            "KeyPairMismatch",
            "line 2 names another valid public key",
            secret(header, keys.PUBLIC_KEY_LABEL + OTHER_PUBLIC, blob),
        ),
    }


def signing_file_vectors(pub: str, key: str) -> dict[str, tuple[str, str, str]]:
    """The same text rules on the reply-signing key files (`_sig_` in their names)."""
    header, label_line, blob = key.splitlines()
    label_body = label_line[len(keys.PUBLIC_KEY_LABEL) :]
    return {
        "good_sig_crlf.pub": ("ok", "CRLF line ending", pub + "\r\n"),
        "fail_sig_nbsp_after.pub": (
            "MalformedKey",
            "a no-break space after the key",
            pub + "\u00a0\n",
        ),
        "fail_sig_bare_cr.pub": ("MalformedKey", "a bare CR line ending", pub + "\r"),
        "good_sig_crlf.key": (
            "ok",
            "CRLF line endings",
            "\r\n".join([header, label_line, blob, ""]),
        ),
        "fail_sig_bare_cr.key": (
            "MalformedKey",
            "bare CR line endings",
            "\r".join([header, label_line, blob, ""]),
        ),
        "fail_sig_label_two_spaces.key": (
            "MalformedKey",
            "two spaces after 'public key:'",
            "\n".join([header, "public key:  " + label_body, blob, ""]),
        ),
    }


def make_keys() -> None:
    """tests/vectors/keys/: the key-file text rules, each case a file and its outcome."""
    pub = (VECTORS / keys.PUBLIC_KEY_FILENAME).read_text(encoding="ascii").strip()
    key = (VECTORS / keys.SECRET_KEY_FILENAME).read_text(encoding="ascii")
    signed = VECTORS / "signed"
    sig_pub = (signed / "reply-signing.pub").read_text(encoding="ascii").strip()
    sig_key = (signed / "reply-signing.key").read_text(encoding="ascii")
    KEY_VECTORS.mkdir(exist_ok=True)
    for stale in KEY_VECTORS.iterdir():
        stale.unlink()
    every = key_file_vectors(pub, key) | signing_file_vectors(sig_pub, sig_key)
    for name, (expected, why, text) in every.items():
        (KEY_VECTORS / name).write_bytes(text.encode("utf-8"))
        (KEY_VECTORS / (name + ".expected")).write_text(f"{expected}\n{why}\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=("v1", "v2", "cut", "v3", "keys", "signed", "lang"),
        help="v1: the version 1 vectors; v2: version 2 and reply files; cut: cut uploads; "
        "v3: version 3 (several reviewer keys); keys: key-file text rules (tests/vectors/keys); "
        "signed: signed reply files (tests/vectors/signed); lang: the LANGUAGE record "
        "(each leaves the other sets untouched)",
    )
    args = parser.parse_args(argv)
    VECTORS.mkdir(exist_ok=True)
    key_path = VECTORS / keys.SECRET_KEY_FILENAME
    if not key_path.exists():
        keys.write_key_pair(VECTORS, PASSPHRASE, cost=keys.KdfCost.MIN)
    (VECTORS / "PASSPHRASE").write_text(PASSPHRASE, encoding="ascii")
    secret = keys.load_secret_key(key_path, PASSPHRASE)
    (VECTORS / "reviewer_secret_key.hex").write_text(bytes(secret).hex() + "\n")
    public = secret.public_key

    if args.only in (None, "v1"):
        make_v1(public)
    if args.only in (None, "v2"):
        make_v2(public)
    if args.only in (None, "cut"):
        make_cut(public)
    if args.only in (None, "v3"):
        make_v3(public)
    if args.only in (None, "keys"):
        make_keys()
    if args.only in (None, "signed"):
        make_signed()
    if args.only in (None, "lang"):
        make_lang(public)

    for path in sorted([*VECTORS.glob("*.sealed"), *VECTORS.glob("*.reply")]):
        assert path.stat().st_size < 300_000, path
        print(f"{path.stat().st_size:8d}  {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
