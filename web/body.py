"""Reading an upload's body: one buffer sealdrop owns, and the one place that decides
the client went away.

The body is read into a bytearray reused by every read, behind the bytes the framing
held back (web.multipart), so a large body allocates nothing per read and a stream
with ``readinto`` (Werkzeug's, a file) reads straight into it. Being ours, the
buffer can be zeroed when the request is done (`wipe`).

A body that stops before its end is decided here and nowhere else: `read` raises
ClientGone when the client closed the connection or it failed (a reset, the idle
bound of web.idle), when the stream ends before the declared length, and (as its
subclass BodyTooSlow) when the body arrives slower than its floor (`RateFloor`).
The byte limit is counted here too, as the bytes arrive.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import IO

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from ..server.patches import BODY_WATCHER
from ..wipe import zero
from .refusals import BodyTooLarge, BodyTooSlow, ClientGone

READ_SIZE = 1024 * 1024
# A body is first read into a buffer of this size, and into READ_SIZE pieces once a read
# fills it. Every upload in progress holds its buffer as long as it lasts, and a source
# or an attacker sending slowly never needs more (tests/test_slow_clients.py; the
# figures are in docs/PERFORMANCE.md).
FIRST_READ_SIZE = 16 * 1024
# Reads grow to READ_SIZE only while a body arrives at least this fast (a full read
# of FIRST_READ_SIZE in 16 ms), and shrink back below a quarter of it: gunicorn waits
# for a whole read's worth, so one large buffer per upload, and as much again in
# gunicorn's and the sealer's, would be held by every slow upload (a hostile review:
# 1.3 to 2.6 MiB each). Loopback and fast links read in large pieces; a Tor upload
# (tens to hundreds of KB/s) reads 16 KiB at a time, which costs it nothing.
FAST_BODY_RATE = 1024 * 1024
# Before anything is framed (`read_ahead`), a body is read this much at a time, into a
# buffer that grows only by what came: a body trickling its first bytes, as hundreds
# held open by an attacker do, holds what it sent and a few KiB, not a read's worth
# reserved here and another accumulating in gunicorn's reader (docs/PERFORMANCE.md,
# "Slow clients").
READ_AHEAD_STEP = 4 * 1024
# RateFloor remembers how much had arrived at most this many times per window.
RATE_MARKS_PER_WINDOW = 16


class RateFloor:
    """At least `rate` bytes a second over any `window` seconds of a body, like
    Apache's mod_reqtimeout MinRate but over a sliding window, so that a fast start
    earns no right to trickle later and one stall shorter than the window is
    forgiven: a Tor upload at 20 KB/s with 60 s stalls has at least 60 s x 20 KB in
    any 120 s window, far above the default floor of 500 B/s (60 KB per window).

    Under gunicorn it watches each piece the socket delivers (`arrived`, called by
    server.patches.watch_body_pieces and read_bodies_in_place): a body read waits for
    at least FIRST_READ_SIZE, so a trickle would otherwise not be looked at for long.
    Once below the floor it is `tripped`: the socket reader then reports the body's
    end, everything that arrived is handed over, and BodyReader raises BodyTooSlow.
    Without that hook (the test client) BodyReader checks it at each read. A body that
    sends nothing at all is the idle bound's (web.idle).
    """

    def __init__(
        self, rate: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._window = window
        self._clock = clock
        self._step = window / RATE_MARKS_PER_WINDOW
        # (when, bytes received by then); the first is the newest at or before
        # `window` seconds ago, once the body is that old.
        self._marks: deque[tuple[float, int]] = deque([(clock(), 0)])
        self.received = 0
        self.tripped = False
        self.watched = False  # gunicorn's socket reader reports to `arrived`
        # Stops the reports: the connection's next request has no floor of its own.
        self.unwatch: Callable[[], None] = lambda: None
        self.reason = ""

    def arrived(self, count: int) -> None:
        """`count` more bytes came off the socket; trip if the floor is broken."""
        self.received += count
        if not self.tripped:
            self.reason = self._shortfall(self.received)
            self.tripped = bool(self.reason)

    def check(self, received: int) -> None:
        """BodyTooSlow if the last window brought fewer than `rate` x its length."""
        reason = self._shortfall(received)
        if reason:
            raise BodyTooSlow(reason)

    def _shortfall(self, received: int) -> str:
        now = self._clock()
        if now - self._marks[-1][0] >= self._step:
            self._marks.append((now, received))
        while len(self._marks) > 1 and self._marks[1][0] <= now - self._window:
            self._marks.popleft()
        since, then = self._marks[0]
        span = now - since
        if span >= self._window and received - then < self._rate * span:
            return f"{received - then} bytes in {span:.0f} s, under {self._rate} bytes a second"
        return ""


def watch_socket_reads(wsgi_input: object, floor: RateFloor) -> None:
    """Have gunicorn's socket reader behind `wsgi_input` (its Body, then the length or
    chunked reader) report to `floor`, if it is one that server.patches taught to."""
    reader = getattr(getattr(wsgi_input, "reader", None), "unreader", None)
    if reader is not None and hasattr(type(reader), "sealdrop_watchable"):
        setattr(reader, BODY_WATCHER, floor)
        floor.watched = True
        floor.unwatch = lambda: setattr(reader, BODY_WATCHER, None)


class BodyReader:
    """The body of one request, read into `buffer`, where `buffer[:filled]` is at hand:
    what was held back last time, then the newest read."""

    def __init__(
        self,
        stream: IO[bytes],
        content_length: int | None,
        max_bytes: int,
        held_room: int,
        floor: RateFloor | None = None,
    ) -> None:
        self._stream = stream
        self._floor = floor
        self._content_length = content_length
        self._max_bytes = max_bytes
        self._held_room = held_room
        self._read_size = min(READ_SIZE, FIRST_READ_SIZE)
        # Made large enough for a whole read by `read`, when the body is framed.
        self.buffer = bytearray(READ_AHEAD_STEP + held_room)
        self.filled = 0
        self.received = 0
        self._readinto = getattr(stream, "readinto", None)
        # The client went away during `read_ahead`: raised by the next `read`.
        self._gone: ClientGone | None = None

    @property
    def client_gone(self) -> bool:
        """The client went away during `read_ahead` (the next `read` raises it)."""
        return self._gone is not None

    def read(self) -> int:
        """Read more behind what is held; return how many bytes came (0: the body's end).

        Raises ClientGone if the client went away (BodyTooSlow, one of them, if it
        sends slower than its floor), BodyTooLarge over the limit.
        """
        if self._gone is not None:
            raise self._gone
        if self.filled > self._held_room:
            raise AssertionError("more held back than the framing's bound")
        if len(self.buffer) < self._held_room + self._read_size:
            self._resize(self._held_room + self._read_size)
        started = time.monotonic()
        count = self._receive(self._read_size)
        # A stream may hand over what has arrived (server.patches.read_bodies_in_place):
        # gather at least a small read's worth, so that a slow upload is still sealed
        # in pieces of FIRST_READ_SIZE, not in one thread hop per network packet.
        least = min(FIRST_READ_SIZE, self._read_size)
        while 0 < count < least and not self._ended():
            try:
                more = self._receive(self._read_size - count)
            except ClientGone as gone:
                # What came is handed over first; the next read raises (`_keep_gone`).
                self._keep_gone(gone)
                break
            if not more:
                break
            count += more
        rate = count / max(time.monotonic() - started, 1e-6)
        if count == self._read_size < READ_SIZE and rate >= FAST_BODY_RATE:
            self._grow()
        elif self._read_size == READ_SIZE and rate < FAST_BODY_RATE / 4:
            self._shrink()
        return count

    def read_ahead(self, size: int) -> None:
        """Before the bytes at hand are framed: read until `size` of them are at hand
        or the body ends. If the client goes meanwhile, what arrived stays at hand and
        the next `read` raises ClientGone (so it is still sealed and kept, cut); a
        body over the limit raises BodyTooLarge here."""
        try:
            while self.filled < size:
                # The buffer grows a read at a time, as the bytes come: a client
                # trickling its body holds what it sent, not `size` bytes at once.
                step = min(READ_AHEAD_STEP, size - self.filled)
                if len(self.buffer) < self.filled + step + self._held_room:
                    self._resize(self.filled + step + self._held_room)
                if not self._receive(step):
                    break
        except ClientGone as gone:
            self._keep_gone(gone)

    def _keep_gone(self, gone: ClientGone) -> None:
        """Have the next `read` raise `gone`, once the bytes at hand are used. A copy,
        without the traceback and the error it replaced: their frames hold this reader,
        and kept here they made a cycle that held the buffer until the garbage
        collector's next full pass."""
        self._gone = type(gone)(*gone.args)

    def _receive(self, size: int) -> int:
        """Read at most `size` bytes behind those at hand; the checks of `read`."""
        target = memoryview(self.buffer)[self.filled : self.filled + size]
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
        floor = self._floor
        if floor is not None and floor.tripped and not count:
            # Everything that had arrived was handed over first (RateFloor).
            raise BodyTooSlow(floor.reason)
        if not count and self._content_length is not None and self.received < self._content_length:
            raise ClientGone("body cut short")
        if count and floor is not None and not floor.watched:
            floor.check(self.received)
        return count

    def _ended(self) -> bool:
        """The whole declared body has come."""
        return self._content_length is not None and self.received >= self._content_length

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
        zero(self.buffer)
        self.filled = 0

    def _grow(self) -> None:
        """The body comes fast: read READ_SIZE at a time now."""
        self._resize(max(len(self.buffer), READ_SIZE + self._held_room))
        self._read_size = READ_SIZE

    def _shrink(self) -> None:
        """The body has slowed down (a stalling circuit, or a client that sent fast to
        trickle afterwards): back to small reads and a small buffer."""
        self._read_size = FIRST_READ_SIZE
        self._resize(max(self.filled, FIRST_READ_SIZE) + self._held_room)

    def _resize(self, size: int) -> None:
        """A buffer of `size` bytes (larger or smaller) holding what is at hand; the
        old one is zeroed."""
        resized = bytearray(size)
        resized[: self.filled] = memoryview(self.buffer)[: self.filled]
        zero(self.buffer)
        self.buffer = resized

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
