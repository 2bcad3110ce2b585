"""Property tests: whatever bytes a reviewer is handed, the reader only ever refuses them
with a SpoolFileError (never another exception), and damaged input never reaches
PayloadEnd, the event that says a submission is complete and verified."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from sealdrop import crypto, records

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@dataclass(frozen=True)
class Sample:
    key: PrivateKey
    sealed: bytes
    payload: bytes


@pytest.fixture(scope="module")
def sample() -> Sample:
    key = PrivateKey.generate()
    sealer = crypto.PayloadSealer(key.public_key)
    payload = bytearray()
    writer = records.PayloadWriter(payload.extend, "2026-11-29", "42")
    writer.message("a message that spans")
    writer.begin_attachment("a.bin", "application/octet-stream")
    writer.attachment_data(bytes(range(256)) * 270)  # over one chunk: two chunks in all
    writer.end_attachment()
    writer.begin_attachment("b.txt", "text/plain")
    writer.attachment_data(b"second")
    writer.end_attachment()
    writer.close()
    sealed = sealer.header + sealer.update(payload) + sealer.finalize()
    assert len(sealed) > crypto.HEADER_BYTES + crypto.ENCRYPTED_CHUNK_BYTES
    return Sample(key, sealed, bytes(payload))


def outcome(data: bytes, key: PrivateKey) -> str:
    """'complete', or the name of the SpoolFileError; anything else propagates."""
    try:
        payload = crypto.open_payload(io.BytesIO(data), key)
        for event in records.read_payload(payload, payload.version):
            if isinstance(event, records.PayloadEnd):
                return "complete"
    except crypto.SpoolFileError as error:
        return type(error).__name__
    raise AssertionError("the reader stopped without PayloadEnd and without an error")


def test_the_sample_is_complete(sample: Sample) -> None:
    assert outcome(sample.sealed, sample.key) == "complete"


@FUZZ
@given(data=st.binary(max_size=2000))
def test_random_bytes_are_refused(sample: Sample, data: bytes) -> None:
    assert outcome(data, sample.key) != "complete"


@FUZZ
@given(rest=st.binary(max_size=2000))
def test_random_bytes_after_our_magic_are_refused(sample: Sample, rest: bytes) -> None:
    assert outcome(crypto.MAGIC + bytes([crypto.VERSION]) + rest, sample.key) != "complete"


@FUZZ
@given(chunks=st.binary(max_size=3000))
def test_random_chunks_after_a_valid_header_are_refused(sample: Sample, chunks: bytes) -> None:
    result = outcome(sample.sealed[: crypto.HEADER_BYTES] + chunks, sample.key)
    assert result in {"TruncatedFile", "TamperedChunk"}


@FUZZ
@given(st.data())
def test_bit_flips_are_refused(sample: Sample, data: st.DataObject) -> None:
    bits = data.draw(
        st.lists(st.integers(0, 8 * len(sample.sealed) - 1), min_size=1, max_size=3, unique=True)
    )
    damaged = bytearray(sample.sealed)
    for bit in bits:
        damaged[bit // 8] ^= 1 << (bit % 8)
    assert outcome(bytes(damaged), sample.key) != "complete"


@FUZZ
@given(st.data())
def test_truncations_are_refused(sample: Sample, data: st.DataObject) -> None:
    length = data.draw(st.integers(0, len(sample.sealed) - 1))
    assert outcome(sample.sealed[:length], sample.key) != "complete"


@FUZZ
@given(st.data())
def test_inserted_or_deleted_bytes_are_refused(sample: Sample, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(sample.sealed)))
    inserted = data.draw(st.binary(max_size=40))
    deleted = data.draw(st.integers(0, 40))
    damaged = sample.sealed[:at] + inserted + sample.sealed[at + deleted :]
    if damaged != sample.sealed:
        assert outcome(damaged, sample.key) != "complete"


# --- the record layer alone: decrypted but hostile payloads -----------------------------------
# A writer holding the file key can put anything in the payload. Authentication does not
# help here, so the property is only: no crash, only MalformedPayload.


def parse(chunks: list[bytes]) -> str:
    try:
        for event in records.read_payload(chunks, crypto.VERSION):
            if isinstance(event, records.PayloadEnd):
                return "complete"
    except records.MalformedPayload:
        return "malformed"
    raise AssertionError("the reader stopped without PayloadEnd and without an error")


@FUZZ
@given(payload=st.binary(max_size=3000), cut=st.integers(1, 700))
def test_random_payloads_never_crash_the_record_reader(payload: bytes, cut: int) -> None:
    chunks = [payload[i : i + cut] for i in range(0, len(payload), cut)]
    assert parse(chunks) == "malformed"


@FUZZ
@given(st.data())
def test_mutated_payloads_never_crash_the_record_reader(
    sample: Sample, data: st.DataObject
) -> None:
    payload = bytearray(sample.payload)
    for _ in range(data.draw(st.integers(1, 4))):
        # Mutations aimed at the record headers, where the parser's decisions are made.
        at = data.draw(st.integers(0, 120) | st.integers(0, len(payload) - 1))
        if at < len(payload):
            payload[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(64, 70_000))
    chunks = [bytes(payload[i : i + cut]) for i in range(0, len(payload), cut)]
    # Some mutations are well formed (another day, a retyped optional record, a changed
    # name): integrity is the encryption layer's job. Here: no crash, no other error.
    assert parse(chunks) in {"complete", "malformed"}
