"""The upload path's own cost, without HTTP or sealing: `stream_upload` against a plain read.

One body (a message and one large file, in a browser's framing) is read from memory in
1 MiB `readinto` pieces, as gunicorn's stream gives them, in one process:

- ``read``: the pieces read into one buffer and dropped: the baseline;
- ``upload``: `web.upload.stream_upload` into a submission that only counts the bytes
  it is given: reading, framing, part headers and the builder, no sealing.

Each is timed (CPU time of this process, best of ``--repeat``) and the ratio
``upload / read`` printed, so runs on a busy machine, or of two versions of the code,
compare by ratio. The file's bytes are random, with a line break every 4 KiB so the
framing's look-behind for a cut delimiter has work to do.

    .venv/bin/python bench/parse_bench.py              # 256 MiB, best of 5
    .venv/bin/python bench/parse_bench.py --size-mib 64 --repeat 3

A measurement, not a test: a table, the ratio, one JSON line last.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from collections.abc import Callable
from typing import Any

MIB = 1024 * 1024
BOUNDARY = b"----WebKitFormBoundaryq9XkPz3bT1wLmN0a"


class Pieces(io.RawIOBase):
    """The body from memory, in `readinto` pieces of at most 1 MiB."""

    def __init__(self, body: bytes) -> None:
        self._body = memoryview(body)
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), MIB, len(self._body) - self._at)
        buffer[:count] = self._body[self._at : self._at + count]
        self._at += count
        return count


class Counting:
    """A submission that only counts what it is given."""

    def __init__(self) -> None:
        self.received = 0

    def add_message(self, text: str) -> None:
        self.received += len(text)

    def begin_attachment(self, name: str, media_type: str) -> None:
        pass

    def write(self, data: Any) -> None:
        self.received += len(data)

    def end_attachment(self) -> None:
        pass


def make_body(size: int) -> bytes:
    block = bytearray(os.urandom(MIB))
    block[4095::4096] = b"\n" * (MIB // 4096)
    head = b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="message"\r\n\r\nhello\r\n'
    head += b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="files"; '
    head += b'filename="C:\\\\x\\\\video.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
    return head + bytes(block) * (size // MIB) + b"\r\n--" + BOUNDARY + b"--\r\n"


def read(body: bytes) -> int:
    stream, buffer, total = Pieces(body), bytearray(MIB), 0
    while count := stream.readinto(buffer):
        total += count
    return total


def upload(body: bytes) -> int:
    from sealdrop.web import upload as web_upload

    try:
        from sealdrop.web.refusals import UploadLimits
    except ImportError:  # the code before the upload path was split (for comparisons)
        from sealdrop.web.upload import UploadLimits  # type: ignore[attr-defined]
    limits = UploadLimits(
        max_body_bytes=len(body),
        max_files=20,
        max_message_chars=100_000,
        max_part_header_bytes=8192,
    )
    submission = Counting()
    web_upload.stream_upload(Pieces(body), BOUNDARY, len(body), submission, limits)  # type: ignore[arg-type]
    return submission.received


def best(run: Callable[[bytes], int], body: bytes, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run(body)
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    body = make_body(args.size_mib * MIB)
    assert upload(body) == args.size_mib * MIB + len("hello")
    results = {
        name: best(run, body, args.repeat) for name, run in (("read", read), ("upload", upload))
    }
    print(f"{'step':8} {'CPU s':>7} {'MB/CPU s':>9}")
    for name, seconds in results.items():
        print(f"{name:8} {seconds:7.3f} {len(body) / seconds / 1e6:9.0f}")
    ratio = results["upload"] / results["read"]
    print(f"upload / read: {ratio:.2f} (CPU time; 1.00 would be parsing for free)")
    print(json.dumps({"size_mib": args.size_mib, "repeat": args.repeat, **results, "ratio": ratio}))


if __name__ == "__main__":
    main()
