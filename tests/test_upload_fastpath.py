"""The upload parser's fast path for part data, against the decoder given whole bodies.

`stream_upload` hands a part's data to the submission straight from its read buffer
and gives Werkzeug's decoder only the bytes near a possible delimiter. Whatever the
read sizes and whatever the contents (delimiter look-alikes, cut delimiters, stray
line breaks, real delimiters inside a "file"), the outcome must be the one the
decoder reaches when it sees the whole body in one piece.
"""

from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from werkzeug.sansio.multipart import MultipartDecoder

from sealdrop.storage.spool import Submission
from sealdrop.web import upload
from sealdrop.web.upload import UploadLimits, UploadRejected, stream_upload

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
PADDED_DELIMITER_THEN_DASHES = re.compile(rb"--X[ \t]+(\r\n|\r|\n)--X")

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
    # Werkzeug's decoder, given a whole body, takes "--X" at the very start of a part's
    # data for a delimiter (the line break ending the headers doubles as its own);
    # after a split it does not. Browsers never send a boundary inside a part.
    assume(not any(data.startswith(b"--X") for data in [message, *files]))
    boundary = b"X"
    pieces = [part("message", None, message, boundary)]
    pieces += [part("files", f"f{i}", data, boundary) for i, data in enumerate(files)]
    body = line_break.join(pieces) + line_break + b"--X--" + epilogue
    # Likewise a body in which a delimiter padded with whitespace (RFC 2046 allows
    # that) is followed at once by "--X": the whole body and a split one then disagree
    # on one CR of that delimiter. Only a content holding the boundary itself makes
    # such a body, which RFC 2046 forbids and browsers avoid by drawing a random
    # boundary; either reading only changes what that hand-made request stores for
    # itself. Every other body, delimiter look-alikes included, is split-proof.
    assume(not PADDED_DELIMITER_THEN_DASHES.search(body))
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


class CountingDecoder(MultipartDecoder):
    fed = 0

    def receive_data(self, data: bytes | None) -> None:
        if data is not None:
            CountingDecoder.fed += len(data)
        super().receive_data(data)


def test_file_data_bypasses_the_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upload, "MultipartDecoder", CountingDecoder)
    CountingDecoder.fed = 0
    boundary = b"----sealdropTestBoundary0123"
    content = random.Random(5).randbytes(6 * MiB)
    body = part("files", "big.bin", content, boundary) + b"\r\n--" + boundary + b"--\r\n"
    kind, calls = outcome(Pieces(body, 1, 2 * MiB), body, boundary)
    assert kind == "stored"
    assert b"".join(data for what, data in calls if what == "data") == content
    # Headers, a few held-back tails and the closing delimiter: not the file's 6 MiB.
    assert CountingDecoder.fed < 64 * 1024


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
