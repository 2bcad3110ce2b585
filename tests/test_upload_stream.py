"""The streaming multipart reader on its own: any read sizes, tricky contents, every limit."""

from __future__ import annotations

import dataclasses
import io
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from sealdrop.storage.spool import Spool
from sealdrop.web.body import READ_SIZE
from sealdrop.web.refusals import (
    BodyTooLarge,
    EmptySubmission,
    MalformedUpload,
    MessageTooLong,
    PartHeaderTooLarge,
    TooManyFiles,
    UploadLimits,
)
from sealdrop.web.upload import boundary_from, stream_upload

LIMITS = UploadLimits(
    max_body_bytes=1 << 30, max_files=5, max_message_chars=10_000, max_part_header_bytes=1024
)


class ShortReads(io.RawIOBase):
    """Returns at most a (random) few bytes per read, like a slow socket."""

    def __init__(self, data: bytes, seed: int, largest: int) -> None:
        self._data = memoryview(data)
        self._random = random.Random(seed)
        self._largest = largest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        take = min(size, self._random.randint(1, self._largest))
        piece = bytes(self._data[:take])
        self._data = self._data[take:]
        return piece


def seal(
    spool_dir: Path,
    key: PrivateKey,
    body: bytes,
    boundary: str,
    stream: io.RawIOBase | None = None,
    limits: UploadLimits = LIMITS,
) -> Path:
    """Stream `body` into a new submission in `spool_dir`; return the sealed file."""
    spool = Spool(spool_dir, key.public_key)
    with spool.begin() as submission:
        source: Any = stream or io.BytesIO(body)
        stream_upload(source, boundary.encode(), len(body), submission, limits)
        receipt = submission.commit()
    [path] = [p for p in spool_dir.iterdir() if p.name.endswith(".sealed")]
    assert receipt
    return path


def boundary_of(content_type: str) -> str:
    return content_type.split("boundary=", 1)[1]


_DELIMITER = re.compile(rb"[\r\n]--X")


def _unambiguous(data: bytes) -> bool:
    # A browser picks a boundary that its contents never contain after a line break.
    return not _DELIMITER.search(b"\n" + data)


contents = st.one_of(
    st.binary(max_size=3000),
    # Bytes that look like the start of a boundary, line breaks, dashes.
    st.lists(
        st.sampled_from([b"\r\n", b"\r", b"\n", b"--", b"-", b"--X", b"\r\n--X", b"a"]),
        max_size=200,
    ).map(b"".join),
).filter(_unambiguous)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    message=st.text(max_size=200),
    files=st.lists(contents, min_size=1, max_size=3),
    seed=st.integers(0, 2**32),
    largest=st.sampled_from([1, 7, 64, 4096]),
)
def test_any_read_sizes_and_contents_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    reviewer_key: PrivateKey,
    multipart: Callable[..., Any],
    message: str,
    files: list[bytes],
    seed: int,
    largest: int,
) -> None:
    from sealdrop import crypto, records

    spool_dir = tmp_path_factory.mktemp("spool")
    spool_dir.chmod(0o700)
    # "X" makes the boundary a prefix of the tricky contents above.
    parts: list[tuple[str, str | None, bytes, str | None]] = [
        ("message", None, message.encode(), None)
    ]
    parts += [("files", f"f{i}", data, "application/x-test") for i, data in enumerate(files)]
    body = multipart(parts, boundary="X")
    path = seal(spool_dir, reviewer_key, body.body, "X", ShortReads(body.body, seed, largest))
    got_message, got_files, current = "", [], bytearray()
    with path.open("rb") as handle:
        payload = crypto.open_payload(handle, reviewer_key)
        for event in records.read_payload(payload, payload.version):
            if isinstance(event, records.MessageText):
                got_message += event.text
            elif isinstance(event, records.AttachmentStart):
                current = bytearray()
            elif isinstance(event, records.AttachmentBytes):
                current += event.data
            elif isinstance(event, records.AttachmentDone):
                got_files.append(bytes(current))
    expected_message = message if message.strip() else ""
    # An empty file with a name is still a file the source chose.
    assert got_message == expected_message
    assert got_files == files


def test_message_alone_and_preamble_and_epilogue(
    spool_dir: Path, reviewer_key: PrivateKey, open_spool: Callable[[], list[Any]]
) -> None:
    body = (
        b"preamble to ignore\r\n--b\r\n"
        b'Content-Disposition: form-data; name="message"\r\n\r\nhello\r\n--b--\r\nepilogue'
    )
    seal(spool_dir, reviewer_key, body, "b")
    [opened] = open_spool()
    assert opened.message == "hello"


@pytest.mark.parametrize(
    ("parts", "error"),
    [
        ([("message", None, b"", None)], EmptySubmission),
        ([("files", "", b"", None)], EmptySubmission),
        ([("message", None, b"m" * 10_001, None)], MessageTooLong),
        ([("files", f"{i}", b"x", None) for i in range(6)], TooManyFiles),
        ([("files", "n" * 2000, b"x", None)], PartHeaderTooLarge),
        ([("message", None, b"a", None), ("message", None, b"b", None)], MalformedUpload),
    ],
    ids=["no-message", "empty-file-input", "long-message", "six-files", "long-header", "twice"],
)
def test_refusals_leave_nothing(
    spool_dir: Path,
    reviewer_key: PrivateKey,
    multipart: Callable[..., Any],
    parts: list[Any],
    error: type[Exception],
) -> None:
    body = multipart(parts)
    with pytest.raises(error):
        seal(spool_dir, reviewer_key, body.body, boundary_of(body.content_type))
    assert list(spool_dir.iterdir()) == []


def test_memory_stays_bounded_by_one_read(
    spool_dir: Path, reviewer_key: PrivateKey, multipart: Callable[..., Any]
) -> None:
    body = multipart([("files", "big", b"\0" * (8 * READ_SIZE), None)])
    spool = Spool(spool_dir, reviewer_key.public_key)
    written: list[int] = []
    with spool.begin() as submission:
        original = submission.write

        def watch(data: Any) -> None:
            written.append(len(data))
            original(data)

        submission.write = watch  # type: ignore[method-assign]
        stream_upload(
            io.BytesIO(body.body),
            boundary_of(body.content_type).encode(),
            len(body.body),
            submission,
            LIMITS,
        )
        submission.commit()
    assert sum(written) == 8 * READ_SIZE
    assert max(written) <= READ_SIZE


@pytest.mark.parametrize(
    ("mimetype", "params"),
    [
        ("multipart/form-data", {}),
        ("multipart/form-data", {"boundary": "x" * 71}),
        ("multipart/form-data", {"boundary": "é"}),
        ("application/x-www-form-urlencoded", {"boundary": "x"}),
    ],
)
def test_boundary_must_be_present_and_sane(mimetype: str, params: dict[str, str]) -> None:
    with pytest.raises(MalformedUpload):
        boundary_from(mimetype, params)


def test_one_byte_reads_add_no_byte_before_the_closing_boundary(
    spool_dir: Path,
    reviewer_key: PrivateKey,
    multipart: Callable[..., Any],
    open_spool: Callable[[], list[Any]],
) -> None:
    # Werkzeug's decoder alone turns the delimiter's CR into data when a read ends
    # right after "\r\n--BOUNDARY-"; one-byte reads end there for certain.
    body = multipart([("files", "a", b"abc", None), ("files", "b", b"", None)], boundary="X")
    seal(spool_dir, reviewer_key, body.body, "X", ShortReads(body.body, 0, 1))
    [opened] = open_spool()
    assert [content for _, _, content in opened.files] == [b"abc", b""]


@pytest.mark.parametrize(
    "name",
    [
        "C:\\Users\\x\\report.txt",
        "\\\\server\\share\\evidence.jpg",
        "Фото лес; 2026.jpg",
    ],
)
def test_file_names_are_stored_exactly_as_sent(
    spool_dir: Path,
    reviewer_key: PrivateKey,
    multipart: Callable[..., Any],
    open_spool: Callable[[], list[Any]],
    name: str,
) -> None:
    # Werkzeug's header parser dropped every backslash: "C:Usersxreport.txt".
    body = multipart([("files", name, b"data", "text/plain")])
    seal(spool_dir, reviewer_key, body.body, boundary_of(body.content_type))
    [opened] = open_spool()
    assert [(stored, content) for stored, _, content in opened.files] == [(name, b"data")]


def test_an_over_long_name_is_cut_to_the_formats_limit_on_a_character(
    spool_dir: Path,
    reviewer_key: PrivateKey,
    multipart: Callable[..., Any],
    open_spool: Callable[[], list[Any]],
) -> None:
    from sealdrop.records import MAX_NAME_BYTES

    name = "\\" + "é" * MAX_NAME_BYTES  # 2049 bytes: the cut would fall inside an "é"
    limits = dataclasses.replace(LIMITS, max_part_header_bytes=8192)
    body = multipart([("files", name, b"data", None)])
    seal(spool_dir, reviewer_key, body.body, boundary_of(body.content_type), limits=limits)
    [opened] = open_spool()
    [(stored, _, content)] = opened.files
    assert stored == "\\" + "é" * ((MAX_NAME_BYTES - 1) // 2)
    assert len(stored.encode()) == MAX_NAME_BYTES - 1
    assert content == b"data"


class Counted(io.RawIOBase):
    """Reads of at most 4 KiB, counting what was read."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        take = min(len(buffer), 4096, len(self._data) - self.given)
        buffer[:take] = self._data[self.given : self.given + take]
        self.given += take
        return take


_TAIL = b"z" * (8 << 20)  # what a refused body would still send


@pytest.mark.parametrize(
    ("head", "error", "limits"),
    [
        (
            b'--X\r\nContent-Disposition: form-data; name="files"; filename="' + b"n" * 4000,
            PartHeaderTooLarge,
            LIMITS,
        ),
        (b"preamble " * 1000, PartHeaderTooLarge, LIMITS),
        (
            b'--X\r\nContent-Disposition: form-data; name="message"\r\n\r\n' + b"m" * 50_000,
            MessageTooLong,
            LIMITS,
        ),
        (
            b"".join(
                b'--X\r\nContent-Disposition: form-data; name="files"; filename="f"\r\n\r\nx\r\n'
                for _ in range(6)
            ),
            TooManyFiles,
            LIMITS,
        ),
        (
            b'--X\r\nContent-Disposition: form-data; name="files"; filename="f"\r\n\r\n',
            BodyTooLarge,
            dataclasses.replace(LIMITS, max_body_bytes=100_000),
        ),
    ],
    ids=["part header", "preamble", "message", "files", "body"],
)
def test_every_limit_is_checked_as_the_bytes_arrive(
    spool_dir: Path,
    reviewer_key: PrivateKey,
    head: bytes,
    error: type[Exception],
    limits: UploadLimits,
) -> None:
    stream = Counted(head + _TAIL)
    with pytest.raises(error):
        seal(spool_dir, reviewer_key, head + _TAIL, "X", stream, limits)
    # Refused within a read or two of the limit, not at the end of the 8 MiB body.
    assert (
        stream.given
        < max(len(head), limits.max_body_bytes if error is BodyTooLarge else 0) + 2 * 65536
    )
    assert list(spool_dir.iterdir()) == []


def test_a_boundary_repeated_inside_lines_is_data_and_after_line_breaks_is_refused(
    tmp_path: Path, reviewer_key: PrivateKey, multipart: Callable[..., Any]
) -> None:
    """``--BOUNDARY`` inside a line is data (found in C, costing no step of Python:
    a hostile review's `x--a` body held the event loop half a second per MiB); after a
    line break but not a delimiter, a few are data and a body made of them is refused
    (web.multipart.MAX_FALSE_DELIMITERS), as no browser sends one."""
    from sealdrop import crypto, records
    from sealdrop.web.multipart import MAX_FALSE_DELIMITERS

    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    inside_lines = b"x--a" * 50_000 + b"\n--aX" * MAX_FALSE_DELIMITERS
    body = multipart([("files", "f", inside_lines, None)], boundary="a")
    path = seal(spool_dir, reviewer_key, body.body, "a")
    with path.open("rb") as handle:
        payload = crypto.open_payload(handle, reviewer_key)
        data = b"".join(
            e.data
            for e in records.read_payload(payload, payload.version)
            if isinstance(e, records.AttachmentBytes)
        )
    assert data == inside_lines
    path.unlink()

    repeated = b"\n--aX" * (MAX_FALSE_DELIMITERS + 1)
    body = multipart([("files", "f", repeated, None)], boundary="a")
    with pytest.raises(MalformedUpload, match="repeats its boundary"):
        seal(spool_dir, reviewer_key, body.body, "a")
    assert not any(spool_dir.iterdir())
