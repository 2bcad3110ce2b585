"""Stream a multipart/form-data upload straight into a sealed spool submission.

Werkzeug's own form parser keeps files over 500 KB in a plaintext temporary file.
Here the body is instead read in pieces from the request stream into one reused
buffer, and every piece of a part's data is handed to the `Submission`, which
seals it before anything reaches the disk. The sans-IO `MultipartDecoder` parses
the preamble, the delimiters and the part headers; the bytes of a part's data
that cannot belong to a delimiter go from the read buffer to the submission
without it (`_DataScanner`), so each byte is copied once on its way. Memory stays
bounded by one read plus one part header; no byte of plaintext is ever written
anywhere.

Every limit is checked as the bytes arrive. Whatever goes wrong, the caller's
``with spool.begin()`` block aborts the submission, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Event,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    Preamble,
    State,
)
from werkzeug.wrappers import Request

from ..storage.spool import Submission

READ_SIZE = 1024 * 1024
MESSAGE_FIELD = "message"
FILES_FIELD = "files"
DEFAULT_MEDIA_TYPE = "application/octet-stream"
# UTF-8 needs at most 4 bytes per character: a longer body is too long whatever it says.
_MAX_UTF8_BYTES_PER_CHAR = 4
# Parts beyond the files and the message: room for a browser's odd extra field, no more.
_EXTRA_PARTS = 2
_MAX_BOUNDARY = 70  # RFC 2046
# A body is first read into a buffer of this size, and into READ_SIZE pieces once a read
# fills it. Every upload in progress holds its buffer as long as it lasts: at READ_SIZE
# from the start, 200 connections trickling bodies held +217 MiB of RSS
# (tests/test_slow_clients.py); a source or an attacker sending slowly never needs more.
_FIRST_READ_SIZE = 64 * 1024
# The read buffer's room for bytes held back from one read to the next, in hold windows
# (a boundary plus 8): the decoder's held bytes put back, then the parser's own.
_TAIL_ROOM = 4
# Outside a part's data the decoder is fed this much at a time: a delimiter, headers.
_FEED_PIECE = 16 * 1024
# Whitespace allowed between a delimiter's boundary and its line break when the two are
# split across reads (RFC 2046 transport padding; browsers send none).
_MAX_DELIMITER_PADDING = 64
_LINE_BREAK_BYTES = b"\r\n"
_CR = ord("\r")
# What Werkzeug's decoder accepts as padding after a boundary: whitespace but CR and LF.
_PADDING_BYTES = b" \t\x0b\x0c"

# A refusal is answered only once the rest of the body has been read and thrown away. A
# browser still sending when the server answers and closes reports "connection reset"
# (the kernel resets a socket closed with unread data) and never shows the page. Bounds:
# the body's own limit, and a time a slow circuit may need for the rest of a large body.
DISCARD_SECONDS = 120.0
# A declared length over the limit is not waited for: a little is read, so that the
# client's first bytes in flight do not meet a reset, and the connection is then closed.
EARLY_DISCARD_BYTES = 1024 * 1024
EARLY_DISCARD_SECONDS = 3.0
# Small reads: gunicorn's body reads block until the whole size has arrived, and the
# time bound is checked between reads.
_DISCARD_READ = 64 * 1024


class UploadRejected(Exception):
    """Root of the reasons an upload is refused; `status` is the HTTP status to answer."""

    status = 400


class MalformedUpload(UploadRejected):
    """The body is not the multipart/form-data the form sends: no boundary, broken
    framing, an undecodable part header, the message after a file, a body cut short."""

    status = 400


class EmptySubmission(UploadRejected):
    """Neither a message nor any file was sent: there is nothing to store."""

    status = 400


class ClientGone(UploadRejected):
    """The client stopped sending before the body's end (closed tab, lost circuit)."""

    status = 400


class TooLarge(UploadRejected):
    """Root of the limits: the body, the files, the message or a part header is over."""

    status = 413


class BodyTooLarge(TooLarge):
    """The body is longer than max_body_bytes (declared, or counted while reading)."""


class TooManyFiles(TooLarge):
    """More files (or more parts) than max_files allows."""


class MessageTooLong(TooLarge):
    """The message has more than max_message_chars characters."""


class PartHeaderTooLarge(TooLarge):
    """A part's headers (or the preamble) exceed max_part_header_bytes."""


@dataclass(frozen=True)
class UploadLimits:
    max_body_bytes: int
    max_files: int
    max_message_chars: int
    max_part_header_bytes: int


def boundary_from(mimetype: str, params: dict[str, str]) -> bytes:
    """The multipart boundary of a request, or MalformedUpload if it is not multipart."""
    boundary = params.get("boundary", "")
    if mimetype != "multipart/form-data" or not 0 < len(boundary) <= _MAX_BOUNDARY:
        raise MalformedUpload("not multipart/form-data with a boundary")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedUpload("the boundary is not ASCII") from None


def stream_upload(
    stream: IO[bytes],
    boundary: bytes,
    content_length: int | None,
    submission: Submission,
    limits: UploadLimits,
) -> None:
    """Read the whole body from `stream` into `submission`; raise UploadRejected on any fault.

    The caller commits afterwards; on an exception it must abort (leaving its
    ``with`` block does).
    """
    if content_length is not None and content_length > limits.max_body_bytes:
        raise BodyTooLarge("declared body too large")
    hold_window = len(boundary) + 8
    decoder = MultipartDecoder(
        boundary,
        # Bounds the decoder's buffer: one read plus a part header plus the held-back tail.
        max_form_memory_size=READ_SIZE
        + limits.max_part_header_bytes
        + _MAX_DELIMITER_PADDING
        + _TAIL_ROOM * hold_window,
        max_parts=limits.max_files + _EXTRA_PARTS,
    )
    builder = _SubmissionBuilder(submission, limits)
    reader = _Reader(stream, _MAX_DELIMITER_PADDING + _TAIL_ROOM * hold_window)
    scanner = _DataScanner(boundary)
    received = 0
    while not builder.finished:
        count = reader.read()
        received += count
        if received > limits.max_body_bytes:
            raise BodyTooLarge("body too large")
        if not count and content_length is not None and received < content_length:
            raise ClientGone("body cut short")
        if not count:
            _feed(decoder, builder, reader, reader.filled, limits, end=True)
            break
        while reader.filled and not builder.finished:
            if decoder.state == State.DATA and not decoder.buffer:
                # Inside a part's data: what cannot belong to a delimiter goes to the
                # builder straight from the read buffer; the decoder sees only the rest.
                data_end, delimiter_seen = scanner.scan(reader.buffer, reader.filled)
                if data_end:
                    builder.data(reader.view[:data_end])
                reader.keep_from(data_end)
                if not delimiter_seen:
                    break
            # The decoder gets a delimiter, part headers or a preamble a piece at a time,
            # so that the data after them is left to the path above. The piece's end is
            # chosen by feed_cut too: cutting at a fixed length could split a delimiter
            # after its CR, which the decoder would then hand out as data.
            limit = min(reader.filled, _FEED_PIECE)
            all_at_hand = limit == reader.filled
            cut = scanner.feed_cut(reader.buffer, limit)
            if not cut and not all_at_hand:
                raise MalformedUpload("no place to cut the body outside a delimiter")
            _feed(decoder, builder, reader, cut, limits, end=False)
            if decoder.state == State.DATA and 0 < len(decoder.buffer) <= hold_window:
                # In a part's data the decoder's buffer holds only data it has not handed
                # out yet (a possible delimiter's start): put it back in front, where the
                # path above looks at it again with what follows.
                reader.put_back(decoder.buffer)
                del decoder.buffer[:]
            if all_at_hand and cut < limit:
                break  # the rest waits for the next read
    if not builder.finished:
        raise MalformedUpload("the body ends before the closing boundary")
    builder.finish()


def _feed(
    decoder: MultipartDecoder,
    builder: _SubmissionBuilder,
    reader: _Reader,
    cut: int,
    limits: UploadLimits,
    *,
    end: bool,
) -> None:
    """Hand `reader`'s first `cut` bytes to the decoder (then the body's end, if `end`)
    and its events to the builder."""
    ready = bytes(reader.view[:cut])
    reader.keep_from(cut)
    try:
        if ready:
            decoder.receive_data(ready)
        if end:
            decoder.receive_data(None)
        _drain(decoder, builder, limits.max_part_header_bytes)
    except RequestEntityTooLarge:
        raise TooManyFiles("too many parts or an oversized part header") from None
    except ValueError:
        # The decoder's way of saying the framing is broken (also undecodable headers).
        raise MalformedUpload("broken multipart framing") from None


class _Reader:
    """Reads the body into one buffer reused by every read, behind the bytes held back.

    `view[:filled]` is what is at hand: the tail held back last round (at most a few
    delimiter lengths), then the newest read. A large body allocates nothing per read,
    and a stream with ``readinto`` (Werkzeug's, a file) reads straight into the buffer.
    """

    def __init__(self, stream: IO[bytes], tail_room: int) -> None:
        self._stream = stream
        self._tail_room = tail_room
        # Small until a read fills it: see _FIRST_READ_SIZE.
        self._read_size = min(READ_SIZE, _FIRST_READ_SIZE)
        self.buffer = bytearray(self._read_size + tail_room)
        self.view = memoryview(self.buffer)
        self.filled = 0
        self._readinto = getattr(stream, "readinto", None)

    def read(self) -> int:
        """Read more behind what is held; return how many bytes came (0: the end)."""
        if self.filled > self._tail_room:
            raise AssertionError("more held back than a few delimiter lengths")
        target = self.view[self.filled : self.filled + self._read_size]
        try:
            count = self._read_into(target)
        except ClientDisconnected:
            raise ClientGone("client disconnected") from None
        except RequestEntityTooLarge:
            raise BodyTooLarge("body over MAX_CONTENT_LENGTH") from None
        except OSError:
            # A reset or timed-out socket, seen by a server that does not wrap the stream.
            raise ClientGone("client connection failed") from None
        self.filled += count
        if count == self._read_size < READ_SIZE:
            self._grow()
        return count

    def _grow(self) -> None:
        """The body comes fast enough to fill the buffer: read READ_SIZE at a time now."""
        bigger = bytearray(READ_SIZE + self._tail_room)
        bigger[: self.filled] = self.view[: self.filled]
        self.buffer, self.view = bigger, memoryview(bigger)
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

    def keep_from(self, start: int) -> None:
        """Drop `view[:start]` (consumed); the rest moves to the front for the next read."""
        left = self.filled - start
        if left and start:
            self.buffer[:left] = self.view[start : self.filled]
        self.filled = left

    def put_back(self, data: bytearray) -> None:
        """Put `data`, which came before what is held, back in front of it."""
        size = len(data)
        if size + self.filled > len(self.buffer):
            raise AssertionError("no room to put bytes back")
        self.buffer[size : size + self.filled] = self.view[: self.filled]
        self.buffer[:size] = data
        self.filled += size


class _DataScanner:
    """Finds the bytes of a part's data that cannot be part of a delimiter.

    A delimiter is a line break (CRLF, CR or LF), ``--``, the boundary, then ``--`` or
    line-ending whitespace: it holds ``--BOUNDARY`` whole and starts at most two bytes
    before it. So the bytes before the first ``--BOUNDARY``, less two, are data; and
    without one, so is everything before the first CR or LF among the last
    ``len(--BOUNDARY) + 1`` bytes, where a delimiter cut by the end of the read would
    start. The rest goes to the decoder (or waits for the next read), which judges the
    delimiter whole. This only ever hands out fewer bytes than the decoder would.
    """

    def __init__(self, boundary: bytes) -> None:
        self._dash_boundary = b"--" + boundary
        self._tail = len(self._dash_boundary) + 1
        self._hold_window = len(boundary) + 8

    def scan(self, data: bytearray, end: int) -> tuple[int, bool]:
        """(data_end, delimiter_seen) for `data[:end]`: `data[:data_end]` is part data."""
        found = data.find(self._dash_boundary, 0, end)
        if found >= 0:
            return max(0, found - 2), True
        tail_start = max(0, end - self._tail)
        line_breaks = [
            i
            for i in (data.find(b"\r", tail_start, end), data.find(b"\n", tail_start, end))
            if i >= 0
        ]
        return (min(line_breaks) if line_breaks else end), False

    def feed_cut(self, data: bytearray, end: int) -> int:
        """Where to cut `data[:end]` before handing it to the decoder: never inside a
        delimiter, which must reach the decoder whole or not at all.

        Werkzeug 3.1's decoder, given a delimiter cut short (``\r\n--BOUNDARY-``, or
        ``\r\n--BOUNDARY`` and padding whitespace without the line break after it),
        hands the delimiter's leading CR to the part as data: a file would gain a byte.
        Socket reads split anywhere (Tor delivers ~500-byte cells), so that would happen
        to real uploads. So the bytes from the last line break near the end, and from an
        unfinished delimiter, wait for the next read.
        """
        start = max(0, end - self._hold_window)
        line_break = max(data.rfind(b"\r", start, end), data.rfind(b"\n", start, end))
        cut = line_break if line_break >= 0 else end
        found = data.rfind(self._dash_boundary, 0, cut)
        after = found + len(self._dash_boundary)
        if found >= 0 and self._unfinished(data, after, cut):
            if found >= 1 and data[found - 1] in _LINE_BREAK_BYTES:
                # The padding (and a CR after it) must fit the room the reader keeps.
                if cut - after > _MAX_DELIMITER_PADDING + 1:
                    # Only a hand-made body pads a delimiter so; holding it would be unbounded.
                    raise MalformedUpload("a delimiter padded with too much whitespace")
                cut = found - 2 if data[found - 2 : found] == b"\r\n" else found - 1
        return cut

    @staticmethod
    def _unfinished(data: bytearray, after: int, end: int) -> bool:
        """True if what follows a ``--BOUNDARY`` at `after` may still become the end of a
        delimiter (``--``, or padding then a line break): the bytes are not all there."""
        if end - after >= 2 and data[after : after + 2] == b"--":
            return False
        if data[after:end] == b"-":
            return True
        position = after
        while position < end and data[position] in _PADDING_BYTES:
            position += 1
        # A CR last: CRLF or a lone CR end the delimiter at different places.
        return position == end or (position == end - 1 and data[position] == _CR)


def _drain(decoder: MultipartDecoder, builder: _SubmissionBuilder, header_limit: int) -> None:
    while True:
        buffered = len(decoder.buffer)
        if decoder.state == State.DATA_START and buffered < 2 and not decoder.complete:
            # A part's data starts after a line break, CRLF or a lone CR or LF. Given only
            # "\r", the decoder takes it for a whole line break and then keeps the "\n" that
            # follows as data (Werkzeug 3.1): wait until the break can be read whole.
            return
        event = decoder.next_event()
        if isinstance(event, NeedData):
            # Still looking for the end of the preamble or of a part's headers.
            if decoder.state in (State.PREAMBLE, State.PART) and len(decoder.buffer) > header_limit:
                raise PartHeaderTooLarge("part header too large")
            return
        if isinstance(event, Field | File) and buffered - len(decoder.buffer) > header_limit:
            raise PartHeaderTooLarge("part header too large")
        builder.handle(event)
        if isinstance(event, Epilogue):
            return


def _refuse_nul(name: str | None) -> None:
    # No browser sends NUL in a field or file name; one that arrives is a forged body.
    # (Werkzeug gives None for a part without a name.)
    if name and "\x00" in name:
        raise MalformedUpload("NUL in a part's name")


class _SubmissionBuilder:
    """Turns decoder events into calls on the Submission, enforcing the content limits."""

    def __init__(self, submission: Submission, limits: UploadLimits) -> None:
        self._submission = submission
        self._limits = limits
        self._part: str | None = None  # "message", "file", or "ignored"
        self._message = bytearray()
        self._message_seen = False
        self._message_added = False
        self._files = 0
        self._pending_file: tuple[str, str] | None = None  # (name, media type) not begun yet
        self._file_open = False
        self.finished = False

    def handle(self, event: Event) -> None:
        if isinstance(event, Preamble):
            return
        if isinstance(event, Field):
            self._start_field(event)
        elif isinstance(event, File):
            self._start_file(event)
        elif isinstance(event, Data):
            self._data(event)
        elif isinstance(event, Epilogue):
            self.finished = True

    def finish(self) -> None:
        """Check the whole: something must have been sent. Called after the epilogue."""
        self._flush_message()
        if not self._message_added and self._files == 0:
            raise EmptySubmission("nothing was sent")

    def _start_field(self, event: Field) -> None:
        _refuse_nul(event.name)
        if event.name != MESSAGE_FIELD:
            self._part = "ignored"
            return
        if self._message_seen or self._files:
            raise MalformedUpload("a second message, or the message after a file")
        self._message_seen = True
        self._part = MESSAGE_FIELD

    def _start_file(self, event: File) -> None:
        _refuse_nul(event.name)
        _refuse_nul(event.filename)
        if event.name != FILES_FIELD:
            self._part = "ignored"
            return
        self._part = "file"
        media_type = event.headers.get("content-type", DEFAULT_MEDIA_TYPE)
        # The attachment begins with its first byte: a browser sends an empty part with
        # filename="" for a file input left empty, and that must not become an attachment.
        self._pending_file = (event.filename, media_type)
        if event.filename:
            self._begin_file()

    def _begin_file(self) -> None:
        assert self._pending_file is not None
        self._files += 1
        if self._files > self._limits.max_files:
            raise TooManyFiles("too many files")
        self._flush_message()
        name, media_type = self._pending_file
        self._submission.begin_attachment(name, media_type)
        self._pending_file = None
        self._file_open = True

    def _data(self, event: Data) -> None:
        self.data(event.data)
        if not event.more_data:
            self._end_part()

    def data(self, data: bytes | memoryview) -> None:
        """More of the current part's data (a view is only valid during the call)."""
        if self._part == MESSAGE_FIELD:
            self._message += data
            if len(self._message) > self._limits.max_message_chars * _MAX_UTF8_BYTES_PER_CHAR:
                raise MessageTooLong("message too long")
        elif self._part == "file" and data:
            if not self._file_open:
                self._begin_file()
            self._submission.write(data)

    def _end_part(self) -> None:
        if self._part == "file" and self._file_open:
            self._submission.end_attachment()
            self._file_open = False
        self._pending_file = None
        self._part = None

    def _flush_message(self) -> None:
        """Hand the message to the submission once; it must precede every attachment."""
        if self._message_added or not self._message:
            self._message = bytearray()
            return
        text = self._message.decode("utf-8", "replace")
        self._message = bytearray()
        # Browsers send a textarea's line breaks as CRLF but count (maxlength) each as one.
        if len(text.replace("\r\n", "\n")) > self._limits.max_message_chars:
            raise MessageTooLong("message too long")
        if text.strip():
            self._submission.add_message(text)
            self._message_added = True


def discard_body(
    stream: IO[bytes],
    max_bytes: int,
    seconds: float,
    sock: socket.socket | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Read what is left of a refused body and throw it away: at most `max_bytes`, for
    at most `seconds`. True if the body ended within the bounds; False if a bound was
    reached or the client failed (the connection should then close after the answer).
    The bytes are never kept or written anywhere.

    `sock`, the connection's socket when the server exposes it, is given a timeout for
    the time left, so that a client that stops sending cannot hold the answer back.
    """
    deadline = clock() + seconds
    left = max_bytes
    prior_timeout = sock.gettimeout() if sock is not None else None
    try:
        while (remaining := deadline - clock()) > 0:
            try:
                if sock is not None:
                    sock.settimeout(remaining)
                # One byte past the bound tells a body that ends exactly there from a longer one.
                piece = stream.read(min(_DISCARD_READ, left + 1))
            except (ClientDisconnected, RequestEntityTooLarge, OSError, ParseException):
                # Gone, over the limit, silent too long, or (gunicorn) broken chunked framing.
                return False
            if not piece:
                return True
            left -= len(piece)
            if left < 0:
                return False
        return False
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(prior_timeout)


def discard_refused_body(request: Request) -> bool:
    """Before a refusal is answered, read the rest of `request`'s body (see `discard_body`).

    True if the whole body was read; False if the answer must close the connection.
    Call it only after the submission was aborted: nothing read here is stored.
    """
    sock = request.environ.get("gunicorn.socket")
    sock = sock if isinstance(sock, socket.socket) else None
    limit = request.max_content_length
    declared = request.content_length
    if declared is not None and limit is not None and declared > limit:
        # ``request.stream`` refuses this body; the server's own stream ends at the
        # declared length, and only a bounded first part of it is read.
        raw: IO[bytes] = request.environ["wsgi.input"]
        # Minus one: discard_body reads one byte past its bound, never past the body here.
        bound = min(declared, EARLY_DISCARD_BYTES) - 1
        discard_body(raw, bound, EARLY_DISCARD_SECONDS, sock)
        return False
    bound = limit if limit is not None else EARLY_DISCARD_BYTES
    return discard_body(request.stream, bound, DISCARD_SECONDS, sock)
