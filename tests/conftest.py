"""Shared fixtures: a fresh reviewer key, a private spool, the app and its test client."""

from __future__ import annotations

import dataclasses
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from nacl.public import PrivateKey, PublicKey
from nacl.signing import SigningKey

from sealdrop.app import create_app
from sealdrop.keys import KdfCost, encode_public_key
from sealdrop.settings import Settings
from sealdrop.tests.serving import Served, ServerFailed, serve_env

if TYPE_CHECKING:
    from sealdrop.tests.tor_network import TorNetwork

# A part: (field name, file name or None for a plain field, content, content type or None).
Part = tuple[str, str | None, bytes, str | None]


@dataclasses.dataclass(frozen=True)
class Multipart:
    body: bytes
    content_type: str


def multipart_head(boundary: str, name: str, filename: str | None, ctype: str | None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
    if ctype is not None:
        head += f"Content-Type: {ctype}\r\n"
    return (head + "\r\n").encode("utf-8")


def build_multipart(parts: Iterable[Part], boundary: str | None = None) -> Multipart:
    """A multipart/form-data body like a browser's, with CRLF framing."""
    boundary = boundary or "----sealdropTest" + secrets.token_hex(8)
    pieces: list[bytes] = []
    for name, filename, content, ctype in parts:
        pieces += [multipart_head(boundary, name, filename, ctype), content, b"\r\n"]
    pieces.append(f"--{boundary}--\r\n".encode("ascii"))
    return Multipart(b"".join(pieces), f"multipart/form-data; boundary={boundary}")


def message_and_files(message: str, *files: tuple[str, bytes]) -> Multipart:
    parts: list[Part] = [("message", None, message.encode("utf-8"), None)]
    parts += [("files", name, data, "application/octet-stream") for name, data in files]
    return build_multipart(parts)


# --- reply signing (signing.py) ---------------------------------------------------------

SIGNING_PASSPHRASE = "reply signing test passphrase"


@pytest.fixture
def reply_signer() -> SigningKey:
    """The reviewer's reply-signing key: replies it signs are shown, others never."""
    return SigningKey.generate()


@pytest.fixture
def reply_signing_pub(tmp_path: Path, reply_signer: SigningKey) -> Path:
    """reply-signing.pub for `reply_signer`, as the server's reply_signing_key_file."""
    from sealdrop.signing import encode_signing_public_key

    path = tmp_path / "reply-signing.pub"
    path.write_text(encode_signing_public_key(reply_signer.verify_key) + "\n")
    return path


@pytest.fixture
def reply_signing_key_file(tmp_path: Path, reply_signer: SigningKey) -> Path:
    """reply-signing.key for `reply_signer` (SIGNING_PASSPHRASE, the cheapest cost)."""
    from sealdrop.signing import encode_signing_secret_key

    folder = tmp_path / "offline-signing"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "reply-signing.key"
    path.write_text(encode_signing_secret_key(reply_signer, SIGNING_PASSPHRASE, KdfCost.MIN))
    return path


def signed_reply(
    message: str,
    reply_public_key: PublicKey,
    mailbox_id: bytes,
    signer: SigningKey,
    day: str = "2026-12-01",
    reference: str = "0001-0002",
) -> bytes:
    """A reply file as `sealdrop reply` writes it: sealed to the source, then signed."""
    from sealdrop import replies

    sealed = replies.seal_reply(message, reply_public_key, day, reference)
    return replies.sign_reply(sealed, mailbox_id, signer)


@pytest.fixture
def reviewer_key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    os.chmod(spool, 0o700)
    return spool


@pytest.fixture
def public_key_file(tmp_path: Path, reviewer_key: PrivateKey) -> Path:
    path = tmp_path / "reviewer.pub"
    path.write_text(encode_public_key(reviewer_key.public_key) + "\n", encoding="ascii")
    return path


@pytest.fixture
def settings(spool_dir: Path, public_key_file: Path) -> Settings:
    # Small limits make every limit test cheap; a zero reserve fits any test machine.
    return Settings(
        spool_dir=spool_dir,
        public_key_file=public_key_file,
        max_body_bytes=4 * 1024 * 1024,
        max_files=3,
        max_message_chars=1000,
        max_part_header_bytes=2048,
        reserve_bytes=0,
    )


@pytest.fixture
def make_app(settings: Settings) -> Callable[..., Flask]:
    def make(**changes: object) -> Flask:
        return create_app(dataclasses.replace(settings, **changes))  # type: ignore[arg-type]

    return make


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclasses.dataclass
class OpenedSubmission:
    receipt: str
    message: str
    files: list[tuple[str, str, bytes]]  # (name, media type, content)
    # A CUT record's content (records.UploadCut): the upload was cut off.
    cut: Any = None


def open_submission(path: Path, key: PrivateKey) -> OpenedSubmission:
    """Decrypt and parse one spool file completely, checking every format rule."""
    from sealdrop import crypto, records

    opened = OpenedSubmission("", "", [])
    content = bytearray()
    with path.open("rb") as handle:
        payload = crypto.open_payload(handle, key)
        for event in records.read_payload(payload, payload.version):
            if isinstance(event, records.Receipt):
                opened.receipt = event.receipt
            elif isinstance(event, records.MessageText):
                opened.message += event.text
            elif isinstance(event, records.AttachmentStart):
                content = bytearray()
                opened.files.append((event.name, event.media_type, b""))
            elif isinstance(event, records.AttachmentBytes):
                content += event.data
            elif isinstance(event, records.AttachmentDone):
                name, media, _ = opened.files[-1]
                opened.files[-1] = (name, media, bytes(content))
            elif isinstance(event, records.PayloadEnd):
                opened.cut = event.cut
    return opened


def spool_entries(spool: Path) -> list[str]:
    """The spool's names, without the pool of empty files a real server keeps there."""
    from sealdrop.spool_names import POOL_DIR

    return sorted(entry.name for entry in spool.iterdir() if entry.name != POOL_DIR)


@pytest.fixture
def multipart() -> Callable[..., Multipart]:
    """`multipart(parts, boundary=None)`: build a browser-like multipart body."""
    return build_multipart


@pytest.fixture
def submission_body() -> Callable[..., Multipart]:
    """`submission_body(message, (name, data), ...)`: the form's body."""
    return message_and_files


@pytest.fixture
def open_spool(reviewer_key: PrivateKey, spool_dir: Path) -> Callable[[], list[OpenedSubmission]]:
    """Open every finished spool file; fail if anything else is in the spool."""

    def open_all() -> list[OpenedSubmission]:
        names = spool_entries(spool_dir)
        assert all(name.endswith(".sealed") for name in names), names
        return [open_submission(spool_dir / name, reviewer_key) for name in names]

    return open_all


# --- the real server ---------------------------------------------------------------------


@pytest.fixture
def codenames_env(tmp_path: Path) -> dict[str, str]:
    """`start_server`'s env for codenames on: private state and replies folders, and a
    derivation cost for tests only (the real one costs a quarter second each)."""
    env = {"SEALDROP_CODENAME_KDF_MEMORY": "8 KiB", "SEALDROP_CODENAME_KDF_PASSES": "1"}
    for name in ("state", "replies"):
        folder = tmp_path / name
        folder.mkdir(mode=0o700, exist_ok=True)
        env[f"SEALDROP_{name.upper()}_DIR"] = str(folder)
    return env


@pytest.fixture
def start_server(
    tmp_path: Path, spool_dir: Path, public_key_file: Path
) -> Iterator[Callable[..., Served]]:
    """`start_server(env={...}, cwd=..., tmpdir=..., args=[...])`: run `sealdrop serve
    --local-only` (with `args` added) on a free loopback port and wait until it listens;
    every server started is stopped when the test ends."""
    servers: list[Served] = []

    def start(
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        tmpdir: Path | None = None,
        args: Sequence[str] = (),
    ) -> Served:
        environment = serve_env(env)
        if tmpdir is not None:
            environment["TMPDIR"] = str(tmpdir)
        argv = ["--spool", str(spool_dir), "--public-key", str(public_key_file)]
        argv += ["--listen", "127.0.0.1:0", "--local-only", *args]
        server = Served(argv, tmp_path, env=environment, cwd=cwd, name=f"server{len(servers)}")
        servers.append(server)
        try:
            server.wait_for_url()
        except ServerFailed as err:
            pytest.fail(str(err))
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


# --- the private Tor network ---------------------------------------------------------------


class _NetworkStart(threading.Thread):
    """Builds the private Tor network and starts its relays, in the background."""

    def __init__(self, root: Path) -> None:
        super().__init__(name="private Tor network", daemon=True)
        self.root = root
        self.network: TorNetwork | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from sealdrop.tests.tor_network import TorNetwork

        try:
            self.network = TorNetwork(self.root)
            self.network.start_relays()
        except BaseException as error:  # re-raised by the tor_network fixture
            self.error = error


@pytest.fixture(scope="session", autouse=True)
def _tor_network_start(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_NetworkStart | None]:
    """Starts the private Tor network's relays as the session starts, when any selected
    test uses it: the network spends its 15-25 s mostly waiting for its authorities'
    first votes, time the tests before it use. Stopped at the session's end."""
    from sealdrop.tests.tor_local import tor_binary

    wanted = any(
        "tor_network" in getattr(item, "fixturenames", ()) for item in request.session.items
    )
    if not wanted or tor_binary() is None:
        yield None
        return
    # Unix socket paths must stay short, so the network lives under a short temp root.
    start = _NetworkStart(tmp_path_factory.mktemp("tornet", numbered=True))
    start.start()
    try:
        yield start
    finally:
        start.join()
        if start.network is not None:
            start.network.stop()


@pytest.fixture(scope="session")
def tor_network(_tor_network_start: _NetworkStart | None) -> TorNetwork:
    """The private Tor network on 127.0.0.1 (tests/tor_network.py), one per session."""
    if _tor_network_start is None:
        pytest.fail("no private Tor network: no test asked for it, or no tor binary")
    _tor_network_start.join()
    if _tor_network_start.error is not None:
        raise _tor_network_start.error
    network = _tor_network_start.network
    assert network is not None
    # Here, not in the thread: waiting uses stem, whose DeprecationWarning only the tor
    # tests' marks ignore (the suite turns warnings into errors).
    network.finish_start(timeout=90)
    print(f"private Tor network ready {network.startup_seconds:.1f} s after it was asked for")
    return network
