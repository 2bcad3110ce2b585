"""Every program sealdrop starts gets the fixed environment of child_env.py, not the
starting process's: not serve's allocator settings, not a passphrase, not settings.
Read from each running child (/proc/PID/environ), not from the code that starts it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sealdrop.checks.tor import check_tor_program
from sealdrop.child_env import child_env
from sealdrop.onion.tor_process import TorProcess
from sealdrop.reviewer.sandbox import SandboxUnavailable, find_sandbox

from .tor_local import OFFLINE_TORRC, tor_binary

# What `sealdrop serve` runs with after its restart (server/memory.py), and what a
# reviewer or an operator may have set.
INHERITED = {
    "PYTHONMALLOC": "malloc",
    "GLIBC_TUNABLES": "glibc.malloc.perturb=85:glibc.malloc.tcache_count=0",
    "MALLOC_PERTURB_": "85",
    "PYTHONPATH": "/somewhere",
    "SEALDROP_PASSPHRASE": "correct horse",
    "SEALDROP_SPOOL_DIR": "/var/lib/sealdrop/spool",
}


@pytest.fixture(autouse=True)
def inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in INHERITED.items():
        monkeypatch.setenv(name, value)


def environ_of(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(entry.split("=", 1) for entry in text.split("\0") if "=" in entry)


@pytest.mark.tor
@pytest.mark.skipif(tor_binary() is None, reason="needs the Debian tor package")
def test_the_tor_sealdrop_starts_gets_only_the_child_environment(tmp_path: Path) -> None:
    tor = TorProcess(tmp_path / "tor", extra_torrc=OFFLINE_TORRC)
    tor.start()
    try:
        assert tor.pid is not None
        seen = environ_of(tor.pid)
    finally:
        tor.stop()
    assert seen == child_env()


def test_tor_asked_for_its_version_gets_only_the_child_environment(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    script = tmp_path / "tor"
    script.write_text(f'#!/bin/sh\nenv > {seen}\necho "Tor version 0.4.9.3."\n')
    script.chmod(stat.S_IRWXU)

    check_tor_program(str(script))

    lines = seen.read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines} - {"PWD", "SHLVL", "_"}  # sh's own
    assert names == set(child_env())


def test_bubblewrap_gets_only_the_child_environment(tmp_path: Path) -> None:
    try:
        sandbox = find_sandbox(tmp_path)
    except SandboxUnavailable as err:
        pytest.skip(str(err))
    # Inside its namespace bubblewrap itself is process 1 (what the parser sees is
    # test_sandbox's).
    ran = sandbox.run(["cat", "/proc/1/environ"], tmp_path, 30)

    assert ran.returncode == 0, ran.stderr
    entries = [entry.split("=", 1) for entry in ran.stdout.split("\0") if entry]
    assert dict(entries) == child_env()
