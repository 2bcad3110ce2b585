"""Coverage-guided fuzz target for the upload path (web.upload: framing, part headers,
the submission builder), fed with whole bodies and with the same bodies in small reads.

The upload runs on the server over bodies anyone can send: any input must end in a
stored submission or an `UploadRejected`, never another exception or a hang; and
the outcome must not depend on where the reads end (Tor delivers a body in ~500-byte
cells, a slow client in single bytes).

The first input byte picks the read size for the split run (1 to 64) and the
boundary (a one-letter boundary makes random bytes meet delimiters often); the rest
is the body.

Run (libFuzzer options after the script)::

    .venv/bin/python fuzz/upload_body.py -max_total_time=20 fuzz/corpus_tmp/

Crashes are written where ``-artifact_prefix=`` says; keep them in
fuzz/upload_crashes/, where tests/test_fuzz_regressions.py replays every one.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from typing import Any

BOUNDARIES = (b"X", b"----fuzzBoundary7MA4YWxkTrZu0gW")


class Recorder:
    """Stands in for a Submission: records what it is given, as bytes."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def add_message(self, text: str) -> None:
        self.calls.append(("message", text))

    def begin_attachment(self, name: str, media_type: str) -> None:
        self.calls.append(("begin", name, media_type))

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            raise AssertionError("an empty write")
        if self.calls and self.calls[-1][0] == "data":
            self.calls[-1] = ("data", self.calls[-1][1] + bytes(data))
        else:
            self.calls.append(("data", bytes(data)))

    def end_attachment(self) -> None:
        self.calls.append(("end",))


class Reads(io.RawIOBase):
    """The body in reads of at most `size` bytes."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data = memoryview(data)
        self._size = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        take = min(len(buffer), self._size, len(self._data))
        buffer[:take] = self._data[:take]
        self._data = self._data[take:]
        return take


def outcome(stream: Any, body: bytes, boundary: bytes) -> tuple[str, Any]:
    """What the upload path makes of `body`: the calls on the submission, or the refusal."""
    from sealdrop.web.refusals import UploadLimits, UploadRejected
    from sealdrop.web.upload import stream_upload

    limits = UploadLimits(
        max_body_bytes=1 << 20, max_files=4, max_message_chars=500, max_part_header_bytes=300
    )
    recorder = Recorder()
    try:
        stream_upload(stream, boundary, len(body), recorder, limits)  # type: ignore[arg-type]
    except UploadRejected as error:
        return "refused", type(error).__name__
    return "stored", recorder.calls


def one_input(data: bytes) -> None:
    """The fuzz target: refusals are fine; another exception, or a split that changes
    the outcome, propagates (and is a crash)."""
    if not data:
        return
    boundary, body = BOUNDARIES[data[0] >> 7], data[1:]
    whole = outcome(io.BytesIO(body), body, boundary)
    split = outcome(Reads(body, 1 + data[0] % 64), body, boundary)
    if split != whole:
        raise AssertionError(f"split reads changed the outcome: {whole!r} -> {split!r}")


def seeds() -> Iterator[bytes]:
    """Starting inputs that reach deep: forms like browsers send, and odd framings."""
    for index, boundary in enumerate(BOUNDARIES):
        dash = b"--" + boundary

        def part(headers: bytes, data: bytes, dash: bytes = dash) -> bytes:
            return dash + b"\r\n" + headers + b"\r\n\r\n" + data + b"\r\n"

        form = part(b'Content-Disposition: form-data; name="message"', b"a message \xe2\x9c\x93")
        form += part(
            b'Content-Disposition: form-data; name="files"; filename="C:\\x\\a.jpg"\r\n'
            b"Content-Type: image/jpeg",
            b"\xff\xd8 jpeg\r\n-- bytes\r" * 8,
        )
        form += part(b'Content-Disposition: form-data; name="files"; filename=""', b"")
        form += dash + b"--\r\n"
        read_size = bytes([index << 7 | 2])
        yield read_size + form
        yield read_size + b"preamble\n" + form.replace(b"\r\n", b"\n")
        yield read_size + form.replace(dash + b"\r\n", dash + b" \t\r", 1)
        yield read_size + part(b'Content-Disposition: form-data; name="codename"', b"w") + form


def main(argv: list[str]) -> None:
    import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

    # Only sealdrop's own code is measured for coverage: the upload path runs nothing
    # of Flask's or the other libraries it imports, and instrumenting them all took
    # longer (15-35 s) than the fuzzing itself.
    with atheris.instrument_imports(include=["sealdrop"]):
        import sealdrop.web.multipart  # noqa: F401
        import sealdrop.web.part_headers  # noqa: F401
        import sealdrop.web.upload  # noqa: F401
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
