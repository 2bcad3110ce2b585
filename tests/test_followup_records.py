"""Format version 2: the SOURCE record (reply key and mailbox id) inside the sealed payload."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from sealdrop import crypto, records
from sealdrop.storage.spool import Spool

DAY = "2026-11-29"
RECEIPT = "1234-5678"


def identity(kind: int = records.FIRST_CONTACT) -> records.SourceIdentity:
    return records.SourceIdentity.for_key(kind, bytes(PrivateKey.generate().public_key))


def payload(source: records.SourceIdentity | None, raw_source: bytes | None = None) -> bytes:
    out = bytearray()
    writer = records.PayloadWriter(out.extend, DAY, RECEIPT, source)
    if raw_source is not None:
        out += records.RECORD_HEADER.pack(records.SOURCE, len(raw_source)) + raw_source
    writer.message("hello")
    writer.close()
    return bytes(out)


def sealed(data: bytes, key: PrivateKey, version: int) -> bytes:
    sealer = crypto.PayloadSealer(key.public_key, version=version)
    return sealer.header + sealer.update(data) + sealer.finalize()


def events(data: bytes, key: PrivateKey) -> list[records.Event]:
    payload = crypto.open_payload(io.BytesIO(data), key)
    return list(records.read_payload(payload, payload.version))


def test_a_version_2_file_carries_the_source_identity_after_the_receipt() -> None:
    key = PrivateKey.generate()
    source = identity(records.FOLLOW_UP)
    got = events(sealed(payload(source), key, crypto.SOURCE_VERSION), key)
    assert isinstance(got[0], records.Day) and isinstance(got[1], records.Receipt)
    assert got[2] == source
    assert isinstance(got[-1], records.PayloadEnd)


def test_version_1_files_are_read_as_before() -> None:
    key = PrivateKey.generate()
    got = events(sealed(payload(None), key, crypto.VERSION), key)
    assert not any(isinstance(e, records.SourceIdentity) for e in got)
    assert isinstance(got[-1], records.PayloadEnd)


def test_a_source_record_in_a_version_1_file_is_refused() -> None:
    key = PrivateKey.generate()
    with pytest.raises(records.MalformedPayload, match="0x08"):
        events(sealed(payload(identity()), key, crypto.VERSION), key)


def test_a_version_2_file_without_its_source_record_is_refused() -> None:
    key = PrivateKey.generate()
    with pytest.raises(records.MalformedPayload, match="no SOURCE"):
        events(sealed(payload(None), key, crypto.SOURCE_VERSION), key)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda body: body[:-1],  # cut short
        lambda body: body + b"\x00",  # too long
        lambda body: b"\x03" + body[1:],  # unknown kind
        lambda body: body[:-1] + bytes([body[-1] ^ 1]),  # mailbox id not the key's
    ],
)
def test_a_bad_source_record_is_refused(mangle: object) -> None:
    key = PrivateKey.generate()
    body = mangle(identity().encode())  # type: ignore[operator]
    out = bytearray()
    records.PayloadWriter(out.extend, DAY, RECEIPT)
    out += records.RECORD_HEADER.pack(records.SOURCE, len(body)) + body
    tail = bytearray()
    writer = records.PayloadWriter(tail.extend, DAY, RECEIPT)
    writer.close()
    data = bytes(out) + bytes(tail[len(out) - len(body) - 5 :])
    # Only the records up to SOURCE matter: it is refused before anything after it is read.
    with pytest.raises(records.MalformedPayload, match="SOURCE"):
        events(sealed(data, key, crypto.SOURCE_VERSION), key)


def test_the_writer_refuses_a_mailbox_id_that_is_not_the_keys() -> None:
    good = identity()
    bad = records.SourceIdentity(good.kind, good.reply_public_key, bytes(16))
    with pytest.raises(ValueError, match="mailbox"):
        records.PayloadWriter(bytearray().extend, DAY, RECEIPT, bad)


def test_an_old_reader_is_told_to_upgrade_not_that_the_file_is_hostile() -> None:
    key = PrivateKey.generate()
    data = sealed(payload(identity()), key, crypto.SOURCE_VERSION)
    with pytest.raises(crypto.UnsupportedVersion, match="upgrade sealdrop"):
        list(crypto.open_payload(io.BytesIO(data), key, versions=frozenset({1})))


def test_the_spool_writes_version_3_with_a_source_record_only_with_a_source(
    tmp_path: Path,
) -> None:
    key = PrivateKey.generate()
    tmp_path.chmod(0o700)
    spool = Spool(tmp_path, key.public_key)
    source = identity()
    with spool.begin(source) as submission:
        submission.add_message("with a codename")
        submission.commit()
    with spool.begin() as submission:
        submission.add_message("without")
        submission.commit()
    versions = {}
    for path in tmp_path.glob("*.sealed"):
        data = path.read_bytes()
        got = events(data, key)
        text = "".join(e.text for e in got if isinstance(e, records.MessageText))
        versions[text] = (data[8], [e for e in got if isinstance(e, records.SourceIdentity)])
    assert versions == {"with a codename": (3, [source]), "without": (3, [])}
