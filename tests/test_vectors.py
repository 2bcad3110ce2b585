"""The committed spool format vectors: each good one opens to exactly its expected
content, each fail one is refused with exactly its documented error class.

The vectors were made by tests/make_vectors.py; see tests/vectors/README.md. The
last test here reads the good vectors with a decoder written only from
docs/FORMAT.md and raw libsodium calls, so the document is checked too.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from nacl import bindings
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from sealdrop import codename, crypto, keys, records, replies

VECTORS = Path(__file__).resolve().parent / "vectors"
GOOD = sorted(p.stem for p in VECTORS.glob("good_*.sealed"))
FAIL = sorted(p.stem for p in VECTORS.glob("fail_*.sealed"))
GOOD_REPLIES = sorted(p.stem for p in VECTORS.glob("good_*.reply"))
FAIL_REPLIES = sorted(p.stem for p in VECTORS.glob("fail_*.reply"))
SOURCE = json.loads((VECTORS / "source_codename.json").read_text(encoding="utf-8"))
ERRORS: dict[str, type[crypto.SpoolFileError]] = {
    cls.__name__: cls
    for cls in (
        crypto.NotASealdropFile,
        crypto.UnsupportedVersion,
        crypto.WrongKey,
        crypto.TamperedHeader,
        crypto.TruncatedFile,
        crypto.TamperedChunk,
        crypto.TrailingData,
        crypto.MalformedStream,
        records.MalformedPayload,
    )
}


CUT_NAMES = {1: "message", 2: "attachment", 3: "between parts"}


@pytest.fixture(scope="module")
def secret_key() -> PrivateKey:
    passphrase = (VECTORS / "PASSPHRASE").read_text(encoding="ascii")
    return keys.load_secret_key(VECTORS / "reviewer.key", passphrase)


@pytest.fixture(scope="module")
def reply_key() -> PrivateKey:
    return PrivateKey(bytes.fromhex(SOURCE["reply_secret_key"]))


def open_vector(name: str, key: PrivateKey) -> list[records.Event]:
    data = (VECTORS / f"{name}.sealed").read_bytes()
    payload = crypto.open_payload(io.BytesIO(data), key)
    return list(records.read_payload(payload, payload.version))


def outcome(events: list[records.Event]) -> dict[str, Any]:
    """The events as the expected JSON describes a submission."""
    result: dict[str, Any] = {"message": "", "attachments": [], "skipped_records": []}
    content = bytearray()
    for event in events:
        if isinstance(event, records.Day):
            result["day"] = event.day
        elif isinstance(event, records.Receipt):
            result["receipt"] = event.receipt
        elif isinstance(event, records.SourceIdentity):
            assert "source" not in result
            result["source"] = {
                "kind": event.kind,
                "kind_name": {1: "first contact", 2: "follow-up"}[event.kind],
                "reply_public_key": event.reply_public_key.hex(),
                "mailbox_id": event.mailbox_id.hex(),
            }
        elif isinstance(event, records.SourceLanguage):
            assert "language" not in result
            result["language"] = event.tag
        elif isinstance(event, records.MessageText):
            result["message"] += event.text
        elif isinstance(event, records.AttachmentStart):
            assert event.index == len(result["attachments"])
            result["attachments"].append({"name": event.name, "media_type": event.media_type})
            content = bytearray()
        elif isinstance(event, records.AttachmentBytes):
            content += event.data
        elif isinstance(event, records.AttachmentDone):
            entry = result["attachments"][event.index]
            entry["size"] = event.size
            entry["sha256"] = event.sha256.hex()
            assert len(content) == event.size
            assert hashlib.sha256(content).digest() == event.sha256
            if event.size <= 4096:
                entry["content_base64"] = base64.b64encode(content).decode("ascii")
        elif isinstance(event, records.SkippedRecord):
            result["skipped_records"].append({"type": event.record_type, "length": event.length})
        elif isinstance(event, records.UploadCut):
            assert "cut" not in result
            result["cut"] = {
                "where": event.where,
                "where_name": CUT_NAMES[event.where],
                "index": event.index,
                "received": event.received,
            }
    return result


def test_the_vector_set_is_complete() -> None:
    required = {
        "good_empty_message",
        "good_one_byte",
        "good_exactly_one_chunk",
        "good_chunk_minus_one",
        "good_chunk_plus_one",
        "good_several_attachments",
        "good_unicode_names",
        "good_hostile_name",
        "good_unknown_optional_record",
        "fail_truncated_in_header",
        "fail_truncated_mid_chunk",
        "fail_truncated_at_chunk_boundary",
        "fail_flipped_bit",
        "fail_trailing_data",
        "fail_wrong_key",
        "fail_bad_version",
        "fail_not_ours",
        "fail_swapped_chunks",
        "fail_empty_final_chunk",
        "fail_unknown_critical_record",
        "fail_manifest_mismatch",
        "good_v2_first_contact",
        "good_v2_follow_up",
        "fail_v2_no_source",
        "fail_v2_source_wrong_mailbox",
        "fail_v2_source_bad_kind",
        "fail_v2_source_short",
        "fail_v2_record_in_version_1",
        "fail_v2_version_byte_changed",
        "fail_v2_reply_file",
        "good_cut_in_message",
        "good_cut_at_file_start",
        "good_cut_mid_file",
        "good_cut_at_chunk_boundary",
        "good_cut_between_parts",
        "good_cut_v2_follow_up",
        "fail_cut_after_attachment_end",
        "fail_cut_then_attachment",
        "fail_cut_then_optional_record",
        "fail_cut_in_message_after_attachment",
        "fail_cut_wrong_count",
        "fail_cut_manifest_claims_whole_file",
        "fail_cut_no_content",
        "good_v3_one_key",
        "good_v3_reader_first",
        "good_v3_reader_middle",
        "good_v3_reader_last",
        "fail_v3_wrong_key",
        "fail_v3_own_stanza_altered",
        "fail_v3_other_stanza_altered",
        "fail_v3_stanzas_reordered",
        "fail_v3_count_decreased",
        "fail_v3_count_increased",
        "fail_v3_count_above_limit",
        "fail_v3_two_file_keys",
        "good_lang_v3_swahili_with_codename",
        "good_lang_v3_arabic_without_codename",
        "good_lang_v1_french",
        "fail_lang_not_a_tag",
        "fail_lang_after_message",
        "fail_lang_twice",
        "fail_lang_before_source",
    }
    required_replies = {
        "good_reply_short",
        "good_reply_longest",
        "fail_reply_truncated_mid_chunk",
        "fail_reply_flipped_bit",
        "fail_reply_wrong_key",
        "fail_reply_submission_magic",
    }
    assert required <= set(GOOD) | set(FAIL)
    assert required_replies <= set(GOOD_REPLIES) | set(FAIL_REPLIES)
    for name in GOOD + GOOD_REPLIES:
        assert (VECTORS / f"{name}.expected.json").is_file()
    for name in FAIL + FAIL_REPLIES:
        assert (VECTORS / f"{name}.expected").is_file()
    for path in [*VECTORS.glob("*.sealed"), *VECTORS.glob("*.reply")]:
        assert path.stat().st_size < 300_000


def test_the_raw_secret_key_matches_the_key_file(secret_key: PrivateKey) -> None:
    raw = bytes.fromhex((VECTORS / "reviewer_secret_key.hex").read_text())
    assert raw == bytes(secret_key)
    public = keys.load_public_key(VECTORS / "reviewer.pub")
    assert public == secret_key.public_key


@pytest.mark.parametrize("name", GOOD)
def test_good_vector_opens_to_its_expected_content(name: str, secret_key: PrivateKey) -> None:
    expected = json.loads((VECTORS / f"{name}.expected.json").read_text(encoding="utf-8"))
    data = (VECTORS / f"{name}.sealed").read_bytes()
    assert len(data) == expected["file_size"]
    opened = crypto.open_payload(io.BytesIO(data), secret_key)
    chunks = list(opened)
    assert sum(len(chunk) for chunk in chunks) == expected["payload_length"]
    # A list of chunks no longer carries the header's version: hand it over as
    # sealdrop's reader does when it streams (version 1 vectors predate the field).
    assert opened.version == expected.get("version", 1)
    assert crypto.read_recipient_count(io.BytesIO(data)) == expected.get("recipients", 1)

    events = list(records.read_payload(chunks, opened.version))

    assert isinstance(events[-1], records.PayloadEnd)
    assert not any(isinstance(event, records.PayloadEnd) for event in events[:-1])
    got = outcome(events)
    for field in ("day", "receipt", "message", "attachments", "skipped_records"):
        assert got[field] == expected[field], field
    assert got.get("source") == expected.get("source")
    assert got.get("language") == expected.get("language")
    assert got.get("cut") == expected.get("cut")
    assert events[-1].cut == (
        None
        if "cut" not in expected
        else next(e for e in events if isinstance(e, records.UploadCut))
    )
    if "source" in expected:
        # The SOURCE record is the third event, right after the day and the receipt.
        assert isinstance(events[2], records.SourceIdentity)
        reply_public = bytes.fromhex(expected["source"]["reply_public_key"])
        assert records.mailbox_id_for(reply_public).hex() == expected["source"]["mailbox_id"]
    summaries = [(a.size, a.sha256.hex()) for a in events[-1].attachments]
    assert summaries == [(a["size"], a["sha256"]) for a in expected["attachments"]]


@pytest.mark.parametrize("name", FAIL)
def test_fail_vector_raises_exactly_its_error(name: str, secret_key: PrivateKey) -> None:
    expected = (VECTORS / f"{name}.expected").read_text(encoding="utf-8").splitlines()[0]
    error_class = ERRORS[expected]
    events: list[records.Event] = []
    data = (VECTORS / f"{name}.sealed").read_bytes()

    with pytest.raises(crypto.SpoolFileError) as raised:
        payload = crypto.open_payload(io.BytesIO(data), secret_key)
        for event in records.read_payload(payload, payload.version):
            events.append(event)

    assert type(raised.value) is error_class
    assert not any(isinstance(event, records.PayloadEnd) for event in events)


@pytest.mark.parametrize("name", GOOD)
def test_the_format_document_suffices_to_read_good_vectors(
    name: str, secret_key: PrivateKey
) -> None:
    expected = json.loads((VECTORS / f"{name}.expected.json").read_text(encoding="utf-8"))
    data = (VECTORS / f"{name}.sealed").read_bytes()
    payload = _decrypt_as_documented(data, bytes(secret_key))
    documented = {
        "day": expected["day"],
        "receipt": expected["receipt"],
        "message": expected["message"],
        "attachments": [(a["name"], a["media_type"], a["sha256"]) for a in expected["attachments"]],
    }
    if "source" in expected:
        documented["source"] = (
            expected["source"]["kind"],
            expected["source"]["reply_public_key"],
            expected["source"]["mailbox_id"],
        )
    if "cut" in expected:
        documented["cut"] = (expected["cut"]["where"], expected["cut"]["received"])
    if expected.get("language"):
        documented["language"] = expected["language"]
    assert _parse_as_documented(payload, version=data[8]) == documented


# --- reply files and the codename they are sealed to -------------------------------------


def test_the_source_codename_derives_the_reply_key_of_the_vectors() -> None:
    assert codename.normalise(SOURCE["codename"].upper()) == SOURCE["codename"]
    cost = keys.KdfCost(SOURCE["opslimit"], SOURCE["memlimit"])
    derived = codename.derive(SOURCE["codename"], bytes.fromhex(SOURCE["salt"]), cost)
    assert bytes(derived.reply_key).hex() == SOURCE["reply_secret_key"]
    assert bytes(derived.reply_public_key).hex() == SOURCE["reply_public_key"]
    assert derived.mailbox == SOURCE["mailbox_id"]


def test_the_format_document_suffices_to_derive_the_reply_key() -> None:
    words = SOURCE["codename"].split(" ")
    checksum = hashlib.blake2b(
        " ".join(words[:7]).encode("ascii"), digest_size=8, person=b"sealdrop-cname1"
    ).digest()
    assert codename.word_list()[int.from_bytes(checksum, "big") % 7776] == words[7]
    master = bindings.crypto_pwhash_alg(
        32,
        SOURCE["codename"].encode("ascii"),
        bytes.fromhex(SOURCE["salt"]),
        SOURCE["opslimit"],
        SOURCE["memlimit"],
        bindings.crypto_pwhash_ALG_ARGON2ID13,
    )
    reply_sk = hashlib.blake2b(b"", digest_size=32, key=master, person=b"sealdrop-reply1")
    reply_pk = bindings.crypto_scalarmult_base(reply_sk.digest())
    mailbox = hashlib.blake2b(reply_pk, digest_size=16, person=b"sealdrop-mbox1").hexdigest()
    assert reply_sk.hexdigest() == SOURCE["reply_secret_key"]
    assert reply_pk.hex() == SOURCE["reply_public_key"]
    assert mailbox == SOURCE["mailbox_id"]


@pytest.mark.parametrize("name", GOOD_REPLIES)
def test_good_reply_opens_to_its_expected_content(name: str, reply_key: PrivateKey) -> None:
    expected = json.loads((VECTORS / f"{name}.expected.json").read_text(encoding="utf-8"))
    data = (VECTORS / f"{name}.reply").read_bytes()
    assert len(data) == expected["file_size"]
    assert data[:8].decode("ascii") == expected["magic"]
    assert bytes(reply_key.public_key).hex() == expected["reply_public_key"]
    assert replies.belongs_to(expected["mailbox_id"], reply_key.public_key)
    # What a reply file on the server would be called: found by its mailbox id.
    name_on_server = replies.reply_file_name(bytes.fromhex(expected["mailbox_id"]))
    parsed = replies.parse_reply_name(name_on_server)
    assert parsed is not None and parsed[0] == expected["mailbox_id"]

    opened = crypto.open_payload(
        io.BytesIO(data), reply_key, magic=replies.REPLY_MAGIC, versions=frozenset({1})
    )
    chunks = list(opened)
    assert opened.version == expected["version"]
    assert sum(len(chunk) for chunk in chunks) == expected["payload_length"]
    got = outcome(list(records.read_payload(chunks, opened.version)))
    assert (got["day"], got["receipt"], got["message"]) == (
        expected["day"],
        expected["reference"],
        expected["message"],
    )
    assert got["attachments"] == [] and "source" not in got

    reply = replies.open_reply(data, reply_key, "0" * 32)
    assert (reply.day, reply.reference, reply.message) == (
        expected["day"],
        expected["reference"],
        expected["message"],
    )


@pytest.mark.parametrize("name", FAIL_REPLIES)
def test_fail_reply_raises_exactly_its_error(name: str, reply_key: PrivateKey) -> None:
    expected = (VECTORS / f"{name}.expected").read_text(encoding="utf-8").splitlines()[0]
    data = (VECTORS / f"{name}.reply").read_bytes()

    with pytest.raises(crypto.SpoolFileError) as raised:
        replies.open_reply(data, reply_key, "0" * 32)

    assert type(raised.value) is ERRORS[expected]


@pytest.mark.parametrize("name", GOOD_REPLIES)
def test_the_format_document_suffices_to_read_good_replies(
    name: str, reply_key: PrivateKey
) -> None:
    expected = json.loads((VECTORS / f"{name}.expected.json").read_text(encoding="utf-8"))
    data = (VECTORS / f"{name}.reply").read_bytes()
    payload = _decrypt_as_documented(data, bytes(reply_key), magic=b"sealrply")
    assert _parse_as_documented(payload) == {
        "day": expected["day"],
        "receipt": expected["reference"],
        "message": expected["message"],
        "attachments": [],
    }


# --- a decoder written from docs/FORMAT.md only ----------------------------------------


def _decrypt_as_documented(data: bytes, raw_secret: bytes, magic: bytes = b"sealdrop") -> bytes:
    # Submissions are version 1, 2 (with a SOURCE record) or 3 (several recipient
    # stanzas, the SOURCE record optional); replies are version 1.
    assert data[:8] == magic and data[8] in ((1, 2, 3) if magic == b"sealdrop" else (1,))
    box = SealedBox(PrivateKey(raw_secret))
    if data[8] == 3:
        count = data[9]
        assert 1 <= count <= 16
        header = data[: 66 + 80 * count]
        stanzas = [header[10 + 80 * i : 90 + 80 * i] for i in range(count)]
        stream_header, mac = header[-56:-32], header[-32:]
        file_key = b""
        for stanza in stanzas:  # the reader's stanza is the one that opens
            try:
                file_key = box.decrypt(stanza)
                break
            except CryptoError:
                continue
        assert file_key
        # The MAC: BLAKE2b-256 of every header byte before it, keyed by the file key.
        assert (
            mac
            == hashlib.blake2b(
                header[:-32], digest_size=32, key=file_key, person=b"sealdrop-hdr3"
            ).digest()
        )
    else:
        header = data[:113]
        sealed_key, stream_header = header[9:89], header[89:113]
        file_key = box.decrypt(sealed_key)
    state = bindings.crypto_secretstream_xchacha20poly1305_state()
    bindings.crypto_secretstream_xchacha20poly1305_init_pull(state, stream_header, file_key)
    payload = bytearray()
    offset = len(header)
    while True:
        chunk = data[offset : offset + 65536 + 17]
        offset += len(chunk)
        plaintext, tag = bindings.crypto_secretstream_xchacha20poly1305_pull(state, chunk, header)
        payload += plaintext
        if tag == bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL:
            assert offset == len(data)
            return bytes(payload)
        assert tag == 0 and len(plaintext) == 65536


def _parse_as_documented(payload: bytes, version: int = 1) -> dict[str, Any]:
    result: dict[str, Any] = {"message": "", "attachments": []}
    offset = 0
    current: hashlib._Hash | None = None
    names: list[tuple[str, str]] = []
    sizes: list[int] = []
    while True:
        record_type, length = struct.unpack_from(">BI", payload, offset)
        # Only MANIFEST may follow a CUT record.
        assert "cut" not in result or record_type == 0x06
        body = payload[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if record_type == 0x01:
            result["day"] = body.decode("ascii")
        elif record_type == 0x07:
            result["receipt"] = body.decode("ascii")
        elif record_type == 0x08:
            # Versions 2 and 3, the third record: kind, reply public key, its mailbox id.
            assert version in (2, 3) and "source" not in result
            assert offset == 5 + 10 + 5 + len(result["receipt"]) + 5 + 49
            kind, reply_pk, mailbox = body[0], body[1:33], body[33:]
            assert kind in (1, 2) and len(mailbox) == 16
            assert (
                mailbox
                == hashlib.blake2b(reply_pk, digest_size=16, person=b"sealdrop-mbox1").digest()
            )
            result["source"] = (kind, reply_pk.hex(), mailbox.hex())
        elif record_type == 0x81:
            # LANGUAGE: an ASCII BCP 47 tag, once, before the message and any attachment.
            assert "language" not in result and not result["message"] and not names
            assert 2 <= length <= 35 and all(c.isalnum() or c == "-" for c in body.decode())
            result["language"] = body.decode("ascii")
        elif record_type == 0x02:
            result["message"] += body.decode("utf-8")
        elif record_type == 0x03:
            (name_length,) = struct.unpack_from(">H", body, 0)
            name = body[2 : 2 + name_length].decode("utf-8")
            media = body[4 + name_length :].decode("ascii")
            names.append((name, media))
            sizes.append(0)
            current = hashlib.sha256()
        elif record_type == 0x04:
            assert current is not None
            current.update(body)
            sizes[-1] += len(body)
        elif record_type == 0x05:
            assert current is not None and "cut" not in result
            result["attachments"].append((*names[-1], current.hexdigest()))
            current = None
        elif record_type == 0x09:
            # CUT: where (1 message, 2 in the open attachment, 3 between parts), received.
            assert "cut" not in result and length == 9
            where, received = struct.unpack(">BQ", body)
            if current is not None:
                assert where == 2 and received == sizes[-1]
                result["attachments"].append((*names[-1], current.hexdigest()))
                current = None
            else:
                assert where in (1, 3)
                assert received == (len(result["message"].encode()) if where == 1 else 0)
                assert not (where == 1 and names)
            assert result["message"] or any(sizes)
            result["cut"] = (where, received)
        elif record_type == 0x06:
            break
        else:
            assert 0x80 <= record_type <= 0xFE
    if version != 3:  # required in version 2, absent in 1, optional in 3
        assert ("source" in result) == (version == 2)
    # Padmé of the length including the first PADDING record's header, at least 16 KiB.
    exponent = (offset + 5).bit_length() - 1
    mask = (1 << (exponent - exponent.bit_length())) - 1
    padded = max((offset + 5 + mask) & ~mask, 16384)
    assert len(payload) == padded and payload[offset] == 0x00 and not any(payload[offset + 5 :])
    return result
