"""Reading an upload's body: one buffer sealdrop owns, and the one place that decides
the client went away.

The body is read into a bytearray reused by every read, behind the bytes the framing
held back (web.multipart), so a large body allocates nothing per read and a stream
with ``readinto`` (Werkzeug's, a file) reads straight into it. Being ours, the
buffer can be zeroed when the request is done (`wipe`).

A body that stops before its end is decided here and nowhere else: `read` raises
ClientGone when the client closed the connection or it failed (a reset, the idle
bound of web.idle), and when the stream ends before the declared length. The
byte limit is counted here too, as the bytes arrive.
"""

from __future__ import annotations

from typing import IO

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from .refusals import BodyTooLarge, ClientGone

READ_SIZE = 1024 * 1024
# A body is first read into a buffer of this size, and into READ_SIZE pieces once a read
# fills it. Every upload in progress holds its buffer as long as it lasts, and a source
# or an attacker sending slowly never needs more (tests/test_slow_clients.py; the
# figures are in docs/PERFORMANCE.md).
FIRST_READ_SIZE = 64 * 1024


class BodyReader:
    """The body of one request, read into `buffer`, where `buffer[:filled]` is at hand:
    what was held back last time, then the newest read."""

    def __init__(
        self, stream: IO[bytes], content_length: int | None, max_bytes: int, held_room: int
    ) -> None:
        self._stream = stream
        self._content_length = content_length
        self._max_bytes = max_bytes
        self._held_room = held_room
        self._read_size = min(READ_SIZE, FIRST_READ_SIZE)
        self.buffer = bytearray(self._read_size + held_room)
        self.filled = 0
        self.received = 0
        self._readinto = getattr(stream, "readinto", None)

    def read(self) -> int:
        """Read more behind what is held; return how many bytes came (0: the body's end).

        Raises ClientGone if the client went away, BodyTooLarge over the limit.
        """
        if self.filled > self._held_room:
            raise AssertionError("more held back than the framing's bound")
        target = memoryview(self.buffer)[self.filled : self.filled + self._read_size]
        try:
            count = self._read_into(target)
        except ClientDisconnected:
            raise ClientGone("client disconnected") from None
        except RequestEntityTooLarge:
            raise BodyTooLarge("body over MAX_CONTENT_LENGTH") from None
        except OSError:
            # A reset or timed-out socket (the idle bound), or gunicorn's NoMoreData.
            raise ClientGone("client connection failed") from None
        self.filled += count
        self.received += count
        if self.received > self._max_bytes:
            raise BodyTooLarge("body too large")
        if not count and self._content_length is not None and self.received < self._content_length:
            raise ClientGone("body cut short")
        if count == self._read_size < READ_SIZE:
            self._grow()
        return count

    def consume(self, used: int) -> None:
        """Drop `buffer[:used]`; the rest moves to the front for the next read."""
        left = self.filled - used
        if left and used:
            view = memoryview(self.buffer)
            view[:left] = view[used : self.filled]  # a memmove: no copy of the bytes
        self.filled = left

    def read_to_end(self) -> None:
        """Read what is left of the body and drop it (an epilogue), within the limit."""
        while self.read():
            self.filled = 0

    def wipe(self) -> None:
        """Zero the buffer: it held a source's plaintext."""
        _zero(self.buffer)
        self.filled = 0

    def _grow(self) -> None:
        """The body comes fast enough to fill the buffer: read READ_SIZE at a time now."""
        bigger = bytearray(READ_SIZE + self._held_room)
        bigger[: self.filled] = memoryview(self.buffer)[: self.filled]
        _zero(self.buffer)
        self.buffer = bigger
        self._read_size = READ_SIZE

    def _read_into(self, target: memoryview) -> int:
        if self._readinto is not None:
            try:
                count: int | None = self._readinto(target)
            except NotImplementedError:
                # A raw stream that implements only read(): use that from now on.
                self._readinto = None
            else:
                return count or 0
        piece = self._stream.read(len(target))
        target[: len(piece)] = piece
        return len(piece)


def _zero(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))
