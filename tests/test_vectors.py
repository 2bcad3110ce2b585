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
from nacl.public import PrivateKey, SealedBox

from sealdrop import crypto, keys, records

VECTORS = Path(__file__).resolve().parent / "vectors"
GOOD = sorted(p.stem for p in VECTORS.glob("good_*.sealed"))
FAIL = sorted(p.stem for p in VECTORS.glob("fail_*.sealed"))
ERRORS: dict[str, type[crypto.SpoolFileError]] = {
    cls.__name__: cls
    for cls in (
        crypto.NotASealdropFile,
        crypto.UnsupportedVersion,
        crypto.WrongKey,
        crypto.TruncatedFile,
        crypto.TamperedChunk,
        crypto.TrailingData,
        crypto.MalformedStream,
        records.MalformedPayload,
    )
}


@pytest.fixture(scope="module")
def secret_key() -> PrivateKey:
    passphrase = (VECTORS / "PASSPHRASE").read_text(encoding="ascii")
    return keys.load_secret_key(VECTORS / "reviewer.key", passphrase)


def open_vector(name: str, key: PrivateKey) -> list[records.Event]:
    data = (VECTORS / f"{name}.sealed").read_bytes()
    return list(records.read_payload(crypto.open_payload(io.BytesIO(data), key)))


def outcome(events: list[records.Event]) -> dict[str, Any]:
    """The events as the expected JSON describes a submission."""
    result: dict[str, Any] = {"message": "", "attachments": [], "skipped_records": []}
    content = bytearray()
    for event in events:
        if isinstance(event, records.Day):
            result["day"] = event.day
        elif isinstance(event, records.Receipt):
            result["receipt"] = event.receipt
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
    }
    assert required <= set(GOOD) | set(FAIL)
    for name in GOOD:
        assert (VECTORS / f"{name}.expected.json").is_file()
    for name in FAIL:
        assert (VECTORS / f"{name}.expected").is_file()
    for path in VECTORS.glob("*.sealed"):
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
    chunks = list(crypto.open_payload(io.BytesIO(data), secret_key))
    assert sum(len(chunk) for chunk in chunks) == expected["payload_length"]

    events = list(records.read_payload(chunks))

    assert isinstance(events[-1], records.PayloadEnd)
    assert not any(isinstance(event, records.PayloadEnd) for event in events[:-1])
    got = outcome(events)
    for field in ("day", "receipt", "message", "attachments", "skipped_records"):
        assert got[field] == expected[field], field
    summaries = [(a.size, a.sha256.hex()) for a in events[-1].attachments]
    assert summaries == [(a["size"], a["sha256"]) for a in expected["attachments"]]


@pytest.mark.parametrize("name", FAIL)
def test_fail_vector_raises_exactly_its_error(name: str, secret_key: PrivateKey) -> None:
    expected = (VECTORS / f"{name}.expected").read_text(encoding="utf-8").splitlines()[0]
    error_class = ERRORS[expected]
    events: list[records.Event] = []
    data = (VECTORS / f"{name}.sealed").read_bytes()

    with pytest.raises(crypto.SpoolFileError) as raised:
        for event in records.read_payload(crypto.open_payload(io.BytesIO(data), secret_key)):
            events.append(event)

    assert type(raised.value) is error_class
    assert not any(isinstance(event, records.PayloadEnd) for event in events)


@pytest.mark.parametrize("name", GOOD)
def test_the_format_document_suffices_to_read_good_vectors(
    name: str, secret_key: PrivateKey
) -> None:
    expected = json.loads((VECTORS / f"{name}.expected.json").read_text(encoding="utf-8"))
    payload = _decrypt_as_documented((VECTORS / f"{name}.sealed").read_bytes(), bytes(secret_key))
    assert _parse_as_documented(payload) == {
        "day": expected["day"],
        "receipt": expected["receipt"],
        "message": expected["message"],
        "attachments": [(a["name"], a["media_type"], a["sha256"]) for a in expected["attachments"]],
    }


# --- a decoder written from docs/FORMAT.md only ----------------------------------------


def _decrypt_as_documented(data: bytes, raw_secret: bytes) -> bytes:
    assert data[:8] == b"sealdrop" and data[8] == 1
    header = data[:113]
    sealed_key, stream_header = header[9:89], header[89:113]
    file_key = SealedBox(PrivateKey(raw_secret)).decrypt(sealed_key)
    state = bindings.crypto_secretstream_xchacha20poly1305_state()
    bindings.crypto_secretstream_xchacha20poly1305_init_pull(state, stream_header, file_key)
    payload = bytearray()
    offset = 113
    while True:
        chunk = data[offset : offset + 65536 + 17]
        offset += len(chunk)
        plaintext, tag = bindings.crypto_secretstream_xchacha20poly1305_pull(state, chunk, header)
        payload += plaintext
        if tag == bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL:
            assert offset == len(data)
            return bytes(payload)
        assert tag == 0 and len(plaintext) == 65536


def _parse_as_documented(payload: bytes) -> dict[str, Any]:
    result: dict[str, Any] = {"message": "", "attachments": []}
    offset = 0
    current: hashlib._Hash | None = None
    names: list[tuple[str, str]] = []
    while True:
        record_type, length = struct.unpack_from(">BI", payload, offset)
        body = payload[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if record_type == 0x01:
            result["day"] = body.decode("ascii")
        elif record_type == 0x07:
            result["receipt"] = body.decode("ascii")
        elif record_type == 0x02:
            result["message"] += body.decode("utf-8")
        elif record_type == 0x03:
            (name_length,) = struct.unpack_from(">H", body, 0)
            name = body[2 : 2 + name_length].decode("utf-8")
            media = body[4 + name_length :].decode("ascii")
            names.append((name, media))
            current = hashlib.sha256()
        elif record_type == 0x04:
            assert current is not None
            current.update(body)
        elif record_type == 0x05:
            assert current is not None
            result["attachments"].append((*names[-1], current.hexdigest()))
            current = None
        elif record_type == 0x06:
            break
        else:
            assert 0x80 <= record_type <= 0xFE
    # Padmé of the length including the first PADDING record's header, at least 16 KiB.
    exponent = (offset + 5).bit_length() - 1
    mask = (1 << (exponent - exponent.bit_length())) - 1
    padded = max((offset + 5 + mask) & ~mask, 16384)
    assert len(payload) == padded and payload[offset] == 0x00 and not any(payload[offset + 5 :])
    return result
