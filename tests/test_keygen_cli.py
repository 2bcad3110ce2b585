from __future__ import annotations

import getpass
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealdrop import keys
from sealdrop.cli import build_parser, main
from sealdrop.reviewer import passphrase


@pytest.fixture
def env_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALDROP_PASSPHRASE", "correct horse")


@pytest.fixture
def no_env_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEALDROP_PASSPHRASE", raising=False)


def _keygen(out: Path) -> int:
    return main(["keygen", "--out", str(out), "--kdf-cost", "min"])


def _answers(*typed: str) -> Iterator[str]:
    return iter(typed)


# --- sealdrop keygen ----------------------------------------------------------------


def test_keygen_writes_a_usable_pair_and_says_what_to_do(
    tmp_path: Path, env_passphrase: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "offline" / "keys"
    assert _keygen(out) == 0

    stdout = capsys.readouterr().out
    public = keys.load_public_key(out / "reviewer.pub")
    secret = keys.load_secret_key(out / "reviewer.key", "correct horse")
    assert secret.public_key == public
    assert keys.encode_public_key(public) in stdout.splitlines()
    assert str(out / "reviewer.pub") in stdout and str(out / "reviewer.key") in stdout
    assert "Keep reviewer.key on this offline machine" in stdout
    assert "Keep reply-signing.key on this offline machine too" in stdout
    assert "Carry only reviewer.pub" in stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "reviewer.key").stat().st_mode) == 0o600


def test_a_named_key_pair_is_labelled_by_its_file_names(
    tmp_path: Path, env_passphrase: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A team's keys side by side: the name is the label the server shows."""
    for name in ("alice", "backup-2027"):
        assert main(["keygen", "--out", str(tmp_path), "--name", name, "--kdf-cost", "min"]) == 0
    stdout = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alice-reply-signing.key",
        "alice-reply-signing.pub",
        "alice.key",
        "alice.pub",
        "backup-2027-reply-signing.key",
        "backup-2027-reply-signing.pub",
        "backup-2027.key",
        "backup-2027.pub",
    ]
    assert "Wrote the reviewer key pair 'alice'" in stdout
    assert "Carry only alice.pub to the operator" in stdout
    secret = keys.load_secret_key(tmp_path / "alice.key", "correct horse")
    assert secret.public_key == keys.load_public_key(tmp_path / "alice.pub")
    from sealdrop.recipients import load_recipients

    for made in tmp_path.iterdir():
        if made.suffix == ".key" or "reply-signing" in made.name:
            made.unlink()
    assert [r.label for r in load_recipients(tmp_path)] == ["alice", "backup-2027"]


@pytest.mark.parametrize("name", ["", "Alice", "../x", ".hidden", "a b", "x" * 41])
def test_an_unusable_key_name_is_refused_before_the_passphrase(
    tmp_path: Path, no_env_passphrase: None, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert main(["keygen", "--out", str(tmp_path), "--name", name, "--kdf-cost", "min"]) == 1
    assert "is not usable" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_keygen_into_an_existing_folder_leaves_its_mode(
    tmp_path: Path, env_passphrase: None
) -> None:
    tmp_path.chmod(0o750)
    assert _keygen(tmp_path) == 0
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "reply-signing.key",
        "reply-signing.pub",
        "reviewer.key",
        "reviewer.pub",
    ]


def test_keygen_refuses_to_overwrite_and_changes_nothing(
    tmp_path: Path, env_passphrase: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _keygen(tmp_path) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()

    assert _keygen(tmp_path) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "already exists" in captured.err and str(tmp_path / "reviewer.pub") in captured.err
    assert "Traceback" not in captured.err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_keygen_refuses_an_out_path_that_is_a_file(
    tmp_path: Path, env_passphrase: None, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "file"
    target.write_text("not a folder")
    assert _keygen(target) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert target.read_text() == "not a folder"


def test_keygen_reports_a_folder_it_cannot_create(
    tmp_path: Path, env_passphrase: None, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    assert _keygen(tmp_path / "file" / "keys") == 1
    err = capsys.readouterr().err
    assert "cannot create the folder" in err and "Traceback" not in err


def test_keygen_with_an_empty_env_passphrase_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEALDROP_PASSPHRASE", "")
    assert _keygen(tmp_path / "keys") == 1
    assert "SEALDROP_PASSPHRASE is set but empty" in capsys.readouterr().err
    assert not (tmp_path / "keys").exists()


def test_keygen_without_terminal_or_env_fails_clearly(
    tmp_path: Path,
    no_env_passphrase: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(passphrase, "_has_terminal", lambda: False)
    assert _keygen(tmp_path / "keys") == 1
    err = capsys.readouterr().err
    assert "no terminal" in err and "SEALDROP_PASSPHRASE" in err
    assert not (tmp_path / "keys").exists()


def test_keygen_with_mismatched_typed_passphrases_writes_nothing(
    tmp_path: Path,
    no_env_passphrase: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    typed = _answers("first try", "frist try")
    monkeypatch.setattr(passphrase, "_has_terminal", lambda: True)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: next(typed))
    assert _keygen(tmp_path / "keys") == 1
    assert "differ" in capsys.readouterr().err
    assert not (tmp_path / "keys").exists()


def test_kdf_cost_option_defaults_to_sensitive_and_is_hidden(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert build_parser().parse_args(["keygen", "--out", "x"]).kdf_cost == "sensitive"
    with pytest.raises(SystemExit):
        main(["keygen", "--help"])
    assert "kdf" not in capsys.readouterr().out


# --- read_passphrase -----------------------------------------------------------------


def test_env_passphrase_wins_over_the_prompt() -> None:
    def never(prompt: str) -> str:
        raise AssertionError("prompted although SEALDROP_PASSPHRASE is set")

    environ = {"SEALDROP_PASSPHRASE": "from env"}
    assert passphrase.read_passphrase(True, environ=environ, prompt=never) == "from env"


def test_prompt_is_asked_twice_when_confirming() -> None:
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return "typed"

    assert passphrase.read_passphrase(True, environ={}, prompt=ask) == "typed"
    assert len(prompts) == 2
    prompts.clear()
    assert passphrase.read_passphrase(False, environ={}, prompt=ask) == "typed"
    assert len(prompts) == 1


def test_mismatch_and_empty_are_refused() -> None:
    typed = _answers("one", "two")
    with pytest.raises(passphrase.PassphraseMismatch):
        passphrase.read_passphrase(True, environ={}, prompt=lambda _: next(typed))
    with pytest.raises(passphrase.EmptyPassphrase):
        passphrase.read_passphrase(False, environ={}, prompt=lambda _: "")


def test_no_terminal_is_refused_rather_than_reading_stdin_with_echo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(passphrase, "_has_terminal", lambda: False)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: "echoed")
    with pytest.raises(passphrase.NoTerminal, match="no terminal"):
        passphrase.read_passphrase(False, environ={})
