"""The onion layer in a private Tor network on 127.0.0.1 (tests/tor_network.py).

A real client tor fetches pages from services that OnionService publishes on a
real host tor: plain, with proof-of-work on, with a Unix-socket target, and with
v3 client authorization. Nothing here reaches the public Tor network.
"""

from __future__ import annotations

import http.server
import os
import signal
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sealdrop.onion import OnionConfig, OnionService, add_client, load_or_create_service_key
from sealdrop.tests.serving import Served
from sealdrop.tests.tor_local import tor_binary
from sealdrop.tests.tor_network import (
    RETRYABLE,
    SocksError,
    TorNetwork,
    http_request,
    socks_connect,
)

pytestmark = [
    pytest.mark.tor,
    pytest.mark.slow,
    pytest.mark.skipif(tor_binary() is None, reason="needs the Debian tor package"),
    # stem 1.8.2 calls Thread.setDaemon(), deprecated since Python 3.10.
    pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning"),
]

PAGE = b"<!doctype html><title>sealdrop</title><p>hello through tor"


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep the test output quiet

    def address_string(self) -> str:
        return "local"  # a Unix socket peer has no host


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def web_target(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A tiny page server; ``unix`` in the test's name puts it on a Unix socket."""
    server: socketserver.BaseServer
    if "unix" in request.node.name:
        path = tmp_path / "web.sock"
        server = _UnixHTTPServer(str(path), _Page)
        target = f"unix:{path}"
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
        target = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield target
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def get(network: TorNetwork, address: str) -> bytes:
    request = f"GET / HTTP/1.0\r\nHost: {address}\r\n\r\n".encode()
    return http_request(network.socks_port, address, request, deadline=30)


def publish(network: TorNetwork, state: Path, target: str) -> tuple[OnionService, str]:
    service = OnionService(OnionConfig(state, target, control=network.host.control))
    started = time.monotonic()
    address = service.start()
    service.wait_until_published(60)
    print(f"{address}: descriptor uploaded {time.monotonic() - started:.1f} s after ADD_ONION")
    return service, address


def test_page_is_fetched_through_tor_with_pow_on(
    tor_network: TorNetwork, tmp_path: Path, web_target: str
) -> None:
    service, address = publish(tor_network, tmp_path / "state", web_target)
    try:
        started = time.monotonic()
        reply = get(tor_network, address)
        print(f"fetched in {time.monotonic() - started:.1f} s")
        assert reply.startswith(b"HTTP/1.0 200")
        assert reply.endswith(PAGE)
    finally:
        service.stop()


def test_client_authorization_lets_only_the_key_holder_in_unix(
    tor_network: TorNetwork, tmp_path: Path, web_target: str
) -> None:
    state = tmp_path / "state"
    creds = add_client(state, "alice")
    service, address = publish(tor_network, state, web_target)
    try:
        with pytest.raises(SocksError) as refused:
            get(tor_network, address)
        assert refused.value.code == 0xF4  # Onion Service Missing Client Authorization
        auth_file = tor_network.client_auth_dir / "alice.auth_private"
        auth_file.write_text(creds.auth_private_line + "\n")
        auth_file.chmod(0o600)
        # SIGHUP makes tor re-read ClientOnionAuthDir. (stem's signal(RELOAD) can deadlock
        # its own close() on the RESET notification that follows.)
        assert tor_network.client.process is not None
        os.kill(tor_network.client.process.pid, signal.SIGHUP)
        reply = get(tor_network, address)
        assert reply.startswith(b"HTTP/1.0 200")
        assert reply.endswith(PAGE)
    finally:
        service.stop()


def start_serve(tmp_path: Path, spool_dir: Path, public_key_file: Path, control: str) -> Served:
    argv = ["--spool", str(spool_dir), "--public-key", str(public_key_file)]
    argv += ["--listen", f"unix:{tmp_path / 'web.sock'}", "--tor-control", control]
    return Served([*argv, "--state", str(tmp_path / "state")], tmp_path, name="serve")


def published_address(server: Served) -> str:
    """The onion address `sealdrop serve` printed, once it says the service is published."""
    url = server.wait_for(rb"^http://[a-z2-7]{56}\.onion/$", 60).group(0).decode()
    server.wait_for(rb"^sealdrop serve: onion service published: ", 60)
    return url.removeprefix("http://").removesuffix("/")


def post_head(address: str, body: Any) -> bytes:
    return (
        f"POST /submit HTTP/1.0\r\nHost: {address}\r\n"
        f"Content-Type: {body.content_type}\r\nContent-Length: {len(body.body)}\r\n\r\n"
    ).encode()


def test_serve_publishes_and_a_submission_through_tor_arrives_sealed(
    tor_network: TorNetwork,
    tmp_path: Path,
    spool_dir: Path,
    public_key_file: Path,
    submission_body: Callable[..., Any],
    open_spool: Callable[[], list[Any]],
) -> None:
    server = start_serve(tmp_path, spool_dir, public_key_file, tor_network.host.control)
    try:
        address = published_address(server)
        data = os.urandom(300 * 1024)
        body = submission_body("poachers at the north gate", ("photo.jpg", data))
        head = post_head(address, body)
        reply = http_request(tor_network.socks_port, address, head + body.body)
        assert reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200"), reply[:200]
        [opened] = open_spool()
        assert opened.message == "poachers at the north gate"
        assert [(name, content) for name, _, content in opened.files] == [("photo.jpg", data)]
    finally:
        status = server.stop(timeout=30)
    assert status == 0, server.output().decode(errors="replace")
    # on_exit removed the service: the host tor no longer serves that address.
    with tor_network.host.controller() as controller:
        key = load_or_create_service_key(tmp_path / "state")
        reply = controller.msg(f"ADD_ONION {key.control_blob} Flags=DiscardPK Port=80,9")
        assert reply.content()[-1][0] == "250", str(reply)


def connect_when_reachable(network: TorNetwork, address: str) -> Any:
    deadline = time.monotonic() + 60
    while True:
        try:
            return socks_connect(network.socks_port, address, 80)
        except SocksError as exc:
            if exc.code not in RETRYABLE or time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_an_upload_cut_by_the_tor_client_closing_mid_file_is_kept_as_partial(
    tor_network: TorNetwork,
    tmp_path: Path,
    spool_dir: Path,
    public_key_file: Path,
    submission_body: Callable[..., Any],
    open_spool: Callable[[], list[Any]],
) -> None:
    server = start_serve(tmp_path, spool_dir, public_key_file, tor_network.host.control)
    try:
        address = published_address(server)
        data = os.urandom(3 * 1024 * 1024)
        body = submission_body("the truck left at dawn", ("video.mp4", data))
        head = post_head(address, body)
        sock = connect_when_reachable(tor_network, address)
        with sock:
            sock.sendall(head + body.body[: len(body.body) // 2])

            def sealed_so_far() -> int:
                return sum(p.stat().st_size for p in spool_dir.glob("*.part"))

            deadline = time.monotonic() + 60
            while sealed_so_far() < 256 * 1024 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sealed_so_far() >= 256 * 1024, "the upload did not get under way"
            # The Tor client goes away mid-file: its circuits break, the onion service's
            # tor closes the stream to the server, as when a source's connection drops.
            tor_network.client.stop()
        deadline = time.monotonic() + 60
        while not list(spool_dir.glob("*.sealed")) and time.monotonic() < deadline:
            time.sleep(0.1)
        [opened] = open_spool()
        assert opened.cut is not None
        assert opened.message == "the truck left at dawn"
        [(name, _, kept)] = opened.files
        assert name == "video.mp4"
        assert 256 * 1024 - 64 * 1024 <= len(kept) < len(data) and kept == data[: len(kept)]
        print(f"cut through Tor: {len(kept)} of {len(data)} bytes of the file kept")
    finally:
        server.stop(timeout=30)
        tor_network.restart_client()
