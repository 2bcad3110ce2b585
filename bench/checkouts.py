"""Which sealdrop a bench's server runs: this checkout, or an earlier commit, with one venv.

bench/upload_bench.py and bench/slow_clients_bench.py measure the code against its
previous version in the same run (issue 13: the same machine noise for both). The
previous version is ``git worktree add --detach`` of a ref in a temporary folder, and it
runs with the bench's own venv: a folder holding only a ``sealdrop`` symlink to the
checkout goes first on PYTHONPATH (the repository root *is* the package, and the venv's
editable finder comes after the path). `check_import` refuses to measure anything else.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The last commit before the worker-model change (gthread -> event-loop workers).
DEFAULT_BASELINE_REF = "adbedb2"


class WrongCheckout(Exception):
    """`import sealdrop` in a server's environment is not the checkout to be measured."""


def without_settings() -> dict[str, str]:
    """This process's environment less every ``SEALDROP_*`` setting: a server started
    from a bench gets only the settings the bench gives it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP_")}


def pythonpath_for(checkout: Path, folder: Path) -> Path:
    """`folder`, holding a ``sealdrop`` symlink to `checkout`: put first on PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "sealdrop"
    if not link.exists():
        link.symlink_to(checkout)
    return folder


def sealdrop_env(checkout: Path, folder: Path) -> dict[str, str]:
    """`without_settings()` that imports `checkout` as ``sealdrop`` (through `folder`)."""
    return {**without_settings(), "PYTHONPATH": str(pythonpath_for(checkout, folder))}


def check_import(env: dict[str, str], checkout: Path, cwd: Path) -> None:
    """Refuse to measure the wrong code: `import sealdrop` with `env` must be `checkout`."""
    found = subprocess.run(
        [sys.executable, "-c", "import sealdrop; print(sealdrop.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if Path(found).resolve() != (checkout / "__init__.py").resolve():
        raise WrongCheckout(f"import sealdrop gives {found or 'nothing'}, not {checkout}")


@contextlib.contextmanager
def baseline_checkout(ref: str, work: Path) -> Iterator[Path]:
    """`ref` checked out (detached) in a worktree under `work`, removed afterwards."""
    path = work / "baseline-checkout"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), ref],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
            check=False,
            capture_output=True,
        )
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)
