"""Running a program that parses a hostile file, confined by bubblewrap.

An attachment may be built to exploit the parser that reads it (an image
library, a PDF renderer, exiftool's Perl). Whatever parses one runs here: in
new namespaces (no network, no other processes, its own hostname), with no
capabilities, no environment but a fixed PATH and locale, the system's
programs and libraries read-only, a private /tmp, and one folder writable and
visible at /work: the folder holding the copy of the file it works on. Nothing
else of the reviewer's machine is visible: not the secret key, not the other
submissions, not the home folder.

Where bubblewrap is missing or cannot make a sandbox (user namespaces turned
off), nothing is parsed: the caller says so and how to fix it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..child_env import child_env

BWRAP = "bwrap"
INSIDE = "/work"
INSTALL_HINT = (
    "install bubblewrap (`sudo apt-get install bubblewrap`; on Tails: Additional Software)"
)
# Read-only: what the parsers need to start (Python, Perl, GObject's typelibs,
# fonts for PDF pages, the extension-to-type table), and nothing else of /etc.
_SYSTEM = ("/usr",)
_SYSTEM_TRY = (
    "/etc/fonts",
    "/etc/mime.types",
    "/etc/ld.so.cache",
    "/etc/alternatives",
    "/etc/perl",
)
_MERGED_USR = (("usr/bin", "/bin"), ("usr/sbin", "/sbin"), ("usr/lib", "/lib"))
_PROBE_TIMEOUT = 30.0


class SandboxUnavailable(Exception):
    """bubblewrap is not installed, or cannot make a sandbox on this machine.

    The message, for the reviewer, says which and what to do.
    """


@dataclass(frozen=True)
class Sandbox:
    bwrap: str

    def command(self, argv: Sequence[str], workdir: Path) -> list[str]:
        """`argv` wrapped so it runs confined, with `workdir` as /work."""
        command = [
            self.bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/bin",
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--setenv",
            "HOME",
            "/tmp",
        ]
        for path in _SYSTEM:
            command += ["--ro-bind", path, path]
        for path in _SYSTEM_TRY:
            command += ["--ro-bind-try", path, path]
        for target, link in _MERGED_USR:
            command += ["--symlink", target, link]
        if os.path.isdir("/usr/lib64"):
            command += ["--symlink", "usr/lib64", "/lib64"]
        command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        command += ["--bind", str(workdir.absolute()), INSIDE, "--chdir", INSIDE, "--"]
        return command + list(argv)

    def run(
        self, argv: Sequence[str], workdir: Path, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` confined; TimeoutExpired after `timeout` s, the sandbox killed."""
        process = subprocess.Popen(
            self.command(argv, workdir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=child_env(),
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # The whole session: bubblewrap and everything the parser started.
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def find_sandbox(scratch: Path) -> Sandbox:
    """A working sandbox, checked by running `true` in it; SandboxUnavailable if none.

    `scratch` is an empty folder to try it with.
    """
    bwrap = shutil.which(BWRAP)
    if bwrap is None:
        raise SandboxUnavailable(f"bubblewrap is not installed; {INSTALL_HINT}")
    sandbox = Sandbox(bwrap)
    try:
        probe = sandbox.run(["true"], scratch, _PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SandboxUnavailable(f"bubblewrap could not be started ({err})") from None
    if probe.returncode != 0:
        reason = probe.stderr.strip().splitlines()[-1:] or ["no reason given"]
        raise SandboxUnavailable(
            f"bubblewrap cannot make a sandbox on this machine ({reason[0]}); it needs "
            "user namespaces (on Debian: `sudo sysctl kernel.unprivileged_userns_clone=1`)"
        )
    return sandbox
