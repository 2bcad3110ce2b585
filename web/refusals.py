"""Why an upload is refused: the limits it is held to, and one exception per reason.

Every refusal is answered with a calm page naming only its HTTP status (web.errors),
after the submission was aborted; the messages below are for tests and debugging
and are never shown to the source or logged with request data.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import Settings


@dataclass(frozen=True)
class UploadLimits:
    max_body_bytes: int
    max_files: int
    max_message_chars: int
    max_part_header_bytes: int
    # The body's floor: at least this many bytes a second over any `body_rate_window`
    # seconds (0: no floor). web.body.RateFloor.
    body_min_rate: int = 0
    body_rate_window: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        return cls(
            max_body_bytes=settings.max_body_bytes,
            max_files=settings.max_files,
            max_message_chars=settings.max_message_chars,
            max_part_header_bytes=settings.max_part_header_bytes,
            body_min_rate=settings.body_min_rate,
            body_rate_window=settings.body_rate_window_seconds,
        )


class UploadRejected(Exception):
    """Root of the reasons an upload is refused; `status` is the HTTP status to answer."""

    status = 400


class MalformedUpload(UploadRejected):
    """The body is not the multipart/form-data the form sends: no boundary, broken
    framing, an undecodable or non-conforming part header, the message after a file,
    a body that ends before its closing delimiter."""

    status = 400


class EmptySubmission(UploadRejected):
    """Neither a message nor any file was sent: there is nothing to store."""

    status = 400


class ClientGone(UploadRejected):
    """The body ended early because the client went away: it closed the connection (a
    closed tab, a lost circuit) or the connection failed, including the idle bound
    (web.idle) firing. Raised only by `web.body.BodyReader.read`, the one place that
    decides it; every other early ending is a MalformedUpload.

    The one refusal that keeps anything: web.upload seals what arrived, marked cut
    (records CUT), before it goes on. BodyTooSlow is one of these for the reading code
    (the body is over, answered at once, the connection closed) but keeps nothing."""

    status = 400


class BodyTooSlow(ClientGone):
    """The body arrived slower than `body_min_rate` bytes a second over the last
    `body_rate_window_seconds`: a client holding a connection by trickling. Ended like a
    client that went away (a ClientGone: nothing more is read, the answer comes at once
    and closes the connection), but refused: nothing of it is kept, so that such bodies
    leave no partial submissions for the reviewer to sift (web.upload)."""


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
