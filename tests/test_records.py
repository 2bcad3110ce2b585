"""Records inside the payload (records/): the writer's output, Padmé padding, and every
rule the reader enforces. The reader takes plaintext chunks, so no encryption is needed."""

from __future__ import annotations

import hashlib
import struct

import pytest

from sealdrop import crypto, records

DAY = "2026-11-29"
RECEIPT = "1234-5678"
MIB = 1024 * 1024


def record(record_type: int, body: bytes) -> bytes:
    return struct.pack(">BI", record_type, len(body)) + body


def pad(unpadded: bytes, *, fill: int = 0, adjust: int = 0) -> bytes:
    target = records.padded_payload_length(len(unpadded)) + adjust
    return unpadded + record(records.PADDING, bytes([fill]) * (target - len(unpadded) - 5))


def begin(name: bytes, media: bytes) -> bytes:
    body = len(name).to_bytes(2, "big") + name + len(media).to_bytes(2, "big") + media
    return record(records.ATTACHMENT_BEGIN, body)


def manifest(*contents: bytes) -> bytes:
    body = len(contents).to_bytes(4, "big")
    for content in contents:
        body += len(content).to_bytes(8, "big") + hashlib.sha256(content).digest()
    return record(records.MANIFEST, body)


START = record(records.SUBMISSION, DAY.encode()) + record(records.RECEIPT, RECEIPT.encode())
ONE_ATTACHMENT = (
    begin(b"a.txt", b"text/plain")
    + record(records.ATTACHMENT_DATA, b"abc")
    + record(records.ATTACHMENT_END, b"")
)


def read(payload: bytes, chunk: int = 65536) -> list[records.Event]:
    pieces = [payload[i : i + chunk] for i in range(0, len(payload), chunk)]
    return list(records.read_payload(pieces, crypto.VERSION))


def write(build: object = None) -> bytes:
    out = bytearray()
    writer = records.PayloadWriter(out.extend, DAY, RECEIPT)
    if callable(build):
        build(writer)
    writer.close()
    return bytes(out)


def refused(payload: bytes, match: str) -> None:
    with pytest.raises(records.MalformedPayload, match=match):
        read(payload)


# --- Padmé ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "padded"),
    [
        (0, 0),
        (1, 1),
        (2, 2),
        (9, 10),  # E=3, S=2: one low bit cleared
        (1000, 1024),
        (65535, 65536),
        (65536, 65536),
        (65537, 67584),
        (100_000, 100_352),
        (2**30, 2**30),
        (2**30 + 1, 2**30 + 2**25),
    ],
)
def test_padme_known_values(length: int, padded: int) -> None:
    assert records.padme(length) == padded


def test_padme_bounds_overhead_and_is_monotonic() -> None:
    previous = 0
    for length in [*range(1, 5000), *range(2**20 - 3000, 2**20 + 3000), 2**40 + 1]:
        padded = records.padme(length)
        assert length <= padded <= length * 1.12 + 1
        assert records.padme(padded) == padded
        assert padded >= previous or length == 2**40 + 1
        previous = padded


def test_short_payloads_are_padded_to_16_kib() -> None:
    assert records.padded_payload_length(0) == 16 * 1024
    assert records.padded_payload_length(16 * 1024 - 5) == 16 * 1024
    assert records.padded_payload_length(16 * 1024 - 4) == records.padme(16 * 1024 + 1)


# --- the writer -------------------------------------------------------------------------------


def test_an_empty_submission_is_day_receipt_manifest_padding() -> None:
    payload = write()
    expected = START + record(records.MANIFEST, bytes(4))
    assert payload == pad(expected)
    assert len(payload) == 16 * 1024


def test_the_writer_output_is_the_documented_encoding() -> None:
    def build(writer: records.PayloadWriter) -> None:
        writer.message("hi ")
        writer.message("there")
        writer.begin_attachment("a.txt", "text/plain")
        writer.attachment_data(b"ab")
        writer.attachment_data(bytearray(b"c"))
        writer.end_attachment()
        writer.begin_attachment("empty", "application/octet-stream")
        writer.end_attachment()

    expected = (
        START
        + record(records.MESSAGE, b"hi ")
        + record(records.MESSAGE, b"there")
        + begin(b"a.txt", b"text/plain")
        + record(records.ATTACHMENT_DATA, b"ab")
        + record(records.ATTACHMENT_DATA, b"c")
        + record(records.ATTACHMENT_END, b"")
        + begin(b"empty", b"application/octet-stream")
        + record(records.ATTACHMENT_END, b"")
        + manifest(b"abc", b"")
    )
    assert write(build) == pad(expected)


@pytest.mark.parametrize("data", [b"", bytearray(), memoryview(b"")])
def test_empty_attachment_data_writes_no_record(data: bytes | bytearray | memoryview) -> None:
    def build(writer: records.PayloadWriter) -> None:
        writer.begin_attachment("a", "text/plain")
        writer.attachment_data(data)
        writer.end_attachment()

    payload = write(build)
    assert payload == pad(START + begin(b"a", b"text/plain") + record(5, b"") + manifest(b""))
    assert isinstance(read(payload)[-1], records.PayloadEnd)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_attachment_data_over_one_mib_is_split_into_records(kind: type) -> None:
    content = bytes(range(256)) * (MIB // 256) + b"tail"

    def build(writer: records.PayloadWriter) -> None:
        writer.begin_attachment("big", "application/octet-stream")
        writer.attachment_data(kind(content))
        writer.end_attachment()

    payload = write(build)
    first = len(START) + len(begin(b"big", b"application/octet-stream"))
    assert payload[first : first + 5] == struct.pack(">BI", records.ATTACHMENT_DATA, MIB)
    events = read(payload)
    assert b"".join(e.data for e in events if isinstance(e, records.AttachmentBytes)) == content
    done = [e for e in events if isinstance(e, records.AttachmentDone)]
    assert done == [records.AttachmentDone(0, len(content), hashlib.sha256(content).digest())]


def test_a_long_message_is_never_split_inside_a_character() -> None:
    # 'é' is two bytes; with one leading ASCII byte the 1 MiB cut falls mid-character.
    text = "a" + "é" * (MIB // 2 + 10)

    def build(writer: records.PayloadWriter) -> None:
        writer.message(text)

    events = read(write(build))
    pieces = [e.text for e in events if isinstance(e, records.MessageText)]
    assert len(pieces) == 2
    assert "".join(pieces) == text


def test_names_are_cut_at_1024_bytes_on_a_character_boundary() -> None:
    def build(writer: records.PayloadWriter) -> None:
        writer.begin_attachment("x" + "€" * 500, "text/pl\u00e4in")
        writer.end_attachment()

    (start,) = [e for e in read(write(build)) if isinstance(e, records.AttachmentStart)]
    assert start.name == "x" + "€" * 341  # 1 + 3 * 341 = 1024 bytes
    assert start.media_type == "text/pl?in"


def test_padding_split_over_several_records(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real payloads only need a second PADDING record beyond 4 GiB of padding; a smaller
    # limit exercises the same code, including the "leave room for a header" branch.
    for limit in (1000, 1003, 16384 - 100):
        monkeypatch.setattr(records.writer, "MAX_PADDING_BODY", limit)
        payload = write()
        assert len(payload) == 16 * 1024
        assert isinstance(read(payload)[-1], records.PayloadEnd)


@pytest.mark.parametrize(
    "day",
    ["2026-1-01", "1-1-123456", "2026-13-01", "2026-02-30", "２０２６-11-29", "2026-11-29\n", ""],
)
def test_the_writer_refuses_a_bad_day(day: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        records.PayloadWriter(lambda _: None, day, RECEIPT)


@pytest.mark.parametrize("receipt", ["", "12a4", "1" * 65, "١٢٣", "12 34"])
def test_the_writer_refuses_a_bad_receipt(receipt: str) -> None:
    with pytest.raises(ValueError, match="receipt"):
        records.PayloadWriter(lambda _: None, DAY, receipt)


def test_writer_misuse_raises() -> None:
    writer = records.PayloadWriter(lambda _: None, DAY, RECEIPT)
    with pytest.raises(RuntimeError):
        writer.attachment_data(b"x")
    with pytest.raises(RuntimeError):
        writer.end_attachment()
    writer.begin_attachment("a", "b")
    with pytest.raises(RuntimeError):
        writer.begin_attachment("c", "d")
    with pytest.raises(RuntimeError):
        writer.message("late")
    with pytest.raises(RuntimeError):
        writer.close()
    writer.end_attachment()
    with pytest.raises(RuntimeError):
        writer.message("after an attachment")
    writer.close()
    with pytest.raises(RuntimeError):
        writer.close()


# --- the reader: what is accepted ------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 5, 7, 4096, 65536])
def test_events_do_not_depend_on_chunking(chunk: int) -> None:
    payload = pad(
        START + record(records.MESSAGE, "é!".encode()) + ONE_ATTACHMENT + manifest(b"abc")
    )
    events = read(payload, chunk)
    assert events[0] == records.Day(DAY)
    assert events[1] == records.Receipt(RECEIPT)
    assert events[2] == records.MessageText("é!")
    assert events[3] == records.AttachmentStart(0, "a.txt", "text/plain")
    assert b"".join(e.data for e in events if isinstance(e, records.AttachmentBytes)) == b"abc"
    summary = records.AttachmentSummary(3, hashlib.sha256(b"abc").digest())
    assert events[-2] == records.AttachmentDone(0, 3, summary.sha256)
    assert events[-1] == records.PayloadEnd((summary,))


def test_optional_records_are_skipped_where_allowed() -> None:
    payload = pad(
        START
        + record(0x80, b"x" * 70_000)
        + record(records.MESSAGE, b"m")
        + record(0xFE, b"")
        + ONE_ATTACHMENT
        + record(0xC3, b"yz")
        + manifest(b"abc")
    )
    skipped = [e for e in read(payload, 1000) if isinstance(e, records.SkippedRecord)]
    assert skipped == [
        records.SkippedRecord(0x80, 70_000),
        records.SkippedRecord(0xFE, 0),
        records.SkippedRecord(0xC3, 2),
    ]


# --- the reader: refusals -----------------------------------------------------------------------


def test_empty_payload() -> None:
    refused(b"", "ends inside a record")


def test_payload_ending_inside_a_record_header_or_body() -> None:
    refused(START[:3], "ends inside a record")
    refused(START[:-2], "ends inside a record")
    refused(START + ONE_ATTACHMENT[:-3], "ends inside a record")


def test_payload_ending_without_manifest() -> None:
    refused(START + ONE_ATTACHMENT, "ends inside a record")


def test_first_record_must_be_submission() -> None:
    refused(pad(record(records.RECEIPT, b"1") + START + manifest()), "does not start with")
    refused(pad(record(0x80, b"") + START + manifest()), "does not start with")


def test_submission_must_be_followed_by_receipt() -> None:
    day = record(records.SUBMISSION, DAY.encode())
    refused(pad(day + record(records.MESSAGE, b"m") + manifest()), "RECEIPT")
    refused(pad(day + day + record(records.RECEIPT, b"1") + manifest()), "RECEIPT")


@pytest.mark.parametrize(
    "day", [b"2026-11-2", b"2026/11/29", b"1-1-123456", b"2026-02-30", b"\xff" * 10]
)
def test_bad_day(day: bytes) -> None:
    payload = record(records.SUBMISSION, day) + record(records.RECEIPT, b"1") + manifest()
    with pytest.raises(records.MalformedPayload, match="day|UTF-8"):
        read(pad(payload))


@pytest.mark.parametrize("receipt", [b"", b"12a", b"1" * 65, b"\xff"])
def test_bad_receipt(receipt: bytes) -> None:
    payload = record(records.SUBMISSION, DAY.encode()) + record(records.RECEIPT, receipt)
    refused(pad(payload + manifest()), "receipt")


def test_repeated_submission_or_receipt_later_is_critical_and_refused() -> None:
    refused(pad(START + record(records.SUBMISSION, DAY.encode()) + manifest()), "0x01")
    refused(pad(START + record(records.RECEIPT, b"1") + manifest()), "0x07")


def test_message_after_an_attachment() -> None:
    refused(
        pad(START + ONE_ATTACHMENT + record(records.MESSAGE, b"m") + manifest(b"abc")), "MESSAGE"
    )


def test_message_not_utf8() -> None:
    refused(pad(START + record(records.MESSAGE, b"\xc3") + manifest()), "UTF-8")


def test_record_over_the_size_limit() -> None:
    header = struct.pack(">BI", records.MESSAGE, MIB + 1)
    refused(START + header + bytes(MIB + 1), "exceeds")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"\x00", "cut short"),
        (b"\x00\x05abc", "cut short"),
        (b"\x00\x01a\x00", "cut short"),
        (b"\x00\x01a\x00\x02abc", "wrong length"),
        (b"\x00\x01a\x00\x03ab", "wrong length"),
        (b"\x00\x01a\x00\x01\xe9", "ASCII"),
        (b"\x00\x01\xff\x00\x01a", "UTF-8"),
    ],
)
def test_bad_attachment_begin(body: bytes, match: str) -> None:
    refused(pad(START + record(records.ATTACHMENT_BEGIN, body) + manifest()), match)


def test_empty_or_oversized_attachment_data() -> None:
    start = begin(b"a", b"b")
    end = record(records.ATTACHMENT_END, b"")
    refused(
        pad(START + start + record(records.ATTACHMENT_DATA, b"") + end + manifest(b"")), "0 bytes"
    )
    big = struct.pack(">BI", records.ATTACHMENT_DATA, MIB + 1) + bytes(MIB + 1)
    refused(START + start + big, "bytes")


def test_attachment_end_with_a_body() -> None:
    refused(START + begin(b"a", b"b") + record(records.ATTACHMENT_END, b"x"), "has a body")


@pytest.mark.parametrize(
    "inner", [records.MESSAGE, records.ATTACHMENT_BEGIN, records.MANIFEST, 0x80, 0x00]
)
def test_other_records_inside_an_attachment(inner: int) -> None:
    refused(START + begin(b"a", b"b") + record(inner, b""), "inside an attachment")


@pytest.mark.parametrize("record_type", [0x00, 0x08, 0x42, 0x7F, 0xFF])
def test_unknown_critical_and_reserved_types(record_type: int) -> None:
    refused(pad(START + record(record_type, b"") + manifest()), f"0x{record_type:02x}")


@pytest.mark.parametrize(
    "bad_manifest",
    [
        record(records.MANIFEST, b"\x00\x00\x01"),
        manifest(),
        manifest(b"abc", b"abc"),
        manifest(b"abd"),
        record(
            records.MANIFEST,
            (1).to_bytes(4, "big") + (4).to_bytes(8, "big") + hashlib.sha256(b"abc").digest(),
        ),
        record(records.MANIFEST, manifest(b"abc")[5:] + b"\x00"),
    ],
    ids=["cut-short", "no-entries", "two-entries", "wrong-hash", "wrong-size", "extra-byte"],
)
def test_manifest_must_match_the_attachments(bad_manifest: bytes) -> None:
    with pytest.raises(records.MalformedPayload, match="manifest|MANIFEST|attachment 0"):
        read(pad(START + ONE_ATTACHMENT + bad_manifest))


def test_only_padding_may_follow_the_manifest() -> None:
    refused(pad(START + manifest() + record(0x80, b"")), "after the manifest")
    refused(pad(START + manifest() + record(records.MESSAGE, b"m")), "after the manifest")


def test_padding_must_be_zeros() -> None:
    refused(pad(START + manifest(), fill=1), "non-zero")
    payload = bytearray(pad(START + manifest()))
    payload[-1] = 0x80
    refused(bytes(payload), "non-zero")


@pytest.mark.parametrize("adjust", [-1, 1, 2048])
def test_padding_must_reach_exactly_the_padme_length(adjust: int) -> None:
    refused(pad(START + manifest(), adjust=adjust), "padded length")


def test_padding_record_cut_short() -> None:
    payload = START + manifest() + struct.pack(">BI", records.PADDING, 100_000)
    refused(payload + bytes(10), "ends inside a record")


def test_no_payload_end_before_the_checks() -> None:
    payload = pad(START + ONE_ATTACHMENT + manifest(b"abd"))
    events: list[records.Event] = []
    with pytest.raises(records.MalformedPayload):
        events.extend(records.read_payload([payload], crypto.VERSION))
    assert not any(isinstance(e, records.PayloadEnd) for e in events)


def test_malformed_payload_is_a_spool_file_error() -> None:
    from sealdrop import crypto

    assert issubclass(records.MalformedPayload, crypto.SpoolFileError)
    assert records.MalformedPayload.cause not in {
        cls.cause
        for cls in crypto.SpoolFileError.__subclasses__()
        if cls is not records.MalformedPayload
    }


# --- CUT: an upload the client cut off ------------------------------------------------------


def cut_record(where: int, received: int) -> bytes:
    return record(records.CUT, struct.pack(">BQ", where, received))


def write_cut(build: object, *, in_message: bool = False) -> tuple[bytes, records.UploadCut]:
    out = bytearray()
    writer = records.PayloadWriter(out.extend, DAY, RECEIPT)
    assert callable(build)
    build(writer)
    cut = writer.cut(in_message)
    writer.close()
    return bytes(out), cut


def ending(payload: bytes) -> records.PayloadEnd:
    end = read(payload)[-1]
    assert isinstance(end, records.PayloadEnd)
    return end


def test_a_cut_inside_an_attachment_replaces_its_end_and_the_manifest_lists_the_prefix() -> None:
    def build(writer: records.PayloadWriter) -> None:
        writer.message("the port")
        writer.begin_attachment("video.mp4", "video/mp4")
        writer.attachment_data(b"first bytes")

    payload, cut = write_cut(build)

    assert cut == records.UploadCut(records.CUT_IN_ATTACHMENT, 0, 11)
    expected = (
        START
        + record(records.MESSAGE, b"the port")
        + begin(b"video.mp4", b"video/mp4")
        + record(records.ATTACHMENT_DATA, b"first bytes")
        + cut_record(records.CUT_IN_ATTACHMENT, 11)
        + manifest(b"first bytes")
    )
    assert payload == pad(expected)
    events = read(payload)
    assert events[-3:-1] == [
        cut,
        records.AttachmentDone(0, 11, hashlib.sha256(b"first bytes").digest()),
    ]
    assert ending(payload).cut == cut


def test_a_cut_at_an_attachments_start_keeps_its_name_and_no_bytes() -> None:
    def build(writer: records.PayloadWriter) -> None:
        writer.message("m")
        writer.begin_attachment("b.bin", "application/x")

    payload, cut = write_cut(build)
    assert cut == records.UploadCut(records.CUT_IN_ATTACHMENT, 0, 0)
    assert ending(payload).attachments == (records.AttachmentSummary(0, hashlib.sha256().digest()),)


def test_a_cut_in_the_message_counts_its_bytes() -> None:
    payload, cut = write_cut(lambda w: w.message("élan"), in_message=True)
    assert cut == records.UploadCut(records.CUT_IN_MESSAGE, 0, 5)
    assert payload == pad(
        START
        + record(records.MESSAGE, "élan".encode())
        + cut_record(records.CUT_IN_MESSAGE, 5)
        + manifest()
    )
    assert ending(payload).cut == cut


def test_a_cut_between_parts_names_how_many_attachments_ended() -> None:
    def build(writer: records.PayloadWriter) -> None:
        writer.begin_attachment("a.txt", "text/plain")
        writer.attachment_data(b"abc")
        writer.end_attachment()

    payload, cut = write_cut(build)
    assert cut == records.UploadCut(records.CUT_BETWEEN_PARTS, 1, 0)
    assert payload == pad(START + ONE_ATTACHMENT + cut_record(3, 0) + manifest(b"abc"))


def test_the_writer_refuses_to_cut_a_payload_without_content() -> None:
    def empty_file(writer: records.PayloadWriter) -> None:
        writer.begin_attachment("empty", "text/plain")
        writer.end_attachment()

    for build in (lambda w: None, empty_file, lambda w: w.begin_attachment("a", "b")):
        with pytest.raises(ValueError, match="nothing arrived"):
            write_cut(build)


def test_nothing_but_close_may_follow_a_cut() -> None:
    out = bytearray()
    writer = records.PayloadWriter(out.extend, DAY, RECEIPT)
    writer.message("m")
    writer.cut(True)
    for misuse in (
        lambda: writer.message("more"),
        lambda: writer.begin_attachment("a", "b"),
        lambda: writer.cut(),
    ):
        with pytest.raises(RuntimeError, match="cut"):
            misuse()
    writer.close()
    assert ending(bytes(out)).cut is not None


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        # Only MANIFEST may follow a CUT record.
        (
            START
            + record(records.MESSAGE, b"m")
            + cut_record(1, 1)
            + record(0x80, b"")
            + manifest(),
            "after a CUT",
        ),
        (
            START
            + record(records.MESSAGE, b"m")
            + cut_record(1, 1)
            + record(records.MESSAGE, b"m")
            + manifest(),
            "after a CUT",
        ),
        (
            START
            + record(records.MESSAGE, b"m")
            + cut_record(3, 0)
            + ONE_ATTACHMENT
            + manifest(b"abc"),
            "after a CUT",
        ),
        (
            START
            + begin(b"a", b"b")
            + record(records.ATTACHMENT_DATA, b"x")
            + cut_record(2, 1)
            + record(records.ATTACHMENT_END, b"")
            + manifest(b"x"),
            "after a CUT",
        ),
        (
            START
            + record(records.MESSAGE, b"m")
            + cut_record(1, 1)
            + cut_record(3, 0)
            + manifest(),
            "after a CUT",
        ),
        # Its kind and count must be what its place says.
        (START + record(records.MESSAGE, b"mm") + cut_record(1, 1) + manifest(), "message"),
        (START + ONE_ATTACHMENT + cut_record(1, 0) + manifest(b"abc"), "message"),
        (START + record(records.MESSAGE, b"m") + cut_record(2, 1) + manifest(), "kind 0x02"),
        (START + record(records.MESSAGE, b"m") + cut_record(3, 1) + manifest(), "between"),
        (START + record(records.MESSAGE, b"m") + cut_record(4, 0) + manifest(), "kind 0x04"),
        (
            START
            + begin(b"a", b"b")
            + record(records.ATTACHMENT_DATA, b"xy")
            + cut_record(2, 1)
            + manifest(b"xy"),
            "inside an attachment",
        ),
        (
            START
            + begin(b"a", b"b")
            + record(records.ATTACHMENT_DATA, b"x")
            + cut_record(1, 1)
            + manifest(b"x"),
            "inside an attachment",
        ),
        # Its body is exactly 9 bytes.
        (
            START
            + record(records.MESSAGE, b"m")
            + record(records.CUT, b"\x01" + bytes(7))
            + manifest(),
            "9",
        ),
        # A cut upload with no content is never kept, so never written.
        (START + cut_record(3, 0) + manifest(), "no content"),
        (START + begin(b"a", b"b") + cut_record(2, 0) + manifest(b""), "no content"),
        # The manifest still lists the cut attachment, with what arrived.
        (
            START
            + begin(b"a", b"b")
            + record(records.ATTACHMENT_DATA, b"x")
            + cut_record(2, 1)
            + manifest(),
            "manifest",
        ),
    ],
)
def test_a_cut_record_anywhere_else_is_refused(payload: bytes, match: str) -> None:
    refused(pad(payload), match)


def test_a_cut_record_before_the_receipt_is_refused() -> None:
    early = record(records.SUBMISSION, DAY.encode()) + cut_record(1, 1)
    refused(pad(early + record(records.RECEIPT, RECEIPT.encode()) + manifest()), "RECEIPT")
