"""The sandbox mat2 and exiftool run in really confines them (real bubblewrap).

Each test runs a small Python program inside `Sandbox.command`, exactly as mat2 is
run, and checks from outside what it could and could not reach.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from sealdrop.reviewer.sandbox import INSIDE, Sandbox, SandboxUnavailable, find_sandbox

SYSTEM_PYTHON = "/usr/bin/python3"
pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or not os.path.exists(SYSTEM_PYTHON),
    reason="needs bubblewrap (scripts/bootstrap --test installs it)",
)

PROBE = r"""
import json, os, socket, sys
seen = {}
def attempt(name, action):
    try:
        seen[name] = ("ok", action())
    except OSError as err:
        seen[name] = ("refused", type(err).__name__)
port = int(sys.argv[1])
attempt("read_outside", lambda: open(sys.argv[2]).read())
attempt("read_key", lambda: open(sys.argv[3]).read())
attempt("connect", lambda: socket.create_connection(("127.0.0.1", port), timeout=2).close())
attempt("write_usr", lambda: open("/usr/sealdrop-probe", "w").close())
attempt("write_tmp", lambda: open("/tmp/sealdrop-probe", "w").write("x"))
attempt("write_work", lambda: open("/work/output", "w").write("made inside"))
attempt("read_work", lambda: open("/work/input").read())
seen["root"] = sorted(os.listdir("/"))
seen["work"] = sorted(os.listdir("/work"))
seen["processes"] = sorted(p for p in os.listdir("/proc") if p.isdigit())
seen["environ"] = sorted(os.environ)
print(json.dumps(seen))
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return find_sandbox(scratch)


def test_the_parser_sees_only_its_folder_and_no_network(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALDROP_PASSPHRASE", "never inside")
    outside = tmp_path / "other-submission.txt"
    outside.write_text("another source's message")
    key = tmp_path / "keys" / "reviewer.key"
    key.parent.mkdir()
    key.write_text("secret")
    work = tmp_path / "work"
    work.mkdir()
    (work / "input").write_text("the attachment")
    (work / "probe.py").write_text(PROBE)

    accepted: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        port = server.getsockname()[1]

        def accept() -> None:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

        listener = threading.Thread(target=accept)
        listener.start()
        ran = sandbox.run(
            [SYSTEM_PYTHON, f"{INSIDE}/probe.py", str(port), str(outside), str(key)], work, 60
        )
        listener.join()
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)

    assert seen["read_outside"][0] == "refused"
    assert seen["read_key"][0] == "refused"
    assert seen["connect"][0] == "refused" and accepted == []
    assert seen["write_usr"][0] == "refused"
    assert seen["write_tmp"][0] == "ok" and not Path("/tmp/sealdrop-probe").exists()
    assert seen["read_work"] == ["ok", "the attachment"]
    assert seen["write_work"][0] == "ok"
    assert (work / "output").read_text() == "made inside"
    assert seen["work"] == ["input", "output", "probe.py"]
    # No home, no /etc beyond what parsers need, no /root, no /work/.. of the reviewer.
    assert "home" not in seen["root"] and "root" not in seen["root"]
    assert len(seen["processes"]) <= 3  # its own PID namespace: itself and bubblewrap's init
    assert "SEALDROP_PASSPHRASE" not in seen["environ"]
    assert set(seen["environ"]) <= {"PATH", "LANG", "HOME", "PWD", "LC_CTYPE"}


def test_a_stuck_parser_is_killed_with_its_sandbox(sandbox: Sandbox, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(subprocess.TimeoutExpired):
        sandbox.run([SYSTEM_PYTHON, "-c", "import time; time.sleep(60)"], work, 1.0)
    leftover = subprocess.run(
        ["pgrep", "-f", "import time; time.sleep(60)"], capture_output=True, text=True
    )
    assert leftover.stdout.strip() == ""


def test_no_bubblewrap_means_no_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="sudo apt-get install bubblewrap"):
        find_sandbox(tmp_path)
