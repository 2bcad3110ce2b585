"""The body's rate floor on the real server (`sealdrop serve --local-only`), with the
window scaled down from 120 s to 3 s so the test takes seconds: a body trickling
below the floor is dropped within about a window, answered at once, and leaves
nothing (refused, not cut: no partial submission); an upload at a
Tor-like rate with stalls shorter than the window completes and opens byte-identical.
"""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

from sealdrop.tests.canaries import canary
from sealdrop.tests.reliability import (
    HttpResponse,
    NoResponse,
    Result,
    Service,
    connect,
    multipart,
    open_sealed,
    read_response,
    request_head,
    running,
)

FLOOR = 2000  # bytes a second
WINDOW = 3  # seconds
SETTINGS = {
    "SEALDROP_BODY_MIN_RATE": str(FLOOR),
    "SEALDROP_BODY_RATE_WINDOW_SECONDS": str(WINDOW),
}


def send_like_tor(
    port: int, payload: bytes, piece: int, pause: float, stall: float
) -> HttpResponse:
    """`piece` bytes every `pause` seconds, and a `stall` after each second of sending."""
    with connect(port, timeout=30) as sock:
        for index, start in enumerate(range(0, len(payload), piece)):
            sock.sendall(payload[start : start + piece])
            time.sleep(pause)
            if index % round(1 / pause) == round(1 / pause) - 1:
                time.sleep(stall)
        return read_response(sock, time.monotonic() + 30)


def test_a_trickling_body_is_dropped_and_a_stalling_tor_upload_is_not(tmp_path: Path) -> None:
    service = Service.create(tmp_path / "service")
    result = Result(
        "slow_bodies",
        load=f"1 body trickling 100 B/s after 8 KB; 1 upload at 20 KB/s with a 1.5 s stall "
        f"every second (body_min_rate {FLOOR} B/s over {WINDOW} s, scaled from 500 over 120)",
        faults="a body below the rate floor",
        bad_inputs=1,
    )
    slow_marker, tor_marker = canary(), canary()
    slow_file = os.urandom(200_000)
    tor_file = os.urandom(120_000)
    with running(service, SETTINGS) as server:
        # 1. The message and 8 KB of the file at once, then 100 bytes a second.
        body, ctype = multipart(slow_marker, [("slow.bin", slow_file)])
        payload = request_head(ctype, len(body)) + body
        head_and_start = payload.index(slow_file) + 8000
        started = time.monotonic()
        with connect(server.port, timeout=20) as sock:
            sock.sendall(payload[:head_and_start])
            sent = head_and_start
            answered = False
            while time.monotonic() - started < 20 and sent < len(payload):
                if select.select([sock], [], [], 0.5)[0]:
                    answered = True
                    break
                try:
                    sock.sendall(payload[sent : sent + 50])
                except OSError:
                    break
                sent += 50
            dropped_after = time.monotonic() - started
            try:
                answer = read_response(sock, time.monotonic() + 5)
            except NoResponse:
                answer = None
        assert answered and answer is not None and answer.status_code == 400
        assert answer.header("Connection") == "close"
        # Dropped once a whole window was below the floor (and a mark's step), not later.
        assert WINDOW <= dropped_after < WINDOW + 4, dropped_after

        # 2. 20 KB/s in 2 KB pieces, with a 1.5 s stall after every second of sending:
        # scaled to the 3 s window like a minute's stall to the 120 s one.
        body, ctype = multipart(tor_marker, [("tor.bin", tor_file)])
        payload = request_head(ctype, len(body)) + body
        response = send_like_tor(server.port, payload, piece=2000, pause=0.1, stall=1.5)
        assert response.status_code == 200 and response.receipt

    stored = {}
    for path in service.sealed():
        opened = open_sealed(path, service.key)
        stored[opened.message] = opened
    result.acknowledged = 1
    result.stored = len(stored)
    result.opened = int(stored[tor_marker].files == [("tor.bin", tor_file)])
    result.lost = 1 - result.opened
    result.notes = [
        f"trickling body dropped {dropped_after:.1f} s after it began (window {WINDOW} s), "
        "answered 400 with Connection: close; nothing of it kept (no spool file, no .part)",
        f"stalling upload: {len(tor_file)} bytes stored whole, opened byte-identical",
    ]
    result.write()
    assert set(stored) == {tor_marker} and not service.parts()
    whole = stored[tor_marker]
    assert whole.cut is None and whole.files == [("tor.bin", tor_file)]


def test_a_trickled_codename_form_is_dropped_after_a_window(tmp_path: Path) -> None:
    """The replies page's small form is read under the same floor: trickled a byte a
    second (2 KiB would take half an hour, each byte inside body_idle_seconds) it is
    dropped within about a window; sent at once it is answered."""
    service = Service.create(tmp_path / "service")
    settings = {
        **SETTINGS,
        **service.codename_settings(),
        "SEALDROP_CODENAME_KDF_MEMORY": "8 KiB",
        "SEALDROP_CODENAME_KDF_PASSES": "1",
    }
    form = b"codename=" + b"a" * 2000
    head = (
        "POST /replies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(form)}\r\n\r\n"
    ).encode()
    with running(service, settings) as server:
        sock = connect(server.port, 10)
        started = time.monotonic()
        ended = None
        try:
            sock.sendall(head)
            for byte in form[: 4 * WINDOW + 6]:
                readable, _, _ = select.select([sock], [], [], 1.0)
                if readable:
                    ended = time.monotonic() - started
                    break
                sock.sendall(bytes([byte]))
        finally:
            sock.close()
        assert ended is not None and ended < 3 * WINDOW + 2, ended
        whole = connect(server.port, 10)
        try:
            whole.sendall(head + form)
            answer = read_response(whole, time.monotonic() + 10)
        finally:
            whole.close()
        assert answer.status_code == 400  # not a codename, but read and answered
