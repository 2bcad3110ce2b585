"""The places sealdrop changes gunicorn's behaviour, each for a source's safety.

gunicorn offers no setting for any of them, so each wraps one gunicorn function, once
(a second call does nothing), before workers fork or in each new worker. Tests against
the real server show each in effect (no ``Server`` header and the refused upload's
``Connection: close`` in tests/test_gunicorn_server.py, error pages that quote nothing
in tests/test_leaks.py), so a gunicorn release that moves a function fails a test
rather than silently undoing the patch.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..web.body import RateFloor

_refusal_pages: dict[int, bytes] = {}


def hide_error_details(pages: Mapping[int, bytes] | None = None) -> None:
    """Make the error pages gunicorn writes itself (unparseable requests) say only what
    we wrote: its own page quotes the offending method, version or header back.

    With `pages` (status -> our HTML, web.errors.server_refusal_pages; a later call
    may give them, once the worker's app exists), a refusal gets our calm page in the
    deployment's language, as UTF-8 with the app's security headers; without,
    gunicorn's page with its message left out.
    """
    from gunicorn import util

    from ..web.headers import SECURITY_HEADERS

    _refusal_pages.update(pages or {})
    original = util.write_error
    if getattr(original, "_sealdrop_hidden", False):
        return

    def write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
        # `reason` is gunicorn's fixed phrase for the status; `mesg` quotes the request.
        body = _refusal_pages.get(status_int)
        if body is None:
            original(sock, status_int, reason, "")
            return
        head = [
            f"HTTP/1.1 {status_int} {reason}",
            "Connection: close",
            "Content-Type: text/html; charset=utf-8",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()),
        ]
        util.write_nonblock(sock, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    write_error._sealdrop_hidden = True  # type: ignore[attr-defined]
    util.write_error = write_error


_WITHHELD = ("server:", "date:")


def hide_server_header() -> None:
    """Make gunicorn's responses carry no ``Server`` and no ``Date`` header.

    gunicorn writes ``Server: gunicorn`` and ``Date`` itself, after the application's
    headers, so the app cannot remove them. ``Server`` would tell a visitor which
    software (and so which known weaknesses) sits behind the onion address. ``Date``
    gives the server's clock to the second with every answer: the skew of a clock
    is a known way to tell which machine runs an onion service, and nothing a source's
    browser does needs it. Called in the master before workers fork, so every worker
    inherits it.
    """
    from gunicorn.http import wsgi

    original = wsgi.Response.default_headers
    if getattr(original, "_sealdrop_hidden", False):
        return

    def default_headers(self: Any) -> list[str]:
        headers: list[str] = original(self)
        return [line for line in headers if not line.lower().startswith(_WITHHELD)]

    default_headers._sealdrop_hidden = True  # type: ignore[attr-defined]
    wsgi.Response.default_headers = default_headers


def honour_connection_close() -> None:
    """Make gunicorn close the connection when the app's response says ``Connection: close``.

    gunicorn drops the app's hop-by-hop headers and decides keep-alive itself, but only
    the app knows when a refused upload's body was not wholly read (web/discard.py,
    `discard_refused_body`): then the answer must say ``Connection: close`` and the
    connection must end, rather than gunicorn announce keep-alive and cut it anyway.
    Called in the master before workers fork.
    """
    from gunicorn.http import wsgi

    original = wsgi.Response.process_headers
    if getattr(original, "_sealdrop_close", False):
        return

    def process_headers(self: Any, headers: list[tuple[str, str]]) -> None:
        original(self, headers)
        for name, value in headers:
            if name.lower() == "connection" and value.strip().lower() == "close":
                self.force_close()

    process_headers._sealdrop_close = True  # type: ignore[attr-defined]
    wsgi.Response.process_headers = process_headers


class _Input:
    ended = False


_input = _Input()


def _inputs_ended() -> bool:
    return _input.ended


# Socket readers parsing a request head of which no byte has come yet: connections
# that hold no request (limit_request_heads keeps it), and the attribute that marks
# one `close_idle_connections` ended.
_awaiting_first_byte: set[Any] = set()
_ENDED_IDLE = "sealdrop_ended_idle"


def close_idle_connections() -> None:
    """End every connection of this process waiting for a request's first byte: a new
    connection that has sent nothing yet, or a kept-alive one between requests (a
    worker stopping or being replaced: they hold nothing to finish, and waiting for
    them would keep the worker up to the head deadline)."""
    for reader in list(_awaiting_first_byte):
        setattr(reader, _ENDED_IDLE, True)
        with contextlib.suppress(OSError):
            reader.sock.shutdown(socket.SHUT_RD)


def end_every_input(connections: Iterable[socket.socket]) -> None:
    """From now on every socket reader of this process reports the end of what its
    client sends, as if each client had stopped sending: an upload keeps what arrived
    (what gunicorn's reader already held included), marked cut; a request head still
    arriving is dropped. `connections` are shut down for reading, which wakes each
    read waiting on one (server.worker, when the service stops)."""
    _input.ended = True
    for connection in connections:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RD)


def watch_body_pieces() -> None:
    """Report each piece gunicorn's socket reader receives to the body's RateFloor
    (web.body.watch_socket_reads sets it per request), and end the body once the
    floor is broken; and end every body at once after `end_every_input`.

    gunicorn's body reads block until the whole size asked for has come, so only the
    socket reader sees a trickle as it arrives (a body of declared length is received
    in place instead, with the same checks: `read_bodies_in_place`). Once the floor is
    tripped the reader answers as if the client had stopped sending: what arrived is
    handed over, and the upload ends as BodyTooSlow (refused: nothing kept). Called in
    the master before workers fork.
    """
    from gunicorn.http.unreader import SocketUnreader

    original = SocketUnreader.chunk
    if getattr(SocketUnreader, "sealdrop_watchable", False):
        return

    def chunk(self: Any, size_hint: int | None = None) -> bytes:
        if _input_over(self):
            return b""
        try:
            return piece(self, size_hint)
        except OSError:
            # A read woken by the shutdown of end_every_input or close_idle_connections.
            if _input_over(self):
                return b""
            raise

    def piece(self: Any, size_hint: int | None) -> bytes:
        head_limits: tuple[float, float | None] | None = getattr(self, HEAD_DEADLINE, None)
        if head_limits is not None:
            return _head_piece(self, original, size_hint, head_limits)
        floor: RateFloor | None = getattr(self, BODY_WATCHER, None)
        if floor is None:
            data: bytes = original(self, size_hint)
            return data
        if floor.tripped:
            return b""
        data = original(self, size_hint)
        floor.arrived(len(data))
        return data

    SocketUnreader.chunk = chunk
    SocketUnreader.sealdrop_watchable = True


def _input_over(reader: Any) -> bool:
    """The socket reader must report the end of what its client sends: every input
    ended (`end_every_input`), or this connection closed as idle."""
    return _inputs_ended() or getattr(reader, _ENDED_IDLE, False)


def read_bodies_in_place() -> None:
    """Give gunicorn's request body a ``readinto`` that receives straight into the
    caller's buffer, and returns what has arrived rather than waiting for all it asked.

    gunicorn's own body only has ``read``: each megabyte of an upload was received into
    a new bytes object, gathered in a BytesIO, copied out of it and sliced (five
    copies, about 5 MiB of short-lived buffers at a time), and a read waited until its
    whole size had come, so a client that sent one fast piece and then trickled had a
    megabyte gathered for it as slowly as it liked. Werkzeug's stream uses
    ``readinto`` when the body has one: a body of declared length, with nothing held
    back in gunicorn's buffers, is then received into the upload's own buffer
    (web.body.BodyReader) with what `watch_body_pieces` does for each piece: the rate
    floor told, the end reported once inputs end. Anything else (a chunked body,
    bytes gunicorn already holds) goes through gunicorn's ``read``. Called in the
    master before workers fork.
    """
    from gunicorn.http.body import Body, LengthReader

    if getattr(Body, "sealdrop_readinto", False):
        return

    def readinto(self: Any, target: Any) -> int:
        view = memoryview(target).cast("B")
        reader = self.reader
        unreader: Any = getattr(reader, "unreader", None)
        if not (
            isinstance(reader, LengthReader)
            and isinstance(getattr(unreader, "sock", None), socket.socket)
        ):
            return _read_into(self, view, len(view))  # a chunked body: gunicorn's way
        held = _held(self.buf) + _held(unreader.buf)
        if held:
            # What gunicorn received along with the head, first: no wait for more.
            return _read_into(self, view, min(len(view), held))
        size = min(len(view), reader.length)
        if size <= 0:
            return 0
        # The first bytes are waited for; then whatever has already arrived, read from
        # the descriptor itself (the event loop's sockets are non-blocking; a blocking
        # one is never read so), so that a fast upload still fills large pieces and a
        # slow one is handed what came.
        sock = unreader.sock
        count = _receive_into(unreader, view[:size], sock.recv_into)
        descriptor = sock.fileno()
        if count and not os.get_blocking(descriptor):
            arrived = functools.partial(_arrived_into, descriptor)
            while count < size:
                more = _receive_into(unreader, view[count:size], arrived)
                if not more:
                    break
                count += more
        reader.length -= count
        return count

    Body.readinto = readinto
    Body.sealdrop_readinto = True


def _held(buffer: Any) -> int:
    """The bytes in one of gunicorn's BytesIO buffers."""
    buffer.seek(0, 2)
    return int(buffer.tell())


def _read_into(body: Any, view: memoryview, size: int) -> int:
    data = body.read(size)
    view[: len(data)] = data
    return len(data)


def _receive_into(unreader: Any, view: memoryview, receive: Callable[[memoryview], int]) -> int:
    """One `receive` from `unreader`'s socket into `view`, as `watch_body_pieces`'s
    ``chunk`` would: 0 once the input is over or the rate floor tripped."""
    if _input_over(unreader):
        return 0
    floor: RateFloor | None = getattr(unreader, BODY_WATCHER, None)
    if floor is not None and floor.tripped:
        return 0
    try:
        count = receive(view)
    except OSError:
        if _input_over(unreader):
            return 0
        raise
    if floor is not None:
        floor.arrived(count)
    return int(count)


def _arrived_into(descriptor: int, view: memoryview) -> int:
    """What has already arrived on a non-blocking socket, into `view`; 0 if nothing has."""
    try:
        return os.readv(descriptor, [view])
    except BlockingIOError:
        return 0


# The attribute of gunicorn's socket reader holding the body's RateFloor while a request
# body is read (web.body.watch_socket_reads sets it; `watch_body_pieces` reports to it).
# Here, not in web.body, so that the master, which applies the patches, imports no
# Werkzeug: every page it holds is counted again in its worker (startup.py).
BODY_WATCHER = "sealdrop_body_watcher"
# The attribute of gunicorn's socket reader holding, while gunicorn parses a request
# head (or discards an unread body: `bound_body_drains`), when it must be complete by
# and (None once a byte came) when its first byte must have come by
# (`limit_request_heads`).
HEAD_DEADLINE = "sealdrop_head_deadline"
# The attribute that marks a socket reader whose connection has had a request already.
_KEPT_ALIVE = "sealdrop_kept_alive"
# The bytes a request head may still bring (`limit_request_heads`): Tor Browser's
# heads are under 1 KiB. gunicorn's own limits (50 fields of 8 KiB) let one connection
# hold 400 KiB for the whole head deadline, and gunicorn copies its whole buffer for
# each piece that arrives, so such heads also cost CPU quadratically (a hostile
# review: 300 of them added 235 MiB and held the loop for seconds). A piece may bring
# the body's first bytes along: those count too.
MAX_HEAD_BYTES = 16 * 1024
_HEAD_ROOM = "sealdrop_head_room"


def limit_request_heads(seconds: float, idle_seconds: float) -> None:
    """A request head must be complete within `seconds` of the moment gunicorn starts
    reading it (setting head_timeout_seconds): the connection's opening, or the
    previous answer on a kept-alive connection. Like Apache's mod_reqtimeout
    ``header=``: a client sending its head a byte at a time, or nothing, no longer
    holds a connection for as long as it likes. On a kept-alive connection the next
    request's first byte must also come within `idle_seconds` (gunicorn's keepalive),
    so an idle connection is not held for the whole deadline (and a worker being
    replaced is not kept waiting on it). The connection is closed without an answer
    (as gunicorn closes one whose client went away); nothing of the request is
    logged. Works with `watch_body_pieces`' socket reader, which must be installed
    too. Called in the master before workers fork."""
    from gunicorn.http.message import Request

    original = Request.parse
    if getattr(original, "_sealdrop_head_deadline", False):
        return

    def parse(self: Any, unreader: Any) -> Any:
        now = time.monotonic()
        first_byte_by = now + idle_seconds if getattr(unreader, _KEPT_ALIVE, False) else None
        setattr(unreader, HEAD_DEADLINE, (now + seconds, first_byte_by))
        setattr(unreader, _HEAD_ROOM, MAX_HEAD_BYTES)
        _awaiting_first_byte.add(unreader)
        try:
            return original(self, unreader)
        finally:
            _awaiting_first_byte.discard(unreader)
            setattr(unreader, HEAD_DEADLINE, None)
            setattr(unreader, _HEAD_ROOM, None)
            setattr(unreader, _KEPT_ALIVE, True)

    parse._sealdrop_head_deadline = True  # type: ignore[attr-defined]
    Request.parse = parse


def _head_piece(
    reader: Any, receive: Any, size_hint: int | None, limits: tuple[float, float | None]
) -> bytes:
    """The next piece of a request head, or b"" (gunicorn then closes the connection)
    once its deadline has passed; a silent client is waited for until then only."""
    deadline, first_byte_by = limits
    remaining = (deadline if first_byte_by is None else min(deadline, first_byte_by)) - (
        time.monotonic()
    )
    if remaining <= 0:
        return b""
    sock = reader.sock
    prior = sock.gettimeout()
    try:
        sock.settimeout(remaining if prior is None else min(prior, remaining))
        data: bytes = receive(reader, size_hint)
    except TimeoutError:
        return b""
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(prior)
    if data:
        _awaiting_first_byte.discard(reader)
        if first_byte_by is not None:
            setattr(reader, HEAD_DEADLINE, (deadline, None))
        room: int | None = getattr(reader, _HEAD_ROOM, None)
        if room is not None:
            if len(data) > room:
                return b""  # a head larger than any browser's: closed, unanswered
            setattr(reader, _HEAD_ROOM, room - len(data))
    return data


# Most of an unread request body gunicorn discards before reading the connection's
# next request (`bound_body_drains`): a browser's requests carry none where nothing
# reads them.
DRAIN_MAX_BYTES = 64 * 1024


def bound_body_drains(seconds: float) -> None:
    """Bound how long and how much gunicorn reads to discard a request body the app
    did not read (a GET or a 404 declaring a body) before the connection's next
    request: at most `seconds` and DRAIN_MAX_BYTES, then the connection is closed.

    gunicorn drains it with no deadline and no cap, after the app's socket timeouts
    are gone and before the head deadline begins, so a request declaring a body it
    never sends was held for ever: enough of them silenced the service (found by a
    hostile review, tests/test_head_deadline.py). Called in the master before workers
    fork."""
    from gunicorn.http.parser import Parser

    original = Parser.finish_body
    if getattr(original, "_sealdrop_bounded", False):
        return

    def finish_body(self: Any, deadline: float | None = None, max_bytes: int | None = None) -> bool:
        if deadline is None:
            deadline = time.monotonic() + seconds
        # gunicorn checks its deadline only between reads of 1 KiB, each of which
        # waits for its whole KiB: a trickle would outlast it. The socket reader ends
        # at the deadline instead, as it does for a request head.
        setattr(self.unreader, HEAD_DEADLINE, (deadline, None))
        try:
            cap = DRAIN_MAX_BYTES if max_bytes is None else max_bytes
            done: bool = original(self, deadline, cap)
        finally:
            setattr(self.unreader, HEAD_DEADLINE, None)
        return done and time.monotonic() < deadline

    finish_body._sealdrop_bounded = True  # type: ignore[attr-defined]
    Parser.finish_body = finish_body
