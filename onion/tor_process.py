"""A tor that sealdrop starts and owns, with its data in the onion state folder.

Plain subprocess rather than stem.process: stem's launcher waits for bootstrap
with SIGALRM (main thread only) and reads tor's stdout, which would block tor
once the pipe fills. Here tor logs to a file in its own 0700 data folder and we
wait only for its control socket.

tor's log outlives the spool files an operator collects, so it keeps only what an
operator needs: notices and warnings (bootstrap, publication, failures), with
addresses scrubbed (SafeLogging), no heartbeat (it writes counts of onion-service
introductions and bytes moved every few hours) and timestamps rounded down to the
day. Only the lines tor writes before it has read this configuration carry its
start time to the millisecond: the operator's action, not a source's.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from ..child_env import child_env
from .errors import TorNotInstalled, TorStartFailed
from .keys import ensure_private_dir

# sun_path holds 108 bytes on Linux, including the final NUL.
_MAX_SOCKET_PATH = 100
DAY_MILLISECONDS = 86_400_000


class TorProcess:
    """One tor process, started with a private DataDirectory and a control socket."""

    def __init__(
        self,
        data_dir: Path,
        tor_cmd: str = "tor",
        extra_torrc: Sequence[tuple[str, str]] = (),
        fallback_dirs: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.tor_cmd = tor_cmd
        self.extra_torrc = tuple(extra_torrc)
        self.fallback_dirs = tuple(fallback_dirs)
        self.control_socket = data_dir / "control.sock"
        self.log_file = data_dir / "tor.log"
        self._process: subprocess.Popen[bytes] | None = None

    def torrc(self) -> str:
        lines = [
            ("DataDirectory", str(self.data_dir)),
            ("ControlSocket", f"unix:{self.control_socket}"),
            ("CookieAuthentication", "1"),
            ("SocksPort", "0"),
            ("ClientOnly", "1"),
            ("SafeLogging", "1"),
            ("HeartbeatPeriod", "0"),
            ("LogTimeGranularity", str(DAY_MILLISECONDS)),
            ("AvoidDiskWrites", "1"),
            ("Log", "notice stdout"),
            # tor exits by itself if this (the gunicorn master) process dies.
            ("__OwningControllerProcess", str(os.getpid())),
            *self.extra_torrc,
        ]
        return "".join(f"{key} {value}\n" for key, value in lines)

    def start(self, timeout: float = 30.0) -> None:
        """Start tor and return once its control socket accepts connections."""
        found = shutil.which(self.tor_cmd)
        if found is None and self.fallback_dirs:
            found = shutil.which(self.tor_cmd, path=os.pathsep.join(self.fallback_dirs))
        if found is None:
            raise TorNotInstalled(self.tor_cmd)
        ensure_private_dir(self.data_dir, "tor data folder")
        if len(str(self.control_socket)) > _MAX_SOCKET_PATH:
            raise TorStartFailed(
                f"the control socket path {self.control_socket} is too long for a Unix "
                "socket; give a shorter --state folder",
                "",
            )
        # A tor killed earlier leaves its socket behind, and tor will not bind over it.
        self.control_socket.unlink(missing_ok=True)
        log_fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._process = subprocess.Popen(
                [found, "-f", "-"],
                stdin=subprocess.PIPE,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                env=child_env(),  # not serve's allocator settings (child_env.py)
                start_new_session=True,  # a Ctrl-C meant for sealdrop reaches us first
            )
        finally:
            os.close(log_fd)
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(self.torrc().encode())
            self._process.stdin.close()
        except BrokenPipeError:
            pass  # tor exited at once; _wait_for_socket reports it with tor's log
        self._wait_for_socket(timeout)

    def _wait_for_socket(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._socket_accepts():
            if not self.running:
                self.stop()
                raise TorStartFailed("tor exited during start-up", self.log_tail())
            if time.monotonic() > deadline:
                self.stop()
                raise TorStartFailed(f"no control socket after {timeout:.0f} s", self.log_tail())
            time.sleep(0.05)

    def _socket_accepts(self) -> bool:
        # tor binds the socket (the file appears) a moment before it listens on it.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.control_socket))
            except OSError:
                return False
        return True

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop tor (a client exits at once on SIGTERM); kill it if it lingers."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
