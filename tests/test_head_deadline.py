"""The request-head deadline on the real server (`sealdrop serve --local-only`), scaled
from 60 s to 3 s: a head trickled a byte at a time, and one that stops after its first
bytes, are closed soon after the deadline with no answer; a head that comes in time,
a kept-alive connection's next request and a slow body (the body has its own floor)
are unaffected."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from sealdrop.tests.reliability import (
    Result,
    Service,
    connect,
    exchange,
    get,
    multipart,
    open_sealed,
    read_response,
    request_head,
    running,
)

DEADLINE = 3
SETTINGS = {"SEALDROP_HEAD_TIMEOUT_SECONDS": str(DEADLINE)}
HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n"


def closed_after(sock: socket.socket, trickle: bytes, pause: float, bound: float) -> float | None:
    """Send `trickle` a byte every `pause` s; seconds until the server closed, or None."""
    started = time.monotonic()
    sock.settimeout(pause)
    for byte in trickle:
        try:
            if sock.recv(1) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - started
        if time.monotonic() - started > bound:
            return None
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return time.monotonic() - started
    return None


def test_slow_heads_are_closed_after_the_deadline_and_nothing_else_is(tmp_path: Path) -> None:
    service = Service.create(tmp_path / "service")
    result = Result(
        "slow_heads",
        load=f"a head trickled 1 byte / 0.5 s; a head stopping after 8 bytes; heads in "
        f"time, kept-alive, a body (head_timeout_seconds {DEADLINE}, scaled from 60)",
        faults="slow and stalled request heads",
        bad_inputs=2,
    )
    with running(service, SETTINGS) as server:
        # A byte every 0.5 s of a 60-byte head: 30 s if let be.
        with connect(server.port, timeout=20) as sock:
            took = closed_after(sock, HEAD, 0.5, bound=15)
        result.notes.append(f"trickled head closed after {took or 0:.1f} s (deadline {DEADLINE} s)")
        result.write()
        assert took is not None and DEADLINE - 0.6 <= took <= DEADLINE + 2, took

        # A head that stops after its first bytes.
        with connect(server.port, timeout=20) as sock:
            sock.sendall(b"GET / HT")
            started = time.monotonic()
            sock.settimeout(15)
            assert sock.recv(1) == b""
            stalled = time.monotonic() - started
        result.notes.append(f"stalled head closed after {stalled:.1f} s")
        result.write()
        assert DEADLINE - 0.6 <= stalled <= DEADLINE + 2

        # In time, in pieces: answered. Then the same connection, kept alive, idles for
        # half the deadline before its next request, which is answered too (the idle
        # time counts: the next head is due within the deadline of the previous answer,
        # and a margin of 0.5 s failed a loaded CI run).
        with connect(server.port, timeout=20) as sock:
            for start in range(0, len(HEAD), 20):
                sock.sendall(HEAD[start : start + 20])
                time.sleep(0.5)
            first = read_response(sock, time.monotonic() + 10)
            assert first.status_code == 200
            time.sleep(DEADLINE / 2)
            sock.sendall(HEAD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            assert read_response(sock, time.monotonic() + 10).status_code == 200

        # A body taking longer than the head's deadline (5 s) is not cut by it: the body
        # has its own floor (test_body_rate_server.py).
        body, ctype = multipart("a slow body", [("slow.bin", b"s" * 40_000)])
        payload = request_head(ctype, len(body)) + body
        response = exchange(server.port, payload, timeout=30, pace=(4_100, 0.5))
        assert response.status_code == 200
        assert get(server.port).status_code == 200
    result.acknowledged = 1
    stored = service.sealed()
    result.stored = len(stored)
    opened = [open_sealed(path, service.key) for path in stored]
    result.opened = sum(o.files == [("slow.bin", b"s" * 40_000)] for o in opened)
    result.lost = result.acknowledged - result.opened
    result.notes.append("heads in time, a kept-alive connection's next request, a body: answered")
    result.write()
    assert result.opened == 1 and result.lost == 0


def test_a_body_nothing_reads_is_not_waited_for_past_the_keep_alive_bound(
    tmp_path: Path,
) -> None:
    """A GET declaring a 100 MB body it never sends, and one trickling such a body a
    byte a second: each is answered, then closed within gunicorn's keep-alive bound
    (server.patches.bound_body_drains). gunicorn used to drain an unread body with no
    deadline, so each such connection was held for ever (a hostile review: 100 of
    them silenced a service allowing 100 connections)."""
    from sealdrop.server.gunicorn_conf import KEEPALIVE

    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\n"
    service = Service.create(tmp_path / "service")
    with running(service, SETTINGS) as server:
        silent, trickling = connect(server.port, 10), connect(server.port, 10)
        try:
            for sock in (silent, trickling):
                sock.sendall(head)
                answer = read_response(sock, time.monotonic() + 10)
                assert answer.status_code == 200
            held_for = closed_after(trickling, b"x" * 30, 1.0, KEEPALIVE + 5)
            assert held_for is not None and held_for <= KEEPALIVE + 3, held_for
            silent.settimeout(KEEPALIVE + 3)
            assert silent.recv(1) == b""  # closed, not waited on
        finally:
            silent.close()
            trickling.close()
        assert get(server.port).status_code == 200


def test_a_head_larger_than_any_browsers_is_closed_unanswered(tmp_path: Path) -> None:
    """A head within gunicorn's own limits (50 fields of 8 KiB) but over
    server.patches.MAX_HEAD_BYTES is closed without an answer: each held up to
    400 KiB for the head deadline, and gunicorn parses it in quadratic time."""
    from sealdrop.server.patches import MAX_HEAD_BYTES

    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 4000) for i in range(6))
    assert len(fields) > MAX_HEAD_BYTES
    service = Service.create(tmp_path / "service")
    with running(service, SETTINGS) as server:
        sock = connect(server.port, 10)
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + fields + b"\r\n")
            sock.settimeout(10)
            assert sock.recv(100) == b""
        finally:
            sock.close()
        # A browser's head with the start of its body in the same pieces is served.
        assert get(server.port).status_code == 200
