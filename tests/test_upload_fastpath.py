"""The upload's framing (web.multipart), split anywhere, against the whole body.

`stream_upload` hands a part's data to the submission straight from its read buffer
and holds back only the bytes that may begin a delimiter. Whatever the read sizes
and whatever the contents (delimiter look-alikes, cut delimiters, stray line breaks,
real delimiters inside a "file"), the outcome must be the one reached when the whole
body is read in one piece; and for the bodies browsers send, it must be the one
Werkzeug's decoder reaches (an independent reading of the same grammar).
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.sansio.multipart import MultipartDecoder

from sealdrop.storage.spool import Submission
from sealdrop.web import multipart
from sealdrop.web.part_headers import parse_part_headers
from sealdrop.web.refusals import UploadLimits, UploadRejected
from sealdrop.web.upload import UploadBody, stream_upload

LIMITS = UploadLimits(
    max_body_bytes=1 << 30, max_files=5, max_message_chars=10_000, max_part_header_bytes=1024
)
MiB = 1024 * 1024


class Recorder:
    """Stands in for a Submission: records what it is given, as bytes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def add_message(self, text: str) -> None:
        self.calls.append(("message", text))

    def begin_attachment(self, name: str, media_type: str) -> None:
        self.calls.append(("begin", (name, media_type)))

    def write(self, data: bytes | bytearray | memoryview) -> None:
        piece = bytes(data)
        assert piece, "an empty write"
        if self.calls and self.calls[-1][0] == "data":
            self.calls[-1] = ("data", self.calls[-1][1] + piece)
        else:
            self.calls.append(("data", piece))

    def end_attachment(self) -> None:
        self.calls.append(("end", None))


class Pieces(io.RawIOBase):
    """Returns the body in pieces of random sizes up to `largest`, through readinto."""

    def __init__(self, data: bytes, seed: int, largest: int) -> None:
        self._data = memoryview(data)
        self._random = random.Random(seed)
        self._largest = largest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        take = min(len(buffer), self._random.randint(1, self._largest), len(self._data))
        buffer[:take] = self._data[:take]
        self._data = self._data[take:]
        return take


class ReadOnly(io.RawIOBase):
    """A stream without readinto, like gunicorn's body or the follow-up's replay."""

    def __init__(self, data: bytes, piece: int) -> None:
        self._data = data
        self._piece = piece

    def read(self, size: int = -1) -> bytes:
        take = min(size, self._piece)
        piece, self._data = self._data[:take], self._data[take:]
        return piece

    def readinto(self, buffer: Any) -> int:
        raise NotImplementedError


def outcome(stream: Any, body: bytes, boundary: bytes) -> tuple[str, Any]:
    recorder = Recorder()
    try:
        stream_upload(stream, boundary, len(body), cast(Submission, recorder), LIMITS)
    except UploadRejected as error:
        return "refused", type(error).__name__
    return "stored", recorder.calls


def part(name: str, filename: str | None, content: bytes, boundary: bytes) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return b"--" + boundary + f"\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content


VECTORS = Path(__file__).parent / "vectors" / "upload"

tricky = st.lists(
    st.sampled_from(
        [
            b"\r\n",
            b"\r",
            b"\n",
            b"-",
            b"--",
            b"--X",
            b"\r\n--X",
            b"\n--X",
            b"\r--X",
            b"\r\n--X-",
            b"\r\n--Xa",
            b"\r\n--X--",
            b"\r\n--X \r\n",
            b"\r\n--X\r\n",
            b"X",
            b" ",
            b"a",
        ]
    ),
    max_size=60,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(
    message=st.binary(max_size=50),
    files=st.lists(st.one_of(tricky, st.binary(max_size=200)), min_size=1, max_size=3),
    line_break=st.sampled_from([b"\r\n", b"\n", b"\r"]),
    epilogue=st.sampled_from([b"\r\n", b"", b"--\r\n", b"\r\nextra"]),
    seed=st.integers(0, 2**32),
    largest=st.sampled_from([1, 2, 3, 5, 9, 64, 1000]),
)
def test_any_split_gives_what_the_whole_body_gives(
    message: bytes,
    files: list[bytes],
    line_break: bytes,
    epilogue: bytes,
    seed: int,
    largest: int,
) -> None:
    # No body is left out: with Werkzeug's decoder, "--X" at the very start of a
    # part's data and a padded delimiter followed at once by "--X" read differently
    # split and whole; the framing now gives one reading of every body.
    boundary = b"X"
    pieces = [part("message", None, message, boundary)]
    pieces += [part("files", f"f{i}", data, boundary) for i, data in enumerate(files)]
    body = line_break.join(pieces) + line_break + b"--X--" + epilogue
    whole = outcome(io.BytesIO(body), body, boundary)
    assert outcome(Pieces(body, seed, largest), body, boundary) == whole
    assert outcome(ReadOnly(body, largest), body, boundary) == whole


def test_contents_that_look_like_delimiters_arrive_intact() -> None:
    # Not delimiters: no line break before, a longer boundary, a cut "--X-" mid-file.
    content = b"a--X\r\n" + b"a\r\n--Xb" + b"\r\n--X-a" + b"\r\n-" + b"\r" * 50 + b"end\r"
    body = part("files", "f", content, b"X") + b"\r\n--X--\r\n"
    for largest in (1, 2, 3, 4, 7, 1 << 20):
        for seed in range(20):
            kind, calls = outcome(Pieces(body, seed, largest), body, b"X")
            assert kind == "stored"
            assert calls == [
                ("begin", ("f", "application/octet-stream")),
                ("data", content),
                ("end", None),
            ]


def test_file_data_goes_from_the_read_buffer_uncopied(monkeypatch: pytest.MonkeyPatch) -> None:
    copied: list[int] = []
    parse = parse_part_headers

    def counting_parse(block: bytes) -> Any:
        copied.append(len(block))
        return parse(block)

    monkeypatch.setattr(multipart, "parse_part_headers", counting_parse)
    views: list[bool] = []
    recorder = Recorder()
    write = recorder.write

    def watch(data: Any) -> None:
        views.append(isinstance(data, memoryview) and isinstance(data.obj, bytearray))
        write(data)

    recorder.write = watch  # type: ignore[method-assign]
    boundary = b"----sealdropTestBoundary0123"
    content = random.Random(5).randbytes(6 * MiB)
    body = part("files", "big.bin", content, boundary) + b"\r\n--" + boundary + b"--\r\n"
    stream = cast(Any, Pieces(body, 1, 2 * MiB))
    stream_upload(stream, boundary, len(body), cast(Submission, recorder), LIMITS)
    assert b"".join(data for what, data in recorder.calls if what == "data") == content
    # Every piece of the file is a view of the read buffer, never a copy.
    assert views and all(views)
    # Only the part's headers were copied out to be parsed: not the file's 6 MiB.
    assert 0 < sum(copied) < 64 * 1024


def test_read_buffer_never_grows_with_held_back_tails() -> None:
    # Every read ends inside a possible delimiter ("\r\n--X" cut anywhere).
    boundary = b"X" * 70
    unit = b"a" * 997 + b"\r\n--" + b"X" * 69 + b"Y"
    content = unit * 300
    body = part("files", "f", content, boundary) + b"\r\n--" + boundary + b"--\r\n"
    for largest in (1000, 1070, 1071, 4096):
        kind, calls = outcome(Pieces(body, 3, largest), body, boundary)
        assert kind == "stored"
        assert calls[1] == ("data", content)


@pytest.mark.parametrize("padding", [b" ", b"\t \t", b" " * 64])
def test_a_padded_delimiter_cut_after_its_padding_adds_no_byte(padding: bytes) -> None:
    # RFC 2046 lets whitespace follow the boundary. Werkzeug's decoder, handed
    # "\r\n--X " without the line break after it, gave the CR to the file; reads of
    # one or a few bytes end there for certain.
    body = (
        part("files", "a", b"abc", b"X")
        + b"\r\n--X"
        + padding
        + b"\r\n"
        + b'Content-Disposition: form-data; name="files"; filename="b"\r\n\r\nxyz'
        + b"\r\n--X--\r\n"
    )
    for largest in (1, 2, 3, 5):
        kind, calls = outcome(Pieces(body, 7, largest), body, b"X")
        assert kind == "stored"
        assert [data for what, data in calls if what == "data"] == [b"abc", b"xyz"]


def test_a_delimiter_padded_beyond_the_bound_across_reads_is_refused() -> None:
    # Only a hand-made body pads so much; holding it back would be unbounded.
    body = part("files", "a", b"abc", b"X") + b"\r\n--X" + b" " * 500 + b"\r\n--X--\r\n"
    assert outcome(Pieces(body, 1, 3), body, b"X") == ("refused", "MalformedUpload")


def test_the_longest_boundary_with_the_most_padding_fits_the_read_buffer() -> None:
    boundary = b"Y" * 70
    delimiter = b"\r\n--" + boundary + b" " * 64 + b"\r\n"
    second = b'Content-Disposition: form-data; name="files"; filename="b"\r\n\r\nxyz'
    body = part("files", "a", b"abc\r", boundary) + delimiter + second
    body += b"\r\n--" + boundary + b"--\r\n"
    for largest in (1, 3, 70, 139, 140, 141, 1000):
        for seed in range(5):
            kind, calls = outcome(Pieces(body, seed, largest), body, boundary)
            assert kind == "stored"
            assert [data for what, data in calls if what == "data"] == [b"abc\r", b"xyz"]


def test_a_delimiter_cut_at_the_decoders_piece_length_does_not_leak_its_cr() -> None:
    # A body the soak test caught (tests/vectors/upload/): read whole, it reached the
    # decoder in 16 KiB pieces from the preamble on, and the first piece ended right
    # after the CR of the closing delimiter; the decoder handed that CR out as file
    # data, so the upload was stored one byte too long. Pieces now end where
    # feed_cut says, never inside a delimiter.
    body = (VECTORS / "delimiter_cr_at_piece_end.multipart").read_bytes()
    boundary = b"----sealdropRel3d0e5018dcca869f"
    headers_end = b"application/octet-stream\r\n\r\n"
    start = body.index(headers_end) + len(headers_end)
    content = body[start : body.rindex(b"\r\n--" + boundary)]

    kind, calls = outcome(io.BytesIO(body), body, boundary)

    assert kind == "stored"
    assert b"".join(arg for name, arg in calls if name == "data") == content


def test_the_regression_body_cut_anywhere_near_a_delimiter_stores_the_same() -> None:
    # Two reads, the first ending at every position near each delimiter.
    body = (VECTORS / "delimiter_cr_at_piece_end.multipart").read_bytes()
    boundary = b"----sealdropRel3d0e5018dcca869f"
    whole = outcome(io.BytesIO(body), body, boundary)
    assert whole[0] == "stored"
    delimiters = [i for i in range(len(body)) if body.startswith(b"--" + boundary, i)]
    cuts = {c for d in delimiters for c in range(max(1, d - 4), min(len(body), d + 80))}
    for cut in sorted(cuts):
        assert outcome(TwoReads(body, cut), body, boundary) == whole, cut


class TwoReads(io.RawIOBase):
    """The body in two pieces, the first `cut` bytes long: no read crosses the cut (a
    piece longer than the reader's buffer comes in several reads)."""

    def __init__(self, data: bytes, cut: int) -> None:
        self._pieces = [data[:cut], data[cut:]]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._pieces and not self._pieces[0]:
            self._pieces.pop(0)
        if not self._pieces:
            return 0
        piece = self._pieces[0][: len(buffer)]
        self._pieces[0] = self._pieces[0][len(piece) :]
        buffer[: len(piece)] = piece
        return len(piece)


# --- the same reading as Werkzeug's, for the bodies browsers send -------------------------

_NAME_CHARS = st.characters(codec="utf-8", exclude_characters='"\\\r\n\x00')


def werkzeug_reading(body: bytes, boundary: bytes) -> list[tuple[str, str | None, str, bytes]]:
    """(field name, file name, media type, data) of each part, by Werkzeug's decoder."""
    from werkzeug.sansio.multipart import Data, Epilogue, Field, File

    decoder = MultipartDecoder(boundary)
    decoder.receive_data(body)
    decoder.receive_data(None)
    parts: list[tuple[str, str | None, str, bytes]] = []
    while not isinstance(event := decoder.next_event(), Epilogue):
        if isinstance(event, File | Field):
            filename = event.filename if isinstance(event, File) else None
            media = event.headers.get("content-type", "-")
            parts.append((event.name, filename, media, b""))
        elif isinstance(event, Data):
            name, filename, media, data = parts[-1]
            parts[-1] = (name, filename, media, data + event.data)
    return parts


class PartsSink:
    def __init__(self) -> None:
        self.parts: list[tuple[str, str | None, str, bytes]] = []

    def start_part(self, headers: Any) -> None:
        self.parts.append((headers.name, headers.filename, headers.media_type or "-", b""))

    def part_data(self, data: memoryview) -> None:
        name, filename, media, old = self.parts[-1]
        self.parts[-1] = (name, filename, media, old + bytes(data))

    def end_part(self) -> None:
        pass


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.text(_NAME_CHARS, min_size=1, max_size=20),
            st.one_of(st.none(), st.text(_NAME_CHARS, max_size=40)),
            st.one_of(st.none(), st.sampled_from(["image/jpeg", "text/plain; charset=utf-8"])),
            st.one_of(tricky, st.binary(max_size=300)),
        ),
        max_size=5,
    ),
    preamble=st.sampled_from([b"", b"preamble\r\n", b"\r\n"]),
    epilogue=st.sampled_from([b"", b"\r\n", b"\r\nepilogue"]),
)
def test_browser_bodies_frame_as_werkzeug_frames_them(
    parts: list[tuple[str, str | None, str | None, bytes]], preamble: bytes, epilogue: bytes
) -> None:
    boundary = b"----WebKitFormBoundaryq9XkPz3bT1wLmN0a"
    body = bytearray(preamble)
    for name, filename, media, data in parts:
        head = f'--{boundary.decode()}\r\nContent-Disposition: form-data; name="{name}"'
        head += "" if filename is None else f'; filename="{filename}"'
        head += "" if media is None else f"\r\nContent-Type: {media}"
        body += head.encode() + b"\r\n\r\n" + data + b"\r\n"
    body += b"--" + boundary + b"--" + epilogue
    sink = PartsSink()
    framing = multipart.MultipartFraming(boundary, 1024)
    assert framing.feed(body, len(body), sink) == len(body)
    assert framing.closed
    assert sink.parts == werkzeug_reading(bytes(body), boundary)


@settings(max_examples=100, deadline=None)
@given(
    value=st.one_of(tricky, st.binary(max_size=100)),
    files=st.lists(st.one_of(tricky, st.binary(max_size=200)), min_size=1, max_size=2),
    seed=st.integers(0, 2**32),
    largest=st.sampled_from([1, 2, 3, 7, 64, 1000]),
)
def test_a_first_field_then_the_rest_split_anywhere_gives_the_whole_bodys_reading(
    value: bytes, files: list[bytes], seed: int, largest: int
) -> None:
    # The follow-up's way: the codename part alone first, then the rest into a submission.
    pieces = [part("codename", None, value, b"X")]
    pieces += [part("files", f"f{i}", data, b"X") for i, data in enumerate(files)]
    body = b"\r\n".join(pieces) + b"\r\n--X--\r\n"

    def reading(stream: Any) -> tuple[str, Any]:
        recorder = Recorder()
        try:
            with UploadBody(stream, b"X", len(body), LIMITS) as upload_body:
                first = bytes(upload_body.first_field("codename", 1000))
                upload_body.seal_into(cast(Submission, recorder))
        except UploadRejected as error:
            return "refused", type(error).__name__
        return "stored", (first, recorder.calls)

    whole = reading(io.BytesIO(body))
    assert reading(Pieces(body, seed, largest)) == whole
    if whole[0] == "stored":
        assert whole[1][0] == value
