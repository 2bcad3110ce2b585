"""The upload's body reader (web.body): the one place that decides the client went away,
the byte limit as bytes arrive, and a read buffer that is zeroed when done."""

from __future__ import annotations

import contextlib
import io
from typing import Any, cast

import pytest
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from sealdrop.storage.spool import Submission
from sealdrop.web import upload
from sealdrop.web.body import FIRST_READ_SIZE, READ_SIZE, BodyReader
from sealdrop.web.refusals import (
    BodyTooLarge,
    ClientGone,
    MalformedUpload,
    UploadLimits,
)

LIMITS = UploadLimits(
    max_body_bytes=1 << 30, max_files=5, max_message_chars=10_000, max_part_header_bytes=1024
)
BODY = (
    b'--X\r\nContent-Disposition: form-data; name="files"; filename="f"\r\n\r\n'
    + b"secret " * 40_000
    + b"\r\n--X--\r\n"
)


class Failing(io.RawIOBase):
    """Gives `data`, then raises `error` on the next read."""

    def __init__(self, data: bytes, error: BaseException) -> None:
        self._data = data
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._data:
            raise self._error
        take = min(len(buffer), len(self._data))
        buffer[:take] = self._data[:take]
        self._data = self._data[take:]
        return take


class _NeverRaised(Exception):
    pass


class Discard:
    def add_message(self, text: str) -> None:
        pass

    def begin_attachment(self, name: str, media_type: str) -> None:
        pass

    def write(self, data: Any) -> None:
        pass

    def end_attachment(self) -> None:
        pass

    def commit_partial(self, *, in_message: bool = False) -> bool:
        return False  # what a cut body keeps is storage's and test_cut_uploads.py's concern


def read_all(stream: Any, content_length: int | None, max_bytes: int = 1 << 30) -> int:
    reader = BodyReader(stream, content_length, max_bytes, 100)
    while count := reader.read():
        reader.consume(count)
    return reader.received


@pytest.mark.parametrize(
    "error",
    [ClientDisconnected(), ConnectionResetError(), TimeoutError("timed out"), BrokenPipeError()],
    ids=["disconnected", "reset", "idle bound", "broken pipe"],
)
def test_a_client_that_goes_away_is_client_gone(error: BaseException) -> None:
    with pytest.raises(ClientGone):
        read_all(Failing(BODY[:5000], error), len(BODY))


def test_a_body_shorter_than_declared_is_client_gone() -> None:
    with pytest.raises(ClientGone):
        read_all(io.BytesIO(BODY[:-1]), len(BODY))


def test_a_body_without_a_declared_length_ends_where_it_ends() -> None:
    assert read_all(io.BytesIO(BODY), None) == len(BODY)


def test_the_byte_limit_is_counted_as_bytes_arrive() -> None:
    with pytest.raises(BodyTooLarge):
        read_all(io.BytesIO(BODY), None, max_bytes=len(BODY) - 1)
    with pytest.raises(BodyTooLarge):
        read_all(Failing(b"x", RequestEntityTooLarge()), None)


def test_an_unfinished_body_is_malformed_not_client_gone() -> None:
    # Chunked, or a declared length that was all sent: the client did not go away.
    with pytest.raises(MalformedUpload):
        upload.stream_upload(
            io.BytesIO(BODY[:-12]), b"X", None, cast(Submission, Discard()), LIMITS
        )


def test_growing_zeroes_the_small_buffer() -> None:
    reader = BodyReader(io.BytesIO(b"s" * (2 * READ_SIZE)), None, 1 << 30, 100)
    small = reader.buffer
    assert reader.read() == FIRST_READ_SIZE
    assert reader.buffer is not small and len(reader.buffer) == READ_SIZE + 100
    assert small == bytes(len(small))
    assert reader.buffer[:FIRST_READ_SIZE] == b"s" * FIRST_READ_SIZE


@pytest.mark.parametrize("cut", [None, len(BODY) // 2], ids=["stored", "client gone"])
def test_the_read_buffer_is_zeroed_after_the_body(
    monkeypatch: pytest.MonkeyPatch, cut: int | None
) -> None:
    readers: list[BodyReader] = []

    class Watched(BodyReader):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            readers.append(self)

    monkeypatch.setattr(upload, "BodyReader", Watched)
    stream = io.BytesIO(BODY if cut is None else BODY[:cut])
    gone: type[Exception] = ClientGone if cut is not None else _NeverRaised
    with contextlib.suppress(gone):
        upload.stream_upload(stream, b"X", len(BODY), cast(Submission, Discard()), LIMITS)
        assert cut is None, "a cut body was stored"
    [reader] = readers
    assert b"secret" not in reader.buffer and reader.buffer == bytes(len(reader.buffer))


def test_read_ahead_brings_the_bytes_asked_for_before_anything_is_framed() -> None:
    reader = BodyReader(io.BytesIO(BODY), len(BODY), 1 << 30, held_room=100)
    reader.read_ahead(64 * 1024)
    assert reader.filled == 64 * 1024 and reader.received == 64 * 1024
    assert bytes(reader.buffer[: reader.filled]) == BODY[: 64 * 1024]
    short = BodyReader(io.BytesIO(b"tiny body"), 9, 1 << 30, held_room=100)
    short.read_ahead(64 * 1024)  # the body ends first: what there is
    assert bytes(short.buffer[: short.filled]) == b"tiny body"


def test_a_client_gone_during_read_ahead_keeps_what_arrived_for_the_next_read() -> None:
    """The source's keys are derived after read_ahead: a client that goes meanwhile
    must still have what it sent sealed (and kept, cut), so the bytes stay at hand and
    the next read raises ClientGone."""
    stream = Failing(BODY[:5000], ClientDisconnected())
    reader = BodyReader(cast(Any, stream), len(BODY), 1 << 30, held_room=100)
    reader.read_ahead(64 * 1024)
    assert bytes(reader.buffer[: reader.filled]) == BODY[:5000]
    with pytest.raises(ClientGone):
        reader.read()


def test_read_ahead_over_the_limit_is_refused() -> None:
    reader = BodyReader(io.BytesIO(BODY), None, 10_000, held_room=100)
    with pytest.raises(BodyTooLarge):
        reader.read_ahead(64 * 1024)


class Slow(io.RawIOBase):
    """Gives `data` in reads that each take `pause` seconds."""

    def __init__(self, data: bytes, pause: float) -> None:
        self._data = data
        self._pause = pause

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        import time

        time.sleep(self._pause)
        take = min(len(buffer), len(self._data))
        buffer[:take] = self._data[:take]
        self._data = self._data[take:]
        return take


def test_a_slow_body_keeps_small_reads_and_a_fast_one_that_slows_returns_to_them() -> None:
    """gunicorn waits for a whole read's worth: a large buffer for a slow upload would
    be held for as long as it trickles (a hostile review: 1.3-2.6 MiB each)."""
    slow = BodyReader(cast(Any, Slow(BODY, 0.05)), len(BODY), 1 << 30, held_room=100)
    for _ in range(3):
        assert slow.read() == FIRST_READ_SIZE  # 16 KiB in 50 ms: 320 KB/s
        slow.filled = 0
    assert len(slow.buffer) == FIRST_READ_SIZE + 100

    fast = BodyReader(io.BytesIO(BODY * 8), len(BODY) * 8, 1 << 30, held_room=100)
    fast.read()
    fast.filled = 0
    assert fast.read() == READ_SIZE and len(fast.buffer) == READ_SIZE + 100
    fast.filled = 0
    slowed = Slow(BODY, 1.1)  # 1 MiB in 1.1 s: under a quarter of the rate
    fast._stream, fast._readinto = cast(Any, slowed), slowed.readinto
    fast.read()
    assert len(fast.buffer) < READ_SIZE


class Packets(io.RawIOBase):
    """Hands over at most `packet` bytes a read, like a socket on a slow link, then
    raises `error`."""

    def __init__(self, data: bytes, packet: int, error: BaseException) -> None:
        self._data = data
        self._packet = packet
        self._error = error
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.reads += 1
        if not self._data:
            raise self._error
        take = min(len(buffer), len(self._data), self._packet)
        buffer[:take] = self._data[:take]
        self._data = self._data[take:]
        return take


def test_short_reads_are_gathered_into_a_small_reads_worth() -> None:
    # A stream that hands over what has arrived (server.patches.read_bodies_in_place)
    # still gives the framing and the sealer pieces of FIRST_READ_SIZE, not packets.
    stream = Packets(BODY * 4, 1500, ClientDisconnected())
    reader = BodyReader(cast(Any, stream), len(BODY) * 4, 1 << 30, held_room=100)
    assert reader.read() == FIRST_READ_SIZE
    assert stream.reads == -(-FIRST_READ_SIZE // 1500)


def test_a_client_gone_between_short_reads_keeps_what_came_for_the_framing() -> None:
    # The bytes gathered before the client went are handed over; the next read raises.
    stream = Packets(BODY[:5000], 1500, ClientDisconnected())
    reader = BodyReader(cast(Any, stream), len(BODY), 1 << 30, held_room=100)
    assert reader.read() == 5000
    assert bytes(reader.buffer[: reader.filled]) == BODY[:5000]
    with pytest.raises(ClientGone):
        reader.read()
