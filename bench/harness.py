"""What the benches that upload to real servers share: where OnionShare lives, the form
bodies they send, and the machine's load (it is shared, so every figure gets it).

Used by bench/upload_bench.py and bench/slow_clients_bench.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ONIONSHARE_REQUIREMENT = "onionshare-cli==2.7"
ONIONSHARE_VENV = Path.home() / ".cache" / "sealdrop-bench" / "onionshare"
ONIONSHARE_CANDIDATES = [
    ONIONSHARE_VENV / "bin" / "onionshare-cli",
    HERE / ".venv-onionshare" / "bin" / "onionshare-cli",
    Path("/tmp/venv-onionshare/bin/onionshare-cli"),
]
BOUNDARY = "sealdropBench5b1e"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


# --- OnionShare ---------------------------------------------------------------------------


def find_onionshare(given: str | None) -> Path | None:
    """`given`, else the first executable onionshare-cli of ONIONSHARE_CANDIDATES or PATH."""
    if given:
        return Path(given)
    on_path = shutil.which("onionshare-cli")
    for candidate in [*ONIONSHARE_CANDIDATES, *([Path(on_path)] if on_path else [])]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def install_onionshare() -> None:
    """OnionShare in a venv of its own: its Flask, Werkzeug and gevent pins must never
    touch the project's venv, and it is no dependency of the project."""
    if not (ONIONSHARE_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(ONIONSHARE_VENV)], check=True)
    subprocess.run(
        [str(ONIONSHARE_VENV / "bin" / "pip"), "install", "-q", ONIONSHARE_REQUIREMENT],
        check=True,
    )


def onionshare_version(executable: Path) -> str:
    python = executable.parent / "python"
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('onionshare-cli'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "?"


# --- form bodies --------------------------------------------------------------------------


def multipart(fields: Sequence[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart/form-data body (its type: CONTENT_TYPE), as a browser sends the form:
    (name, file name or None for a text field, content) each."""
    pieces: list[bytes] = []
    for name, filename, content in fields:
        pieces.append(part_head(name, filename))
        pieces += [content, b"\r\n"]
    pieces.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(pieces)


def part_head(name: str, filename: str | None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"\r\nContent-Type: application/octet-stream'
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()


# --- the machine --------------------------------------------------------------------------


def loadavg() -> str:
    """The machine's load averages (1, 5, 15 min), as `uptime` prints them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
