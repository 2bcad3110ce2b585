"""Malformed uploads against the real app: every one ends in a calm 4xx page and an
unchanged spool, never a 500, a hang or a partial file.

Most cases go through Flask's test client (fast, thousands of inputs). What only a
real HTTP server can be lied to about, the declared Content-Length and chunked
transfer encoding, goes to the real gunicorn server over a socket with timeouts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from sealdrop.tests.reliability import (
    HttpResponse,
    NoResponse,
    RealServer,
    Result,
    Service,
    connect,
    exchange,
    get,
    multipart,
    open_sealed,
    read_response,
    request_head,
    revealing,
    running,
)

BOUNDARY = "hostileBnd"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
CLOSE = f"--{BOUNDARY}--\r\n".encode()
MAX_PART_HEADER = 2048  # conftest's settings

CASES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def result() -> Iterator[Result]:
    row = Result(
        "hostile_input",
        load="1 client, sequential",
        faults="malformed multipart, lying Content-Length, chunked bodies",
    )
    yield row
    row.write()


def part(headers: bytes, data: bytes) -> bytes:
    return f"--{BOUNDARY}\r\n".encode() + headers + b"\r\n\r\n" + data + b"\r\n"


def message_part(text: bytes = b"hello") -> bytes:
    return part(b'Content-Disposition: form-data; name="message"', text)


def file_part(name: bytes, data: bytes = b"data") -> bytes:
    return part(
        b'Content-Disposition: form-data; name="files"; filename="' + name + b'"\r\n'
        b"Content-Type: application/octet-stream",
        data,
    )


@dataclasses.dataclass
class Refusals:
    """Posts through the test client and checks each answer is a clean refusal."""

    client: FlaskClient
    spool: Path
    result: Result

    def post(self, body: bytes, content_type: str | None = MULTIPART) -> int:
        before = sorted(self.spool.iterdir())
        response = self.client.post("/submit", data=body, content_type=content_type)
        self.result.bad_inputs += 1
        as_http = HttpResponse(
            response.status_code, list(response.headers.items()), response.get_data()
        )
        assert not revealing(as_http)
        assert sorted(self.spool.iterdir()) == before, "the spool changed"
        return response.status_code

    def refused(self, body: bytes, content_type: str | None = MULTIPART) -> None:
        status = self.post(body, content_type)
        assert 400 <= status < 500, status


@pytest.fixture
def refusals(client: FlaskClient, spool_dir: Path, result: Result) -> Refusals:
    return Refusals(client, spool_dir, result)


# --- content types and boundaries ------------------------------------------------------------

GOOD_BODY = message_part() + CLOSE


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json",
        "application/octet-stream",
        "multipart/mixed; boundary=hostileBnd",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=other",
        "multipart/form-data; boundary=" + "b" * 71,
        "multipart/form-data; boundary=hostileBn",
        "multipart/form-data; boundary=\u00e9t\u00e9",
        "form-data; boundary=hostileBnd",
    ],
)
def test_wrong_content_types_and_boundaries_are_refused(
    refusals: Refusals, content_type: str | None
) -> None:
    refusals.refused(GOOD_BODY, content_type)


@CASES
@given(content_type=st.text(max_size=120).filter(lambda t: "\r" not in t and "\n" not in t))
def test_any_content_type_but_the_forms_is_refused(refusals: Refusals, content_type: str) -> None:
    # Only a multipart/form-data type naming the body's own boundary may be accepted.
    if BOUNDARY in content_type and "multipart/form-data" in content_type.lower():
        return
    with contextlib.suppress(UnicodeEncodeError):
        content_type.encode("latin-1")
        refusals.refused(GOOD_BODY, content_type)


@CASES
@given(
    cut=st.integers(min_value=len(CLOSE) - len(b"\r\n") + 1, max_value=200),
    junk=st.binary(max_size=64),
)
def test_a_body_without_its_closing_boundary_is_refused(
    refusals: Refusals, cut: int, junk: bytes
) -> None:
    body = (message_part() + file_part(b"a.txt", b"x" * 100) + CLOSE)[:-cut]
    if f"--{BOUNDARY}--".encode() in body + junk:
        return
    refusals.refused(body + junk)


# --- part headers ---------------------------------------------------------------------------


@CASES
@given(size=st.integers(min_value=MAX_PART_HEADER + 1, max_value=300_000), ended=st.booleans())
def test_huge_or_endless_part_headers_are_refused(
    refusals: Refusals, size: int, ended: bool
) -> None:
    header = b'Content-Disposition: form-data; name="message"; x="' + b"a" * size + b'"'
    body = part(header, b"hi") + CLOSE if ended else f"--{BOUNDARY}\r\n".encode() + header
    refusals.refused(body)


def test_an_endless_header_line_of_a_megabyte_is_refused(refusals: Refusals) -> None:
    refusals.refused(f"--{BOUNDARY}\r\nContent-Disposition: ".encode() + b"z" * 1024 * 1024)


def test_many_header_lines_are_refused(refusals: Refusals) -> None:
    headers = b'Content-Disposition: form-data; name="message"' + b"\r\nX-A: b" * 2000
    refusals.refused(part(headers, b"hi") + CLOSE)


# --- names -------------------------------------------------------------------------------------

_INVALID_UTF8 = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc"])
_NUL = st.just(b"\x00")


@st.composite
def bad_names(draw: st.DrawFn) -> bytes:
    before = draw(st.binary(max_size=20).filter(lambda b: b'"' not in b and b"\r" not in b))
    bad = draw(st.one_of(_INVALID_UTF8, _NUL))
    after = draw(st.text(max_size=10).map(str.encode).filter(lambda b: b'"' not in b))
    name = before.replace(b"\n", b"") + bad + after.replace(b"\r", b"").replace(b"\n", b"")
    # Random bytes before an invalid sequence can complete it (b"\xc2" + b"\x80abc").
    assume(b"\x00" in name or not _is_utf8(name))
    return name


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@CASES
@given(name=bad_names())
def test_file_names_with_invalid_utf8_or_nul_are_refused(refusals: Refusals, name: bytes) -> None:
    refusals.refused(message_part() + file_part(name) + CLOSE)


@CASES
@given(name=bad_names())
def test_field_names_with_invalid_utf8_or_nul_are_refused(refusals: Refusals, name: bytes) -> None:
    refusals.refused(part(b'Content-Disposition: form-data; name="' + name + b'"', b"hi") + CLOSE)


# --- many parts -----------------------------------------------------------------------------


@CASES
@given(count=st.integers(min_value=6, max_value=20_000), with_crlf=st.booleans())
def test_thousands_of_empty_parts_are_refused(
    refusals: Refusals, count: int, with_crlf: bool
) -> None:
    empty = f"--{BOUNDARY}\r\n\r\n".encode() + (b"\r\n" if with_crlf else b"")
    refusals.refused(message_part() + empty * count + CLOSE)


def test_thousands_of_empty_file_parts_are_refused(refusals: Refusals) -> None:
    refusals.refused(message_part() + file_part(b"") * 5000 + CLOSE)


# --- anything at all: refused cleanly, or stored whole ----------------------------------------


@CASES
@given(data=st.data())
def test_mutated_bodies_are_refused_or_stored_whole(
    app: Flask, spool_dir: Path, reviewer_key: PrivateKey, result: Result, data: st.DataObject
) -> None:
    original = message_part("a message ✓".encode()) + file_part(b"f.bin", bytes(range(256)))
    original += CLOSE
    body = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if action == "flip" and at < len(body):
            body[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del body[at:]
        elif action == "insert":
            body[at:at] = data.draw(st.binary(min_size=1, max_size=40))
        elif action == "delete":
            del body[at : at + data.draw(st.integers(1, 40))]
    before = set(spool_dir.iterdir())
    response = app.test_client().post("/submit", data=bytes(body), content_type=MULTIPART)
    result.bad_inputs += 1
    assert response.status_code < 500
    assert not revealing(
        HttpResponse(response.status_code, list(response.headers.items()), response.get_data())
    )
    new = set(spool_dir.iterdir()) - before
    if response.status_code == 200:
        [stored] = new
        opened = open_sealed(stored, reviewer_key)
        assert opened.receipt in response.get_data(as_text=True)
    else:
        assert 400 <= response.status_code < 500
        assert not new


# --- the real server: Content-Length lies and chunked bodies -----------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    service = Service.create(tmp_path_factory.mktemp("hostile") / "service")
    with running(service) as server:
        yield server


def real_body() -> tuple[bytes, str]:
    return multipart("hello", [("a.txt", b"x" * 3000)])


def assert_refused_cleanly(server: RealServer, response: HttpResponse, result: Result) -> None:
    result.bad_inputs += 1
    assert 400 <= response.status_code < 500, response.status_code
    assert not revealing(response)
    assert not server.service.spool_names()


def drain_spool(server: RealServer) -> None:
    """Remove what an accepted request stored, so the next check starts from empty."""
    for path in server.service.sealed():
        open_sealed(path, server.service.key)
        path.unlink()


def assert_stored_whole(server: RealServer, result: Result) -> None:
    """The whole form arrived, closing delimiter included; only bytes its declared length
    promised after the form's end did not. A client that goes then loses nothing: the
    form is stored whole, not marked cut (a cut form: tests/test_cut_uploads.py)."""
    result.bad_inputs += 1
    [stored] = server.service.sealed()
    opened = open_sealed(stored, server.service.key)
    assert opened.cut is None
    assert opened.message == "hello" and opened.files == [("a.txt", b"x" * 3000)]
    stored.unlink()


@pytest.mark.parametrize("short_by", [1, 100, 2999])
def test_a_whole_form_shorter_than_its_content_length_then_closed_is_stored_whole(
    server: RealServer, result: Result, short_by: int
) -> None:
    body, ctype = real_body()
    response = exchange(
        server.port, request_head(ctype, len(body) + short_by) + body, shutdown_write=True
    )
    assert response.status_code == 200 and response.receipt
    assert not revealing(response)
    assert_stored_whole(server, result)


def test_a_whole_form_shorter_than_its_content_length_left_open_is_stored_when_it_goes(
    server: RealServer, result: Result
) -> None:
    """The server waits for the missing bytes (a Tor circuit may stall), serving other
    visitors meanwhile; when the client goes away, the whole form it sent is kept."""
    body, ctype = real_body()
    with connect(server.port, timeout=5) as sock:
        sock.sendall(request_head(ctype, len(body) + 500) + body)
        time.sleep(0.5)
        assert get(server.port, timeout=5).status_code == 200
        with pytest.raises(NoResponse):
            read_response(sock, time.monotonic() + 1.0)
    deadline = time.monotonic() + 10
    while server.service.parts() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.service.parts()
    assert_stored_whole(server, result)


@CASES
@given(cut=st.integers(min_value=len(CLOSE) + 60, max_value=3000))
def test_body_longer_than_its_content_length_is_refused(
    server: RealServer, result: Result, cut: int
) -> None:
    # The declared length ends the body before its closing boundary; the rest is ignored.
    body, ctype = real_body()
    response = exchange(server.port, request_head(ctype, len(body) - cut) + body, timeout=10)
    assert_refused_cleanly(server, response, result)


def test_negative_or_garbage_content_length_is_refused(server: RealServer, result: Result) -> None:
    body, ctype = real_body()
    for value in (b"-5", b"abc", b"1e3", b"0x10", b"99999999999999999999999"):
        head = request_head(ctype, None).replace(
            b"Connection: close", b"Connection: close\r\nContent-Length: " + value
        )
        response = exchange(server.port, head + body, timeout=10, shutdown_write=True)
        assert_refused_cleanly(server, response, result)


def chunked(data: bytes, size: int = 700) -> bytes:
    pieces = [
        b"%x\r\n" % len(data[i : i + size]) + data[i : i + size] + b"\r\n"
        for i in range(0, len(data), size)
    ]
    return b"".join(pieces) + b"0\r\n\r\n"


def test_a_well_formed_chunked_body_is_stored_whole(server: RealServer) -> None:
    body, ctype = real_body()
    response = exchange(server.port, request_head(ctype, None, chunked=True) + chunked(body))
    assert response.status_code == 200
    [stored] = server.service.sealed()
    opened = open_sealed(stored, server.service.key)
    assert opened.receipt == response.receipt
    assert opened.files == [("a.txt", b"x" * 3000)]
    drain_spool(server)


def _bad_chunkings() -> dict[str, Callable[[bytes], bytes]]:
    return {
        "size-not-hex": lambda body: b"zz\r\n" + body,
        "size-negative": lambda body: b"-10\r\n" + body,
        "size-huge": lambda body: b"ffffffffffffffffffff\r\n" + body,
        "no-crlf-after-data": lambda body: b"%x\r\n" % len(body) + body + b"XX0\r\n\r\n",
        "bad-extension": lambda body: b"%x;\x01\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
        "truncated": lambda body: chunked(body)[:-200],
        "no-last-chunk": lambda body: chunked(body)[: -len(b"0\r\n\r\n")],
        "bare-lf": lambda body: chunked(body).replace(b"\r\n", b"\n"),
    }


@pytest.mark.parametrize("how", sorted(_bad_chunkings()))
def test_malformed_chunked_bodies_are_refused(server: RealServer, result: Result, how: str) -> None:
    body, ctype = real_body()
    payload = request_head(ctype, None, chunked=True) + _bad_chunkings()[how](body)
    response = exchange(server.port, payload, timeout=10, shutdown_write=True)
    assert_refused_cleanly(server, response, result)


def test_content_length_with_chunked_is_refused(server: RealServer, result: Result) -> None:
    # Both at once is how requests are smuggled past a proxy: refuse, do not guess.
    body, ctype = real_body()
    payload = request_head(ctype, len(body), chunked=True) + chunked(body)
    response = exchange(server.port, payload, timeout=10)
    assert_refused_cleanly(server, response, result)


def test_the_server_log_names_no_traceback(server: RealServer) -> None:
    # Runs after the real-server cases above (file order): whatever they provoked,
    # the log holds no traceback and no request data.
    log = server.log_text()
    assert "Traceback" not in log
    assert "hostileBnd" not in log and "a.txt" not in log
