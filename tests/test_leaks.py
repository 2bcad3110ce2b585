"""Leaks: after uploads of every kind (good, hostile, cut off, killed mid-way), no file
the service wrote holds any canary marker, and no response names a path, a stack trace
or a version.

Canaries go everywhere a source's data can: the message, file names, file contents,
part content types, unknown fields, the URL path and query, request headers. The
scan covers this test's service folder (spool, temporary folder, log) and those of
every other reliability test that ran before it in the same session, looking for
any canary of any test (they share one shape).
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealdrop.tests.canaries import canary, find_any_canary, find_canaries
from sealdrop.tests.reliability import (
    HOST,
    HttpResponse,
    NoResponse,
    RealServer,
    Result,
    Service,
    connect,
    exchange,
    get,
    multipart,
    request_head,
    revealing,
    running,
)


def raw_get(server: RealServer, target: str, headers: dict[str, str]) -> HttpResponse:
    lines = [f"GET {target} HTTP/1.1", f"Host: {HOST}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return exchange(server.port, ("\r\n".join(lines) + "\r\n\r\n").encode())


def hostile_requests(marker: str) -> list[bytes]:
    """Raw requests that are refused, each carrying `marker` somewhere."""
    body, ctype = multipart(marker, [(f"{marker}.txt", marker.encode() * 50)])
    bnd = ctype.split("=", 1)[1]
    part_head = f'--{bnd}\r\nContent-Disposition: form-data; name="files"; filename="{marker}"\r\n'
    big_header = (part_head + "X-A: " + marker * 500 + "\r\n\r\ndata\r\n").encode()
    big_header += f"--{bnd}--\r\n".encode()
    bad_name = (
        f'--{bnd}\r\nContent-Disposition: form-data; name="files"; filename="'.encode()
        + marker.encode()
        + b'\xff\x00.txt"\r\n\r\ndata\r\n'
        + f"--{bnd}--\r\n".encode()
    )
    endless = (part_head + "X-A: " + marker * 100000).encode()
    return [
        # Broken framing, no closing boundary.
        request_head(ctype, len(body) - 40) + body[:-40],
        # A part header over the limit.
        request_head(ctype, len(big_header)) + big_header,
        # Invalid UTF-8 and NUL in a file name.
        request_head(ctype, len(bad_name)) + bad_name,
        # A part header that never ends.
        request_head(ctype, len(endless)) + endless,
        # A wrong content type naming the marker.
        request_head(f"text/{marker}", len(body)) + body,
        # An oversized header field carrying the marker.
        request_head(ctype, len(body)).replace(
            b"Connection: close", f"Connection: close\r\nX-{marker}: {'a' * 9000}".encode()
        )
        + body,
        # Malformed chunked encoding around the marker.
        request_head(ctype, None, chunked=True) + f"{marker}\r\n".encode() + body,
    ]


def trickle_then_vanish(server: RealServer, marker: str) -> None:
    """Half an upload, then the connection drops (closed tab, dead circuit)."""
    body, ctype = multipart(marker, [(f"{marker}.bin", marker.encode() * 30000)])
    with connect(server.port, timeout=10) as sock:
        sock.sendall(request_head(ctype, len(body)) + body[: len(body) // 2])
        time.sleep(0.2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def killed_mid_upload(server: RealServer, marker: str) -> None:
    """Half an upload, then SIGKILL of every worker."""
    body, ctype = multipart(marker, [(f"{marker}.bin", marker.encode() * 30000)])
    with connect(server.port, timeout=10) as sock:
        sock.sendall(request_head(ctype, len(body)) + body[: len(body) // 2])
        deadline = time.monotonic() + 5
        while not server.service.parts() and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in server.worker_pids():
            server.kill_worker()


def test_no_canary_on_disk_and_no_revealing_response(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    service = Service.create(tmp_path / "service")
    started = time.monotonic()
    markers: list[str] = []
    responses: list[HttpResponse] = []
    bad = 0

    def mark() -> str:
        markers.append(canary())
        return markers[-1]

    with running(service) as server:
        for size in (0, 5000, 300_000):
            m = mark()
            body, ctype = multipart(f"message {m}", [(f"{m}.pdf", m.encode() * (size // 20 + 1))])
            ctype_with_marker = ctype + f"; x-note={m}"
            responses.append(
                exchange(server.port, request_head(ctype_with_marker, len(body)) + body)
            )
            assert responses[-1].receipt, responses[-1].status_code
        m = mark()
        headers = {
            "User-Agent": f"Mozilla/5.0 {m}",
            "Referer": f"http://{m}.onion/",
            "Cookie": f"session={m}",
            "Accept-Language": m,
        }
        for target in (f"/{m}", f"/?q={m}", f"/static/{m}.css", f"/submit?{m}=1", "/submit"):
            responses.append(raw_get(server, target, headers))
            bad += 1
        for payload in hostile_requests(mark()):
            with contextlib.suppress(NoResponse):
                responses.append(exchange(server.port, payload, timeout=10, shutdown_write=True))
            bad += 1
        trickle_then_vanish(server, mark())
        killed_mid_upload(server, mark())
        bad += 2
        server.wait_ready()
        responses.append(get(server.port))
    # A restart clears what the kill left; the scan then covers every byte written.
    with running(service):
        pass

    for response in responses:
        assert not revealing(response), (response.status_code, revealing(response))
        for m in markers:
            assert m.encode() not in response.body
            assert all(m not in value for _, value in response.headers)
    assert {r.status_code for r in responses} >= {200, 400, 404, 405}

    roots = [service.root]
    assert not find_canaries(roots, markers)
    # Every other reliability service folder of this session (spool, tmp, log).
    earlier = [log.parent for log in tmp_path_factory.getbasetemp().rglob("server.log")]
    leaks = find_any_canary(earlier)
    assert not leaks, leaks[:5]

    result = Result(
        "leaks",
        load="good, hostile, cut-off and killed uploads; canaries in every field and header",
        faults="client disconnect, SIGKILL of all workers mid-upload",
        bad_inputs=bad,
        acknowledged=3,
        stored=len(service.sealed()),
        opened=len(service.sealed()),
        notes=[
            f"{len(responses)} responses checked for paths, stack traces and versions",
            f"{len(earlier)} service folders scanned (this test's and earlier tests'), "
            "0 canaries found",
        ],
    )
    result._started = started
    result.write()


@pytest.fixture(scope="module")
def refusing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """One server for every malformed request below: gunicorn refuses each on its own
    connection and keeps no state from it, so a fresh server per case only added its
    start and stop (about 2 s each). Its folder is under the session's temporary root,
    where the canary scan above looks."""
    service = Service.create(tmp_path_factory.mktemp("refusals") / "service")
    with running(service) as server:
        yield server


@pytest.mark.parametrize(
    "template",
    [
        b"MARK / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/MARK\r\nHost: x\r\n\r\n",
        b"GET /MARK HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nMARK\x01: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: MARK\x00\r\n\r\n",
        b"POST /submit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: MARK\r\n\r\n",
    ],
    ids=["method", "version", "request-line", "header-name", "header-value", "coding"],
)
def test_the_servers_own_error_pages_do_not_echo_the_request(
    refusing_server: RealServer, template: bytes
) -> None:
    # gunicorn answers requests it cannot parse itself, before the app sees them.
    marker = canary()
    response = exchange(refusing_server.port, template.replace(b"MARK", marker.encode()))
    assert response.status_code in (400, 501)
    assert marker.encode() not in response.body
    assert not revealing(response)
