"""Stream a multipart/form-data upload straight into a sealed spool submission.

Werkzeug's own form parser keeps files over 500 KB in a plaintext temporary file.
Here the body is read in pieces into one reused buffer (web.body), framed by our own
multipart framing (web.multipart, which also says why it is ours), and every piece
of a part's data goes from that buffer to the `Submission` (web.builder), which
seals it before anything reaches the disk. Each byte is copied once on its way;
memory stays bounded by one read plus one part header; no byte of plaintext is ever
written anywhere, and the buffer is zeroed when the body is done.

Every limit is checked as the bytes arrive. Whatever goes wrong, the caller's
``with spool.begin()`` block aborts the submission, so nothing is left behind. The
reasons for a refusal are in web.refusals; reading the rest of a refused body, so
that the browser shows the answer, is web.discard.
"""

from __future__ import annotations

from typing import IO

from ..storage.spool import Submission
from .body import BodyReader
from .builder import SubmissionBuilder
from .multipart import MultipartFraming
from .refusals import BodyTooLarge, MalformedUpload, UploadLimits

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
    framing = MultipartFraming(boundary, limits.max_part_header_bytes)
    builder = SubmissionBuilder(submission, limits)
    body = BodyReader(stream, content_length, limits.max_body_bytes, framing.held_bound)
    try:
        while not framing.closed:
            if not body.read():
                raise MalformedUpload("the body ends before the closing delimiter")
            body.consume(framing.feed(body.buffer, body.filled, builder))
        body.read_to_end()  # the epilogue, counted against the limit and dropped
    finally:
        body.wipe()
    builder.finish()
