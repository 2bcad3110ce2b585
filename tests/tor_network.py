"""A private Tor network on 127.0.0.1, built from nothing by the test suite.

Three directory authorities (also relays), two more relays, an onion-service host
and a client: seven tor processes, every port on 127.0.0.1, every tor told about
ONLY these authorities (DirAuthority lines replace the public defaults), so no
tor here ever contacts the public Tor network. TestingTorNetwork with a 10 s
voting interval gets a usable consensus in about 20 s. At least four relays are
needed: with three, descriptors were published but fetches timed out.
"""

from __future__ import annotations

import functools
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import stem.control

from sealdrop.child_env import child_env
from sealdrop.onion import OnionError
from sealdrop.onion.control import connect
from sealdrop.tests.tor_local import free_port, tor_binary

_PASSPHRASE = b"private test network only\n"

_COMMON: list[tuple[str, str]] = [
    ("TestingTorNetwork", "1"),
    ("ContactInfo", "sealdrop-tests@localhost"),
    ("SafeLogging", "1"),
    ("CookieAuthentication", "1"),
    ("RunAsDaemon", "0"),
    ("FetchDirInfoEarly", "1"),
]
_RELAY: list[tuple[str, str]] = [
    ("Address", "127.0.0.1"),
    ("AssumeReachable", "1"),
    ("ExitPolicy", "reject *:*"),
    ("SocksPort", "0"),
]
_AUTHORITY: list[tuple[str, str]] = [
    ("AuthoritativeDirectory", "1"),
    ("V3AuthoritativeDirectory", "1"),
    ("V3AuthVotingInterval", "10"),
    ("V3AuthVoteDelay", "2"),
    ("V3AuthDistDelay", "2"),
    ("TestingV3AuthInitialVotingInterval", "10"),
    ("TestingV3AuthInitialVoteDelay", "2"),
    ("TestingV3AuthInitialDistDelay", "2"),
    ("TestingDirAuthVoteGuard", "*"),
    ("TestingDirAuthVoteHSDir", "*"),
    ("AuthDirMaxServersPerAddr", "0"),
]


class NetworkError(Exception):
    """The private network did not come up in time; the message carries tor's logs."""


@dataclass
class Node:
    name: str
    data_dir: Path
    control_port: int
    torrc_lines: list[tuple[str, str]] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def control(self) -> str:
        return f"127.0.0.1:{self.control_port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "notice.log"

    def write_torrc(self, authorities: list[str]) -> Path:
        lines = [
            ("DataDirectory", str(self.data_dir)),
            ("Nickname", self.name),
            ("ControlPort", self.control),
            ("Log", f"notice file {self.log_file}"),
            *_COMMON,
            *self.torrc_lines,
            *(("DirAuthority", line) for line in authorities),
        ]
        path = self.data_dir / "torrc"
        path.write_text("".join(f"{k} {v}\n" for k, v in lines))
        return path

    def start(self, binary: str, authorities: list[str]) -> None:
        torrc = self.write_torrc(authorities)
        # Before the torrc is read, tor reports (config errors) on stdout.
        with open(self.data_dir / "stdout.log", "wb") as early:
            self.process = subprocess.Popen(
                [binary, "-f", str(torrc)],
                stdin=subprocess.DEVNULL,
                stdout=early,
                stderr=subprocess.STDOUT,
                env=child_env(),  # as sealdrop's own tor: not the test's allocator settings
            )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            # Relays wait ShutdownWaitLength on SIGTERM; these hold nothing worth waiting for.
            process.kill()
            process.wait()

    def controller(self) -> stem.control.Controller:
        # sealdrop's connect(): stem's own from_port() leaks a socket when refused.
        controller: stem.control.Controller = connect(self.control, None)
        return controller

    def log_tail(self, lines: int = 12) -> str:
        text = ""
        for path in (self.data_dir / "stdout.log", self.log_file):
            try:
                text += path.read_text("utf-8", "replace")
            except OSError:
                pass
        return "\n".join(text.splitlines()[-lines:]) or "(no log)"


class TorNetwork:
    """Builds, waits for and tears down the private network; see the module docstring."""

    def __init__(self, root: Path, relays: int = 2) -> None:
        binary = tor_binary()
        if binary is None:
            raise NetworkError("no tor binary")
        self.binary = binary
        self.root = root
        self.authorities: list[Node] = []
        self.relays: list[Node] = []
        self.dir_authority_lines: list[str] = []
        self.host = self._node("host", [("SocksPort", "0")])
        self.socks_port = free_port()
        self.client = self._node(
            "client",
            [
                ("SocksPort", f"127.0.0.1:{self.socks_port} ExtendedErrors"),
                ("ClientOnionAuthDir", str(root / "client" / "onion-auth")),
            ],
        )
        self.client_auth_dir = self.client.data_dir / "onion-auth"
        self.client_auth_dir.mkdir(mode=0o700)
        for index in range(3):
            self.authorities.append(self._authority(index))
        for index in range(relays):
            or_port = free_port()
            self.relays.append(self._node(f"relay{index}", [*_RELAY, ("ORPort", str(or_port))]))

    def _node(self, name: str, lines: list[tuple[str, str]]) -> Node:
        data_dir = self.root / name
        data_dir.mkdir(mode=0o700, parents=True)
        return Node(name, data_dir, free_port(), lines)

    def _authority(self, index: int) -> Node:
        or_port, dir_port = free_port(), free_port()
        node = self._node(
            f"auth{index}",
            [*_RELAY, *_AUTHORITY, ("ORPort", str(or_port)), ("DirPort", str(dir_port))],
        )
        keys = node.data_dir / "keys"
        keys.mkdir(mode=0o700)
        subprocess.run(
            [
                "tor-gencert",
                "--create-identity-key",
                "-m",
                "12",
                "-a",
                f"127.0.0.1:{dir_port}",
                "-i",
                str(keys / "authority_identity_key"),
                "-s",
                str(keys / "authority_signing_key"),
                "-c",
                str(keys / "authority_certificate"),
                "--passphrase-fd",
                "0",
            ],
            input=_PASSPHRASE,
            check=True,
            capture_output=True,
            timeout=60,
        )
        certificate = (keys / "authority_certificate").read_text()
        v3ident = re.search(r"^fingerprint ([0-9A-F]{40})$", certificate, re.M)
        assert v3ident is not None
        listed = subprocess.run(
            [
                self.binary,
                "--list-fingerprint",
                "--DataDirectory",
                str(node.data_dir),
                "--ORPort",
                str(or_port),
                "--DirAuthority",
                f"placeholder 127.0.0.1:{dir_port} {'0' * 40}",
                "--Log",
                "err stderr",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        fingerprint = re.search(r"([0-9A-F]{4}(?: [0-9A-F]{4}){9})", listed)
        assert fingerprint is not None, listed
        self.dir_authority_lines.append(
            f"{node.name} orport={or_port} no-v2 v3ident={v3ident.group(1)} "
            f"127.0.0.1:{dir_port} {fingerprint.group(1).replace(' ', '')}"
        )
        return node

    @property
    def nodes(self) -> list[Node]:
        return [*self.authorities, *self.relays, self.host, self.client]

    def start(self, timeout: float = 90.0) -> None:
        self.start_relays()
        self.finish_start(timeout)

    def start_relays(self) -> None:
        """Start the authorities and relays. What takes time after this is their first
        votes, which need nothing from the caller: the tests call this early, in a
        thread of their own (it uses no stem, whose warnings belong to the tor tests)."""
        try:
            for node in [*self.authorities, *self.relays]:
                node.start(self.binary, self.dir_authority_lines)
        except BaseException:
            self.stop()
            raise

    def finish_start(self, timeout: float = 90.0) -> None:
        """Wait for a consensus listing every relay, then start the host and the client
        and wait for their bootstrap. `startup_seconds` is the time this took."""
        started = time.monotonic()
        try:
            relay_count = len(self.authorities) + len(self.relays)
            # The client and host start only once the consensus lists every relay, so
            # their first consensus is a complete one.
            self._wait(
                lambda: _consensus_size(self.authorities[0]) >= relay_count,
                started + timeout,
                "a consensus listing every relay",
            )
            for node in (self.host, self.client):
                node.start(self.binary, self.dir_authority_lines)
            for node in (self.host, self.client):
                self._wait(
                    functools.partial(_bootstrapped, node),
                    started + timeout,
                    f"{node.name} bootstrap",
                )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def restart_client(self, timeout: float = 60.0) -> None:
        """Start the client tor again after a test stopped it (its circuits broke)."""
        self.client.stop()
        self.client.start(self.binary, self.dir_authority_lines)
        self._wait(
            functools.partial(_bootstrapped, self.client),
            time.monotonic() + timeout,
            "client bootstrap after a restart",
        )

    def _wait(self, done: Callable[[], bool], deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process is not None and node.process.poll() is not None:
                    raise NetworkError(f"{node.name} exited:\n{node.log_tail()}")
            if done():
                return
            time.sleep(0.5)
        logs = "\n\n".join(f"--- {n.name} ---\n{n.log_tail()}" for n in self.nodes)
        raise NetworkError(f"private Tor network: no {what} in time.\n{logs}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _consensus_size(node: Node) -> int:
    try:
        with node.controller() as controller:
            consensus = controller.get_info("dir/status-vote/current/consensus", "")
    except OnionError:
        return 0
    return len(re.findall(r"^r ", consensus, re.M))


def _bootstrapped(node: Node) -> bool:
    try:
        with node.controller() as controller:
            phase = controller.get_info("status/bootstrap-phase", "")
    except OnionError:
        return False
    return "PROGRESS=100" in phase


class SocksError(Exception):
    """tor's SOCKS5 port refused the connection; ``code`` is the reply byte (0xF0.. extended)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"SOCKS5 reply 0x{code:02X}")
        self.code = code


def socks_connect(socks_port: int, host: str, port: int, timeout: float = 30.0) -> socket.socket:
    """Open a stream through tor's SocksPort, the name resolved by tor (socks5h)."""
    sock = socket.create_connection(("127.0.0.1", socks_port), timeout=timeout)
    try:
        sock.sendall(b"\x05\x01\x00")
        if _recv_exact(sock, 2) != b"\x05\x00":
            raise SocksError(0xFF)
        name = host.encode("ascii")
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
        version, code, _, address_type = _recv_exact(sock, 4)
        if code != 0:
            raise SocksError(code)
        _recv_exact(sock, {1: 4, 4: 16}.get(address_type, 0) + 2)
        if address_type == 3:
            _recv_exact(sock, _recv_exact(sock, 1)[0])
    except BaseException:
        sock.close()
        raise
    return sock


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise SocksError(0xFF)
        data += chunk
    return data


# Replies worth retrying while a fresh descriptor spreads: not found, intro or rendezvous failed.
RETRYABLE = {0xF0, 0xF2, 0xF3}


def http_request(socks_port: int, host: str, request: bytes, deadline: float = 30.0) -> bytes:
    """Send one HTTP/1.0 request to ``host`` through tor; retry transient onion failures."""
    end = time.monotonic() + deadline
    while True:
        try:
            sock = socks_connect(socks_port, host, 80)
        except SocksError as exc:
            if exc.code not in RETRYABLE or time.monotonic() > end:
                raise
            time.sleep(1)
            continue
        with sock:
            sock.sendall(request)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)
