"""The real server (`sealdrop serve --local-only`, gunicorn) sealing to a team of three keys:
each secret key alone opens every submission, byte for byte; a fourth opens nothing; and a
secret key among the public ones stops the server before it serves anything."""

from __future__ import annotations

import http.client
import random
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sealdrop import cli, keys
from sealdrop.tests.serving import sealdrop_command, serve_env

PASSPHRASE = "team passphrase"
TEAM = ("alice", "bob", "backup")


@pytest.fixture
def secret_keys(tmp_path: Path) -> dict[str, Path]:
    """Each reviewer's key pair made offline; secret keys kept apart from the server's."""
    offline = tmp_path / "offline"
    offline.mkdir()
    made = {}
    for name in (*TEAM, "outsider"):
        _, made[name] = keys.write_key_pair(offline, PASSPHRASE, keys.KdfCost.MIN, name)
    return made


@pytest.fixture
def public_key_file(tmp_path: Path, secret_keys: dict[str, Path]) -> Path:
    """What conftest's server is started with: a folder of the team's three .pub files."""
    folder = tmp_path / "reviewers"
    folder.mkdir()
    for name in TEAM:
        public = secret_keys[name].with_suffix(".pub")
        (folder / public.name).write_bytes(public.read_bytes())
    return folder


def post(server: Any, body: Any) -> int:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        connection.request("POST", "/submit", body.body, {"Content-Type": body.content_type})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def snapshot(spool_dir: Path) -> dict[str, bytes]:
    """Every file under the spool folder (the server's pool of spare files too)."""
    return {
        str(p.relative_to(spool_dir)): p.read_bytes() for p in spool_dir.rglob("*") if p.is_file()
    }


def opened_contents(out: Path) -> list[tuple[str, dict[str, bytes]]]:
    """(message, {file name: bytes}) of every submission folder `sealdrop open` wrote."""
    found = []
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and p.name[0].isdigit()):
        files = {p.name: p.read_bytes() for p in (folder / "files").iterdir()}
        found.append(((folder / "message.txt").read_text(encoding="utf-8"), files))
    return sorted(found)


def test_each_of_three_keys_alone_opens_every_submission_and_a_fourth_none(
    start_server: Callable[..., Any],
    submission_body: Callable[..., Any],
    spool_dir: Path,
    secret_keys: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = start_server()
    assert b"each submission is sealed to 3 reviewer keys: alice, backup, bob" in server.output()
    rng = random.Random(16)
    sent = []
    for index in range(3):
        message = f"tip {index}: the sawmill at kilometre {rng.randrange(100)}"
        files = {f"evidence-{index}.bin": rng.randbytes(rng.randrange(1, 200_000))}
        assert post(server, submission_body(message, *files.items())) == 200
        sent.append((message, files))
    spool_before = snapshot(spool_dir)
    assert len([name for name in spool_before if name.endswith(".sealed")]) == 3
    monkeypatch.setenv("SEALDROP_PASSPHRASE", PASSPHRASE)

    for name in TEAM:
        out = tmp_path / f"opened-by-{name}"
        argv = ["open", str(spool_dir), "--key", str(secret_keys[name]), "--out", str(out)]
        assert cli.main(argv) == 0, name
        assert opened_contents(out) == sorted(sent), name
        assert snapshot(spool_dir) == spool_before

    capsys.readouterr()
    out = tmp_path / "opened-by-outsider"
    argv = ["open", str(spool_dir), "--key", str(secret_keys["outsider"]), "--out", str(out)]
    assert cli.main(argv) == 1
    assert opened_contents(out) == []
    captured = capsys.readouterr()
    assert captured.err.count("— wrong key: it is not sealed to this key") == 3
    outsider = keys.encode_public_key(
        keys.load_public_key(secret_keys["outsider"].with_suffix(".pub"))
    )
    assert f"sealdrop open: opening with outsider.key: {outsider}" in captured.err
    assert "    wrong key" in captured.out and captured.out.count("wrong key") == 1
    assert snapshot(spool_dir) == spool_before


def test_a_secret_key_among_the_public_ones_stops_the_server_naming_the_file(
    public_key_file: Path, secret_keys: dict[str, Path], spool_dir: Path
) -> None:
    planted = public_key_file / "carol.pub"
    planted.write_bytes(secret_keys["outsider"].read_bytes())
    result = subprocess.run(
        sealdrop_command(
            "serve",
            "--spool",
            str(spool_dir),
            "--public-key",
            str(public_key_file),
            "--listen",
            "127.0.0.1:0",
            "--local-only",
        ),
        capture_output=True,
        text=True,
        env=serve_env(),
        timeout=60,
    )
    assert result.returncode == 2
    assert str(planted) in result.stderr and "SECRET" in result.stderr.upper()
    assert "Traceback" not in result.stderr
    assert "http://127.0.0.1" not in result.stdout
    assert not [p for p in spool_dir.rglob("*") if p.is_file()]
