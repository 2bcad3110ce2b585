"""Running the real `sealdrop` command from a test, above all `sealdrop serve`.

One environment (the machine's own ``SEALDROP_*`` variables never leak in), one
command line, and one way to start a server, wait for what it prints and stop it:
in its own process group, so that stopping it reaches every worker it forked and
nothing else.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
# A test's disk is small: the default free-space reserve (512 MiB) would refuse uploads.
NO_RESERVE = {"SEALDROP_RESERVE_BYTES": "0"}
URL_LINE = re.compile(rb"^http://127\.0\.0\.1:(\d+)/$", re.M)


class ServerFailed(Exception):
    """The server exited, or did not print what was awaited in time; its output is in
    the message."""


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``SEALDROP_*`` variable, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SEALDROP_")}
    env.update(extra or {})
    return env


def serve_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """`clean_env` with no free-space reserve: what every test server runs with."""
    return clean_env({**NO_RESERVE, **(extra or {})})


def sealdrop_command(*args: str) -> list[str]:
    """``python -m sealdrop ARGS...`` with this interpreter (the worktree's venv)."""
    return [sys.executable, "-m", "sealdrop", *args]


class Served:
    """``sealdrop serve ARGS...`` running in its own process group, its output in files.

    `url`, `host` and `port` are known once `wait_for_url` has seen the URL it prints.
    """

    def __init__(
        self,
        args: Sequence[str],
        out_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        name: str = "server",
    ) -> None:
        self.stdout_path = out_dir / f"{name}.out"
        self.stderr_path = out_dir / f"{name}.err"
        self.url = ""
        self.host = "127.0.0.1"
        self.port = 0
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                sealdrop_command("serve", *args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=serve_env() if env is None else dict(env),
                cwd=cwd or out_dir,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> bytes:
        """Everything it printed so far, standard output then standard error."""
        return self.stdout_path.read_bytes() + self.stderr_path.read_bytes()

    def wait_for(self, pattern: bytes, timeout: float = START_TIMEOUT) -> re.Match[bytes]:
        """The first line of its output matching `pattern` (a multi-line regex)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output(), re.M)
            if match:
                return match
            if self.process.poll() is not None:
                raise ServerFailed(f"the server exited: {self.output().decode(errors='replace')}")
            time.sleep(0.05)
        raise ServerFailed(
            f"no {pattern!r} from the server in {timeout} s:\n"
            f"{self.output().decode(errors='replace')}"
        )

    def wait_for_url(self, timeout: float = START_TIMEOUT) -> str:
        """Wait until it listens on 127.0.0.1 and return ``http://127.0.0.1:PORT/``."""
        match = self.wait_for(URL_LINE.pattern, timeout)
        self.port = int(match.group(1))
        self.url = match.group(0).decode()
        return self.url

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, as an operator stops it; SIGKILL to its whole group if it hangs.
        Returns its exit status."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group this test started
            return self.process.wait(timeout=10)
