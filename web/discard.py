"""Discarding the rest of a refused body, so that the browser can show the answer.

A refusal is answered only once the rest of the body has been read and thrown away. A
browser still sending when the server answers and closes reports "connection reset"
(the kernel resets a socket closed with unread data) and never shows the page. The
bytes read here are never kept or written anywhere: by then the submission was
aborted.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from typing import IO

from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wrappers import Request

# Bounds: the body's own limit, and a time a slow circuit may need for the rest of a
# large body.
DISCARD_SECONDS = 120.0
# A declared length over the limit is not waited for: a little is read, so that the
# client's first bytes in flight do not meet a reset, and the connection is then closed.
EARLY_DISCARD_BYTES = 1024 * 1024
EARLY_DISCARD_SECONDS = 3.0
# Small reads: gunicorn's body reads block until the whole size has arrived, and the
# time bound is checked between reads.
_DISCARD_READ = 64 * 1024


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
