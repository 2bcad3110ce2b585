"""`sealdrop serve` runs under the allocator settings (server/memory.py) unless told,
loudly, not to: whether they are in effect is read from the process, and no variable
set beforehand skips them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from sealdrop.keys import encode_public_key
from sealdrop.server import memory

from .serving import Served, serve_env

GOOD_TUNABLES = "glibc.malloc.perturb=85:glibc.malloc.tcache_count=0"


class Execed(Exception):
    """Raised by the fake execve: the restart the code asked for."""


@pytest.fixture
def execve(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    calls: list[dict[str, str]] = []

    def fake(path: str, argv: list[str], env: dict[str, str]) -> None:
        calls.append(env)
        raise Execed

    monkeypatch.setattr(os, "execve", fake)
    return calls


def missing_in_child(env: dict[str, str], *flags: str) -> str:
    """What `missing_settings` says in a fresh interpreter started with `env`."""
    code = "from sealdrop.server import memory; print(memory.missing_settings())"
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", "GLIBC_TUNABLES")}
    done = subprocess.run(
        [sys.executable, *flags, "-c", code],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.parametrize("value", ["1", "yes", "0"])
def test_a_marker_set_beforehand_does_not_skip_the_restart(
    monkeypatch: pytest.MonkeyPatch, execve: list[dict[str, str]], value: str
) -> None:
    # This test process runs with Python's own allocator and glibc's defaults.
    monkeypatch.setenv(memory.MARKER, value)

    with pytest.raises(Execed):
        memory.with_memory_hygiene()

    [env] = execve
    assert env["PYTHONMALLOC"] == "malloc"
    assert env["GLIBC_TUNABLES"].endswith(GOOD_TUNABLES)
    assert env[memory.MARKER] == str(os.getpid())


def test_settings_that_did_not_take_effect_after_the_restart_stop_serve(
    monkeypatch: pytest.MonkeyPatch, execve: list[dict[str, str]]
) -> None:
    monkeypatch.setenv(memory.MARKER, str(os.getpid()))  # as after the restart

    with pytest.raises(SystemExit) as stopped:
        memory.with_memory_hygiene()

    assert execve == []  # no endless restarts
    message = str(stopped.value.code)
    assert "did not take effect" in message and "not malloc" in message
    assert f"{memory.MARKER}=off" in message


def test_running_without_them_is_said_at_start(
    monkeypatch: pytest.MonkeyPatch,
    execve: list[dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(memory.MARKER, "off")

    memory.with_memory_hygiene()

    assert execve == []
    assert "WARNING: SEALDROP_MEMORY_HYGIENE=off" in capsys.readouterr().err


def test_what_is_in_effect_is_read_from_the_process() -> None:
    assert missing_in_child({"PYTHONMALLOC": "malloc", "GLIBC_TUNABLES": GOOD_TUNABLES}) == "[]"
    # Python's own allocator: the environment says malloc, but -E made Python ignore it.
    both = {"PYTHONMALLOC": "malloc", "GLIBC_TUNABLES": GOOD_TUNABLES}
    assert "not malloc" in missing_in_child(both, "-E")
    assert "not malloc" in missing_in_child({**both, "PYTHONMALLOC": "pymalloc"})
    assert "not malloc" in missing_in_child({**both, "PYTHONMALLOC": "malloc_debug"})
    # glibc's per-thread cache keeps freed blocks as they were, perturb or not.
    for tunables in (
        "glibc.malloc.perturb=85",
        "glibc.malloc.tcache_count=0",
        "glibc.malloc.perturb=85:glibc.malloc.tcache_count=1",
        f"{GOOD_TUNABLES}:glibc.malloc.tcache_count=7",  # the last one wins
        "glibc.malloc.perturb=17:glibc.malloc.tcache_count=0",
    ):
        missing = missing_in_child({"PYTHONMALLOC": "malloc", "GLIBC_TUNABLES": tunables})
        assert "does not overwrite freed blocks" in missing, tunables
        assert "not malloc" not in missing


def test_serve_restarts_under_the_settings_whatever_the_marker_says(tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir(mode=0o700)
    public = tmp_path / "reviewer.pub"
    public.write_text(encode_public_key(PrivateKey.generate().public_key) + "\n")
    argv = ["--local-only", "--spool", str(tmp_path / "spool"), "--public-key", str(public)]
    env = serve_env({memory.MARKER: "1"})
    served = Served([*argv, "--listen", "127.0.0.1:0"], tmp_path, env=env)
    try:
        served.wait_for_url()
        environ = dict(
            entry.split(b"=", 1)
            for entry in Path(f"/proc/{served.pid}/environ").read_bytes().split(b"\0")
            if b"=" in entry
        )
    finally:
        served.stop()
    assert environ[b"PYTHONMALLOC"] == b"malloc"
    assert environ[memory.MARKER.encode()] == str(served.pid).encode()
