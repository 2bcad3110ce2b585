"""Stream a multipart/form-data upload straight into a sealed spool submission.

Werkzeug's own form parser keeps files over 500 KB in a plaintext temporary file.
Here the body is read in pieces into one reused buffer (web.body), framed by our own
multipart framing (web.multipart, which also says why it is ours), and every piece
of a part's data goes from that buffer to the `Submission` (web.builder), which
seals it before anything reaches the disk. Each byte is copied once on its way;
memory stays bounded by one read plus one part header; no byte of plaintext is ever
written anywhere, and the buffer is zeroed when the body is done.

Every limit is checked as the bytes arrive. Whatever goes wrong, the caller's
``with spool.begin()`` block aborts the submission, so nothing is left behind; only
a client that went away (ClientGone, but not BodyTooSlow: a body below the rate floor is
refused) leaves what had arrived, sealed, marked cut. The
reasons for a refusal are in web.refusals; reading the rest of a refused body, so
that the browser shows the answer, is web.discard.
"""

from __future__ import annotations

import contextlib
import time
from typing import IO

from flask import has_request_context, request

from ..storage.spool import Submission
from .body import BodyReader, RateFloor, watch_socket_reads
from .builder import SubmissionBuilder
from .multipart import MultipartFraming, PartSink
from .part_headers import PartHeaders
from .refusals import BodyTooLarge, BodyTooSlow, ClientGone, MalformedUpload, UploadLimits

_MAX_BOUNDARY = 70  # RFC 2046


def boundary_from(mimetype: str, params: dict[str, str]) -> bytes:
    """The multipart boundary of a request, or MalformedUpload if it is not multipart."""
    boundary = params.get("boundary", "")
    if mimetype != "multipart/form-data" or not 0 < len(boundary) <= _MAX_BOUNDARY:
        raise MalformedUpload("not multipart/form-data with a boundary")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedUpload("the boundary is not ASCII") from None


class UploadBody:
    """One request's multipart body, read and framed as it arrives.

    Use it as a context manager: leaving the block zeroes the read buffer.
    """

    def __init__(
        self,
        stream: IO[bytes],
        boundary: bytes,
        content_length: int | None,
        limits: UploadLimits,
    ) -> None:
        if content_length is not None and content_length > limits.max_body_bytes:
            raise BodyTooLarge("declared body too large")
        self._limits = limits
        self._framing = MultipartFraming(boundary, limits.max_part_header_bytes)
        floor = None
        if limits.body_min_rate:
            floor = RateFloor(limits.body_min_rate, limits.body_rate_window)
            if has_request_context():
                watch_socket_reads(request.environ.get("wsgi.input"), floor)
        self._floor = floor
        self._body = BodyReader(
            stream, content_length, limits.max_body_bytes, self._framing.held_bound, floor
        )

    def __enter__(self) -> UploadBody:
        return self

    def __exit__(self, *_: object) -> None:
        self._body.wipe()
        if self._floor is not None:
            self._floor.unwatch()

    def read_ahead(self, size: int) -> float:
        """Read until `size` bytes of the body are at hand or it ends, before anything
        is sealed; return how many seconds that took (web.body.BodyReader.read_ahead)."""
        started = time.monotonic()
        self._body.read_ahead(size)
        return time.monotonic() - started

    @property
    def ends_cut(self) -> bool:
        """The client went away during `read_ahead` (or sent below the rate floor)
        before the form's closing delimiter came: the upload can only be kept cut. One
        whose closing delimiter is at hand is whole whatever came after it."""
        body = self._body
        return body.client_gone and not self._framing.may_close_within(body.buffer, body.filled)

    def first_field(self, name: str, max_bytes: int) -> bytearray:
        """The value of the body's first part, which must be the field `name` of at most
        `max_bytes` (the follow-up's codename, needed before anything is sealed)."""
        field = _FirstField(name, max_bytes)
        while not field.ended:
            if self._framing.closed:
                raise MalformedUpload(f"no {name} field: the body has no part")
            self._frame(field, one_part=True)
        return field.value

    def seal_into(self, submission: Submission) -> None:
        """Read the (rest of the) body into `submission`; UploadRejected on any fault.

        The caller commits afterwards; on an exception it must abort (leaving its
        ``with spool.begin()`` block does). On ClientGone the submission was already
        committed with what arrived, marked cut (or aborted if nothing had arrived).
        """
        builder = SubmissionBuilder(submission, self._limits)
        try:
            while not self._framing.closed:
                self._frame(builder)
        except BodyTooSlow:
            # Dropped by the server, not cut by the client: a refusal like the others,
            # so nothing is kept (issue 13: a trickle below the floor is what a client
            # holding a connection does; a real circuit brings far more, or stalls and
            # meets the idle bound, and is kept cut).
            raise
        except ClientGone:
            # The one early end that keeps anything: what arrived is sealed and marked
            # cut before the refusal goes on. Every other fault is a refusal, aborted by
            # the caller's ``with`` block.
            builder.cut()
            raise
        # The epilogue, counted against the limit and dropped. The closing delimiter
        # came: the form is whole even if the client goes before the epilogue's end.
        with contextlib.suppress(ClientGone):
            self._body.read_to_end()
        builder.finish()

    def _frame(self, sink: PartSink, *, one_part: bool = False) -> None:
        """Frame the bytes at hand; if none of them could be used, read more."""
        body = self._body
        used = self._framing.feed(body.buffer, body.filled, sink, one_part=one_part)
        body.consume(used)
        if not used:
            if not body.read():
                raise MalformedUpload("the body ends before the closing delimiter")


class _FirstField:
    """A PartSink that takes one part, which must be a given field, and its value."""

    def __init__(self, name: str, max_bytes: int) -> None:
        self._name = name
        self._max_bytes = max_bytes
        self.value = bytearray()
        self.ended = False

    def start_part(self, headers: PartHeaders) -> None:
        if headers.name != self._name or headers.filename is not None:
            raise MalformedUpload(f"the first part is not the {self._name} field")

    def part_data(self, data: memoryview) -> None:
        self.value += data
        if len(self.value) > self._max_bytes:
            raise MalformedUpload(f"the {self._name} field is too long")

    def end_part(self) -> None:
        self.ended = True


def stream_upload(
    stream: IO[bytes],
    boundary: bytes,
    content_length: int | None,
    submission: Submission,
    limits: UploadLimits,
) -> None:
    """Read the whole body from `stream` into `submission` (see `UploadBody.seal_into`)."""
    with UploadBody(stream, boundary, content_length, limits) as body:
        body.seal_into(submission)
