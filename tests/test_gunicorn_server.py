"""Against the real server: `sealdrop serve --local-only` under gunicorn, over loopback HTTP."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import queue
import random
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nacl.public import PrivateKey

from sealdrop import cli, keys
from sealdrop.server.gunicorn_conf import MALLOC_ARENAS, MMAP_THRESHOLD, keep_stop_signals
from sealdrop.server.logs import _Redact
from sealdrop.tests.conftest import spool_entries
from sealdrop.tests.procs import child_pids
from sealdrop.tests.raw_http import send_while_reading, whole_response
from sealdrop.tests.serving import clean_env, sealdrop_command
from sealdrop.units import human_size
from sealdrop.web.headers import SECURITY_HEADERS

MiB = 1024 * 1024
SMALL_LIMITS = {
    "SEALDROP_MAX_BODY_BYTES": "8 MiB",
    "SEALDROP_MAX_FILES": "3",
    "SEALDROP_MAX_MESSAGE_CHARS": "1000",
}


def request(
    server: Any,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    encode_chunked: bool = False,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        connection.request(
            method, path, body=body, headers=headers or {}, encode_chunked=encode_chunked
        )
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def spool_names(spool_dir: Path) -> list[str]:
    return spool_entries(spool_dir)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def server(start_server: Callable[..., Any]) -> Any:
    return start_server(env=SMALL_LIMITS)


def test_every_response_carries_the_headers_and_names_no_software(
    server: Any, submission_body: Callable[..., Any]
) -> None:
    body = submission_body("hello")
    responses = [
        request(server, "GET", "/"),
        request(server, "GET", "/static/style.css"),
        request(server, "GET", "/missing?q=1"),
        request(server, "GET", "/submit"),
        request(server, "POST", "/submit", body.body, {"Content-Type": body.content_type}),
    ]
    assert [status for status, _, _ in responses] == [200, 200, 404, 405, 200]
    for _, headers, _ in responses:
        assert headers.get("Server") is None
        assert headers.get("Set-Cookie") is None
        for name, value in SECURITY_HEADERS.items():
            assert headers[name] == value


def test_message_and_files_arrive_sealed(
    server: Any,
    submission_body: Callable[..., Any],
    open_spool: Callable[[], list[Any]],
) -> None:
    data = random.Random(1).randbytes(3 * MiB)
    body = submission_body("über den Fluss", ("a.txt", b"alpha"), ("b.bin", data))
    status, _, page = request(
        server, "POST", "/submit", body.body, {"Content-Type": body.content_type}
    )
    assert status == 200
    [opened] = open_spool()
    assert opened.receipt.encode() in page
    assert opened.message == "über den Fluss"
    assert [f[2] for f in opened.files] == [b"alpha", data]


def test_declared_body_over_the_limit_is_refused_before_it_is_sent(
    server: Any, spool_dir: Path
) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.putrequest("POST", "/submit")
        connection.putheader("Content-Type", "multipart/form-data; boundary=b")
        connection.putheader("Content-Length", str(9 * MiB))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        # Not worth waiting for: a bounded first part is read, then the connection ends.
        assert response.headers["Connection"] == "close"
        assert b"Error code 413" in response.read()
    finally:
        connection.close()
    assert spool_names(spool_dir) == []


def test_chunked_body_over_the_limit_is_refused_and_leaves_nothing(
    server: Any, submission_body: Callable[..., Any], spool_dir: Path
) -> None:
    body = submission_body("m", ("big.bin", b"\0" * (9 * MiB)))

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body.body), 256 * 1024):
            yield body.body[start : start + 256 * 1024]

    try:
        status, _, _ = request(
            server, "POST", "/submit", pieces(), {"Content-Type": body.content_type}, True
        )
    except (BrokenPipeError, ConnectionResetError):
        status = 413  # the server answered and closed while we were still sending
    assert status == 413
    assert wait_until(lambda: spool_names(spool_dir) == [])


@pytest.mark.parametrize(
    "what",
    ["files", "message", "header"],
)
def test_limits_are_enforced_by_the_real_server(
    server: Any,
    multipart: Callable[..., Any],
    submission_body: Callable[..., Any],
    spool_dir: Path,
    what: str,
) -> None:
    if what == "files":
        body = submission_body("m", *[(f"{i}.txt", b"x") for i in range(4)])
    elif what == "message":
        body = submission_body("y" * 1001)
    else:
        body = multipart([("files", "n" * 9000, b"x", "text/plain")])
    status, _, page = request(
        server, "POST", "/submit", body.body, {"Content-Type": body.content_type}
    )
    assert status == 413
    assert b"Error code 413" in page
    assert spool_names(spool_dir) == []


@pytest.mark.parametrize("what", ["files", "message"])
def test_refused_upload_is_read_to_its_end_so_a_browser_sees_the_page(
    server: Any, multipart: Callable[..., Any], spool_dir: Path, what: str
) -> None:
    # Refused early (the fourth file, or the message), with 6 MiB still to come.
    big = ("files", "big.bin", b"\0" * (6 * MiB), "application/octet-stream")
    if what == "files":
        small = [("files", f"{i}.txt", b"x", "text/plain") for i in range(4)]
        body = multipart([("message", None, b"m", None), *small, big])
    else:
        body = multipart([("message", None, b"y" * 5000, None), big])
    errors, answer = send_while_reading(server, body.content_type, body.body)
    # Before the fix the server answered and closed mid-body: the sender met a broken
    # pipe or a reset, which a browser shows instead of the page.
    assert errors == []
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nConnection: keep-alive\r\n" in answer
    assert whole_response(answer)
    assert b"Error code 413" in answer and answer.rstrip().endswith(b"</html>")
    assert spool_names(spool_dir) == []


def test_upload_cut_off_halfway_keeps_only_what_arrived(
    server: Any,
    submission_body: Callable[..., Any],
    spool_dir: Path,
    open_spool: Callable[[], list[Any]],
) -> None:
    upload = submission_body("m", ("a.bin", random.Random(2).randbytes(6 * MiB)))
    body = upload.body
    head = (
        f"POST /submit HTTP/1.1\r\nHost: {server.host}\r\n"
        f"Content-Type: {upload.content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(head + body[: len(body) // 2])
        # The upload is under way: its sealed .part file exists.
        assert wait_until(lambda: any(n.endswith(".part") for n in spool_names(spool_dir)))
    # What arrived is kept, sealed and marked cut (tests/test_cut_uploads.py has the rest).
    assert wait_until(lambda: [n[-7:] for n in spool_names(spool_dir)] == [".sealed"])
    [opened] = open_spool()
    assert opened.cut is not None
    assert 0 < len(opened.files[0][2]) < 3 * MiB


def test_an_upload_that_stops_sending_is_dropped_after_the_idle_bound(
    start_server: Callable[..., Any],
    submission_body: Callable[..., Any],
    spool_dir: Path,
    open_spool: Callable[[], list[Any]],
) -> None:
    server = start_server(env={**SMALL_LIMITS, "SEALDROP_BODY_IDLE_SECONDS": "2"})
    upload = submission_body("m", ("a.bin", random.Random(3).randbytes(2 * MiB)))
    head = (
        f"POST /submit HTTP/1.1\r\nHost: {server.host}\r\n"
        f"Content-Type: {upload.content_type}\r\nContent-Length: {len(upload.body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(head + upload.body[: len(upload.body) // 2])
        assert wait_until(lambda: any(n.endswith(".part") for n in spool_names(spool_dir)))
        started = time.monotonic()
        # The client keeps the connection open but sends nothing more: the server
        # gives up on it after the bound and keeps what arrived, marked cut.
        assert wait_until(
            lambda: [n[-7:] for n in spool_names(spool_dir)] == [".sealed"], timeout=15
        )
        assert 1.5 <= time.monotonic() - started < 10
        [opened] = open_spool()
        assert opened.cut is not None and 0 < len(opened.files[0][2]) < MiB
    status, _, _ = request(server, "GET", "/")
    assert status == 200


def test_malformed_body_is_400(server: Any, spool_dir: Path) -> None:
    status, _, page = request(
        server,
        "POST",
        "/submit",
        b"--b\r\nnonsense",
        {"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert status == 400
    assert b"Error code 400" in page
    assert spool_names(spool_dir) == []


def _generated(size: int, seed: int, digest: Any) -> Iterator[bytes]:
    source = random.Random(seed)
    left = size
    while left:
        block = source.randbytes(min(MiB, left))
        digest.update(block)
        left -= len(block)
        yield block


@pytest.mark.slow
def test_large_upload_streams_through_with_bounded_memory(
    start_server: Callable[..., Any],
    spool_dir: Path,
    reviewer_key: PrivateKey,
    multipart: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_server()
    big_size = 100 * MiB + 12345
    small = random.Random(3).randbytes(1_500_000)
    boundary = "----sealdropBig0123456789"
    head = multipart(
        [("message", None, b"the big one", None), ("files", "small.bin", small, None)],
        boundary=boundary,
    ).body
    head = head[: head.rindex(f"--{boundary}--".encode())]  # keep the body open
    big_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="c.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\nthird\r\n--{boundary}--\r\n"
    ).encode()
    big_digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        yield head + big_head
        yield from _generated(big_size, 4, big_digest)
        yield tail

    length = len(head) + len(big_head) + big_size + len(tail)
    started = time.monotonic()
    status, _, page = request(
        server,
        "POST",
        "/submit",
        body(),
        {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
        },
    )
    elapsed = time.monotonic() - started
    assert status == 200, page
    workers = child_pids(server.pid)
    peaks = [peak_rss_mib(pid) for pid in workers]
    with capsys.disabled():
        print(
            f"\n100 MB upload over loopback: {length / MiB / elapsed:.1f} MiB/s "
            f"({elapsed:.2f} s); worker peak RSS {', '.join(f'{p:.0f}' for p in peaks)} MiB, "
            f"master {peak_rss_mib(server.pid):.0f} MiB"
        )
    # Bounded memory: nowhere near the 100 MB that buffering the file would need.
    assert workers and max(peaks) < 90

    # The reviewer's own command recovers exactly those bytes.
    key_file = tmp_path / "offline" / "reviewer.key"
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text(keys.encode_secret_key(reviewer_key, "pw", keys.KdfCost.MIN))
    monkeypatch.setenv("SEALDROP_PASSPHRASE", "pw")
    out = tmp_path / "opened"
    assert cli.main(["open", str(spool_dir), "--key", str(key_file), "--out", str(out)]) == 0
    [folder] = [entry for entry in out.iterdir() if not entry.name.startswith(".")]
    assert (folder / "message.txt").read_text() == "the big one"
    opened = {
        entry.name: (entry.stat().st_size, _file_sha256(entry))
        for entry in (folder / "files").iterdir()
    }
    assert opened == {
        "small.bin": (len(small), hashlib.sha256(small).digest()),
        "big.bin": (big_size, big_digest.digest()),
        "c.txt": (5, hashlib.sha256(b"third").digest()),
    }
    receipt = json.loads((folder / "manifest.json").read_text())["receipt"]
    assert receipt.encode() in page


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(MiB):
            digest.update(block)
    return digest.digest()


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sealdrop_command("serve", *args),
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=60,
    )


def test_serve_prints_that_it_is_not_published_and_its_url(server: Any) -> None:
    output = server.stdout_path.read_text()
    assert "NOT published on Tor" in output
    assert f"\n{server.url}\n" in "\n" + output


def test_serve_refuses_bad_settings_with_exit_2_and_no_traceback(
    tmp_path: Path, public_key_file: Path, spool_dir: Path
) -> None:
    missing = run_serve("--spool", str(tmp_path / "nope"), "--public-key", str(public_key_file))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    wide = run_serve(
        "--spool", str(spool_dir), "--public-key", str(public_key_file), "--listen", "0.0.0.0:80"
    )
    assert wide.returncode == 2
    assert "not a loopback address" in wide.stderr
    assert "Traceback" not in wide.stderr


def test_serve_refuses_an_open_file_limit_below_max_connections(
    spool_dir: Path, public_key_file: Path
) -> None:
    """A hard limit of 1024 open files cannot hold the default 8000 connections: serve
    says so and how to fix it, rather than fail later with "too many open files"."""

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    argv = [*sealdrop_command("serve", "--local-only"), "--spool", str(spool_dir)]
    argv += ["--public-key", str(public_key_file), "--listen", "127.0.0.1:0"]
    refused = subprocess.run(
        argv, capture_output=True, text=True, env=clean_env(), timeout=60, preexec_fn=low_limit
    )
    assert refused.returncode == 2
    assert "max_connections 8000 needs 16256 open files" in refused.stderr
    assert "LimitNOFILE" in refused.stderr and "Traceback" not in refused.stderr


def test_serve_publishing_on_tor_refuses_without_a_state_folder(
    spool_dir: Path, public_key_file: Path
) -> None:
    result = run_serve("--spool", str(spool_dir), "--public-key", str(public_key_file))
    assert result.returncode == 2
    assert "--local-only" in result.stderr


def test_bad_request_line_is_answered_without_server_header_or_log_of_it(server: Any) -> None:
    marker = b"zq7Mk3rXy"
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET /" + marker + b" HTTP/1.1 extra\r\nHost: x\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"\r\nServer:" not in answer
    time.sleep(0.3)
    assert marker not in server.output()
    # Not even a line saying it happened: the log would date the visit.
    assert b"Invalid request" not in server.output()


def test_redacting_logger_withholds_request_data_and_tracebacks() -> None:
    redact = _Redact()
    invalid = logging.LogRecord(
        "gunicorn.error",
        logging.WARNING,
        "",
        0,
        "Invalid request from ip=10.1.2.3: GET /x",
        None,
        None,
    )
    assert redact.filter(invalid) is False  # not logged at all: it would date a visit
    try:
        raise ValueError("secret input")
    except ValueError:
        exc_info = sys.exc_info()
    failed = logging.LogRecord(
        "gunicorn.error",
        logging.ERROR,
        "",
        0,
        "Error handling request %s %s",
        ("POST", "/submit?q=secret"),
        exc_info,
    )
    redact.filter(failed)
    text = logging.Formatter().format(failed)
    assert "secret" not in text
    assert "ValueError at" in text
    assert "Traceback" not in text


def test_the_docs_state_the_malloc_limits_the_workers_really_set() -> None:
    # The mmap threshold drifted once (the docs said 128 KiB while the code set 4 MiB);
    # RELIABILITY.md is generated from scripts/reliability_report's template.
    root = Path(__file__).resolve().parent.parent
    said = f"{MALLOC_ARENAS} with a fixed {human_size(MMAP_THRESHOLD)} mmap"
    for doc in ("scripts/reliability_report", "docs/RELIABILITY.md"):
        text = " ".join((root / doc).read_text("utf-8").split())
        assert f"caps its arenas at {said}" in text, doc
    performance = " ".join((root / "docs/PERFORMANCE.md").read_text("utf-8").split())
    assert f"{MALLOC_ARENAS} malloc arenas, a fixed {human_size(MMAP_THRESHOLD)} mmap" in (
        performance
    )


def worker_alive_after(queued: list[int], sent: int | None) -> bool:
    """In a forked child, as a gunicorn worker in ``post_fork``: the arbiter's queue
    copied with `queued` in it, `keep_stop_signals`, then `sent` delivered before
    gunicorn's own handlers exist. Whether the worker would still run its loop."""
    child = os.fork()
    if child == 0:
        code = 2
        try:
            server = SimpleNamespace(SIG_QUEUE=queue.SimpleQueue())
            for sig in queued:
                server.SIG_QUEUE.put(sig)
            worker = SimpleNamespace(alive=True)
            keep_stop_signals(server, worker)
            if sent is not None:
                os.kill(os.getpid(), sent)
            code = 1 if worker.alive else 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, 1), code
    return code == 1


def test_a_stop_signal_that_reaches_a_booting_worker_stops_it() -> None:
    # A SIGTERM during start-up was handled by the arbiter right after it forked the
    # workers; one that reached a worker before gunicorn's handlers was lost and the
    # service took graceful_timeout (30 s) to stop (tests/test_quickstart.py).
    assert not worker_alive_after([], signal.SIGTERM)
    assert not worker_alive_after([], signal.SIGINT)
    assert not worker_alive_after([signal.SIGCHLD, signal.SIGTERM], None)
    # Anything else (a replacement asked with SIGTTIN, a child's exit) is no stop.
    assert worker_alive_after([signal.SIGTTIN, signal.SIGCHLD], None)
    assert worker_alive_after([], None)


# Loaded by every interpreter on its path (site): breaks the web app's build in whatever
# process builds it, as a broken or half-upgraded installation would.
BREAK_THE_APP = """
import builtins, os, sys
if os.environ.get("BREAK_SEALDROP_APP"):
    real_import = builtins.__import__

    def breaking_import(name, *args, **kwargs):
        module = real_import(name, *args, **kwargs)
        app = sys.modules.get("sealdrop.app")
        if hasattr(app, "create_app") and not hasattr(app, "broken"):
            def create_app(*given, **named):
                raise RuntimeError("a module of the web app is missing")
            app.create_app, app.broken = create_app, True
        return module

    builtins.__import__ = breaking_import
"""


def test_a_worker_that_cannot_build_the_app_stops_the_service_saying_so(
    tmp_path: Path, spool_dir: Path, public_key_file: Path
) -> None:
    # The master checks what the app is built from but builds none (startup.py); a
    # worker that still cannot build it (the installation changed under the service)
    # stops the service, and the operator is told what to do.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BREAK_THE_APP)
    paths = [str(site), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = clean_env(
        {
            "SEALDROP_RESERVE_BYTES": "0",
            "BREAK_SEALDROP_APP": "1",
            "PYTHONPATH": os.pathsep.join(paths),
        }
    )
    args = ["serve", "--spool", str(spool_dir), "--public-key", str(public_key_file)]
    done = subprocess.run(
        sealdrop_command(*args, "--listen", "127.0.0.1:0", "--local-only"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("a worker could not build the web app") == 1, done.stderr
    assert "reinstall sealdrop" in done.stderr
    assert not spool_entries(spool_dir)


def test_a_body_is_received_in_place_and_what_came_is_handed_over() -> None:
    # server.patches.read_bodies_in_place: gunicorn's body gets a readinto that
    # receives into the caller's buffer and returns what has arrived, with the rate
    # floor told of each piece; bytes gunicorn already holds go through its read.
    from gunicorn.http.body import Body, LengthReader
    from gunicorn.http.unreader import SocketUnreader

    from sealdrop.server.patches import BODY_WATCHER, read_bodies_in_place
    from sealdrop.web.body import RateFloor

    read_bodies_in_place()
    client, server = socket.socketpair()
    with client, server:
        unreader = SocketUnreader(server)
        unreader.unread(b"held")  # read along with the request head
        body = Body(LengthReader(unreader, 4 + 3000 + 3000 + 67_000))
        floor = RateFloor(500, 120)
        setattr(unreader, BODY_WATCHER, floor)
        client.sendall(b"x" * 3000)
        target = bytearray(65536)
        # What gunicorn holds goes through its own read, and only that much is asked.
        assert body.readinto(memoryview(target)) == 4 and target[:4] == b"held"
        assert body.readinto(memoryview(target)) == 3000 and target[:3000] == b"x" * 3000
        client.sendall(b"y" * 3000)
        # Then in place: what has come, not the 64 KiB asked for.
        assert body.readinto(memoryview(target)) == 3000 and target[:3000] == b"y" * 3000
        assert floor.received == 3000
        client.sendall(b"z" * 67_000)
        got = 0
        while got < 67_000:
            got += body.readinto(memoryview(target)[: 67_000 - got])
        assert body.readinto(memoryview(target)) == 0  # the declared length is reached
        assert floor.received == 3000 + 67_000
