"""Stream a multipart/form-data upload straight into a sealed spool submission.

Werkzeug's own form parser keeps files over 500 KB in a plaintext temporary file.
Here the body is instead read in pieces from the request stream, split into parts
by the sans-IO `MultipartDecoder`, and every piece handed to the `Submission`,
which seals it before anything reaches the disk. Memory stays bounded by one read
plus one part header; no byte of plaintext is ever written anywhere.

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
    decoder = MultipartDecoder(
        boundary,
        # Bounds the decoder's buffer: one read plus a part header plus a split boundary.
        max_form_memory_size=READ_SIZE + limits.max_part_header_bytes + 2 * len(boundary) + 64,
        max_parts=limits.max_files + _EXTRA_PARTS,
    )
    builder = _SubmissionBuilder(submission, limits)
    received = 0
    held = bytearray()
    hold_window = len(boundary) + 8
    while not builder.finished:
        chunk = _read(stream)
        received += len(chunk)
        if received > limits.max_body_bytes:
            raise BodyTooLarge("body too large")
        if not chunk and content_length is not None and received < content_length:
            raise ClientGone("body cut short")
        held += chunk
        cut = _safe_cut(held, hold_window) if chunk else len(held)
        ready = bytes(held[:cut])
        del held[:cut]
        try:
            if ready:
                decoder.receive_data(ready)
            if not chunk:
                decoder.receive_data(None)
            _drain(decoder, builder, limits.max_part_header_bytes)
        except RequestEntityTooLarge:
            raise TooManyFiles("too many parts or an oversized part header") from None
        except ValueError:
            # The decoder's way of saying the framing is broken (also undecodable headers).
            raise MalformedUpload("broken multipart framing") from None
        if not chunk and not builder.finished:
            raise MalformedUpload("the body ends before the closing boundary")
    builder.finish()


def _safe_cut(data: bytearray, window: int) -> int:
    """Where to cut `data` so that the decoder never sees a delimiter cut just after its
    boundary (like ``\r\n--BOUNDARY-``).

    Werkzeug 3.1's decoder, given such a tail, hands the delimiter's leading CR to
    the part as data: a file would gain a byte. Socket reads split anywhere (Tor
    delivers ~500-byte cells), so that would happen to real uploads. Feeding only
    up to the last line break near the end (and keeping the rest for the next
    read) means a delimiter always reaches the decoder whole or not at all.
    """
    start = max(0, len(data) - window)
    line_break = max(data.rfind(b"\r", start), data.rfind(b"\n", start))
    return line_break if line_break >= 0 else len(data)


def _read(stream: IO[bytes]) -> bytes:
    try:
        return stream.read(READ_SIZE)
    except ClientDisconnected:
        raise ClientGone("client disconnected") from None
    except RequestEntityTooLarge:
        raise BodyTooLarge("body over MAX_CONTENT_LENGTH") from None
    except OSError:
        # A reset or timed-out socket, seen by a server that does not wrap the stream.
        raise ClientGone("client connection failed") from None


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
        if event.name != MESSAGE_FIELD:
            self._part = "ignored"
            return
        if self._message_seen or self._files:
            raise MalformedUpload("a second message, or the message after a file")
        self._message_seen = True
        self._part = MESSAGE_FIELD

    def _start_file(self, event: File) -> None:
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
        if self._part == MESSAGE_FIELD:
            self._message += event.data
            if len(self._message) > self._limits.max_message_chars * _MAX_UTF8_BYTES_PER_CHAR:
                raise MessageTooLong("message too long")
        elif self._part == "file":
            if event.data:
                if not self._file_open:
                    self._begin_file()
                self._submission.write(event.data)
        if not event.more_data:
            self._end_part()

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
