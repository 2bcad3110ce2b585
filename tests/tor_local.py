"""A tor with ``DisableNetwork 1`` for fast control-port tests: it never contacts any relay.

Shared by tests/test_onion.py; tests/tor_network.py builds the private network.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from sealdrop.child_env import child_env

# No default authorities, and no network at all: nothing public is ever contacted.
OFFLINE_TORRC: tuple[tuple[str, str], ...] = (
    ("DisableNetwork", "1"),
    ("DirAuthority", "offline 127.0.0.1:9 0000000000000000000000000000000000000000"),
)


def tor_binary() -> str | None:
    return shutil.which("tor") or shutil.which("tor", path="/usr/sbin:/usr/bin")


def free_port() -> int:
    """A free 127.0.0.1 port below the kernel's ephemeral range.

    The private network's ports are chosen before its tors start, seconds apart; a
    port from the ephemeral range (what binding to port 0 gives) can be taken
    meanwhile as the source port of one relay's connection to another, and the tor
    meant to listen there then fails with "Address already in use".
    """
    low = _ephemeral_low()
    chooser = random.SystemRandom()
    for _ in range(200):
        port = chooser.randrange(10_000, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port below the ephemeral range")


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768
    return max(low, 10_001)


class OfflineTor:
    """A tor on a fixed 127.0.0.1 control port that a test can kill and start again."""

    def __init__(self, data_dir: Path, hashed_password: str | None = None) -> None:
        binary = tor_binary()
        assert binary is not None
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.hashed_password = hashed_password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def control(self) -> str:
        return f"127.0.0.1:{self.port}"

    def torrc(self) -> str:
        lines = [
            ("DataDirectory", str(self.data_dir)),
            ("ControlPort", self.control),
            ("SocksPort", "0"),
            ("Log", "notice stdout"),
            ("SafeLogging", "1"),
            *OFFLINE_TORRC,
        ]
        if self.hashed_password is None:
            lines.append(("CookieAuthentication", "1"))
        else:
            lines.append(("HashedControlPassword", self.hashed_password))
        return "".join(f"{k} {v}\n" for k, v in lines)

    def start(self, timeout: float = 20.0) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = open(self.data_dir / "test-tor.log", "ab")  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [self.binary, "-f", "-"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                env=child_env(),  # as sealdrop's own tor: not the test's allocator settings
            )
        finally:
            log.close()
        assert self.process.stdin is not None
        self.process.stdin.write(self.torrc().encode())
        self.process.stdin.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"test tor exited:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"test tor did not open its control port:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: tor gets no chance to clean up, like a crash."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self) -> str:
        path = self.data_dir / "test-tor.log"
        return path.read_text("utf-8", "replace")[-3000:] if path.exists() else ""


def hash_password(password: str) -> str:
    binary = tor_binary()
    assert binary is not None
    out = subprocess.run(
        [binary, "--quiet", "--hash-password", password],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().splitlines()[-1]
