"""One private-folder rule: `serve` refuses to start exactly when `check` reports a problem,
with the same words, for the spool, state and replies folders alike; and one rule for
reading a private file (keys, the codename salt)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sealdrop.app import StartupRefused, create_app
from sealdrop.checks.folders import check_private_dir
from sealdrop.codename import SALT_FILE, SaltUnusable, load_installation_salt
from sealdrop.onion.errors import OnionStateError
from sealdrop.onion.keys import KEY_FILE, load_or_create_service_key, load_service_key
from sealdrop.private_folder import (
    PrivateFileRefused,
    folder_problem,
    folder_problems,
    read_private_file,
)
from sealdrop.settings import Settings

IS_ROOT = os.geteuid() == 0


def private(path: Path) -> Path:
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)
    return path


def missing(path: Path) -> Path:
    return path


def a_file(path: Path) -> Path:
    path.write_text("")
    return path


def a_symlink(path: Path) -> Path:
    path.symlink_to(private(path.with_name(path.name + "-real")))
    return path


def open_to(mode: int) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        os.chmod(private(path), mode)
        return path

    return make


def another_owner(path: Path) -> Path:
    os.chown(private(path), 65534, 65534)
    return path


def read_only(path: Path) -> Path:
    os.chmod(private(path), 0o500)
    return path


CASES = {
    "private": (private, None),
    "missing": (missing, "does not exist"),
    "a file": (a_file, "is not a folder"),
    "a symlink to a good folder": (a_symlink, "is a symbolic link"),
    "group-readable": (open_to(0o750), "open to other users (mode 0750)"),
    "world-enterable": (open_to(0o701), "open to other users (mode 0701)"),
}
if IS_ROOT:
    CASES["another user's"] = (another_owner, "belongs to nobody")
else:
    CASES["read-only"] = (read_only, "not writable by its owner")


def serve_refusal(settings: Settings) -> str | None:
    try:
        create_app(settings)
    except StartupRefused as err:
        return str(err)
    return None


@pytest.mark.parametrize("folder", ["spool", "state", "replies"])
@pytest.mark.parametrize("case", list(CASES))
def test_serve_refuses_exactly_what_check_reports(
    tmp_path: Path, public_key_file: Path, folder: str, case: str
) -> None:
    make, says = CASES[case]
    paths = {name: tmp_path / name for name in ("spool", "state", "replies")}
    for name, path in paths.items():
        (make if name == folder else private)(path)
    settings = Settings(
        paths["spool"],
        public_key_file,
        state_dir=paths["state"],
        replies_dir=paths["replies"],
        reserve_bytes=0,
        codename_kdf_memory=8 * 1024,
        codename_kdf_passes=1,
    )
    label = f"{folder} folder"
    findings = check_private_dir(paths[folder], label)
    refusal = serve_refusal(settings)
    if says is None:
        assert [f.ok for f in findings] == [True]
        assert refusal is None
        return
    [finding] = findings
    assert not finding.ok and says in finding.text
    assert refusal is not None, f"serve accepted what check reports: {finding.line()}"
    assert f"{finding.text}; {finding.fix}" in refusal


def test_a_problem_carries_its_fix(tmp_path: Path) -> None:
    folder = open_to(0o755)(tmp_path / "spool")
    [problem] = folder_problems(folder, "spool folder")
    assert problem.text == f"the spool folder {folder} is open to other users (mode 0755)"
    assert problem.fix == f"run `chmod 700 {folder}`"
    assert str(problem) == f"{problem.text}; {problem.fix}"


def test_create_makes_a_missing_folder_private(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "state"
    assert folder_problem(folder, "state folder", create=True) is None
    assert folder.stat().st_mode & 0o777 == 0o700


def test_a_private_file_is_read_only_if_regular_unlinked_and_closed_to_others(
    tmp_path: Path,
) -> None:
    good = tmp_path / "key"
    good.write_bytes(b"12345")
    good.chmod(0o600)
    assert read_private_file(good, "key", 4) == b"12345"  # one byte more than asked
    link = tmp_path / "link"
    link.symlink_to(good)
    with pytest.raises(OSError):
        read_private_file(link, "key", 4)
    with pytest.raises(PrivateFileRefused, match="is not a regular file"):
        read_private_file(private(tmp_path / "folder"), "key", 4)
    good.chmod(0o640)
    with pytest.raises(PrivateFileRefused, match=r"open to other users \(mode 0640\)"):
        read_private_file(good, "key", 4)


def test_every_private_file_follows_the_rule(tmp_path: Path) -> None:
    # The onion service key was read through a link, unlike the salt and client keys.
    state = private(tmp_path / "state")
    load_or_create_service_key(state)
    (state / KEY_FILE).rename(tmp_path / "elsewhere")
    (state / KEY_FILE).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OnionStateError, match="cannot read the onion service key"):
        load_service_key(state)
    (tmp_path / "salt-elsewhere").write_bytes(os.urandom(16))
    (state / SALT_FILE).symlink_to(tmp_path / "salt-elsewhere")
    with pytest.raises(SaltUnusable):
        load_installation_salt(state)
