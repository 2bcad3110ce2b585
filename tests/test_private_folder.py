"""One private-folder rule: `serve` refuses to start exactly when `check` reports a problem,
with the same words, for the spool, state and replies folders alike."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sealdrop.app import StartupRefused, create_app
from sealdrop.checks.folders import check_private_dir
from sealdrop.private_folder import folder_problem, folder_problems
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
