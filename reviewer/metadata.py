"""`sealdrop open --strip-metadata`: a copy of each attachment without hidden metadata.

Documents and photos carry information their author never sees: a camera's serial
number and GPS position, a word processor's author name and edit history. Sharing
such a file with a partner can identify the source. mat2 (a Debian and Tails
package) removes what it knows how to; it writes ``name.cleaned.ext`` beside
``name.ext``, and the original is kept untouched for the reviewer's own work.

mat2 is run once per file, on the reviewer's offline machine, with the file's
absolute path (never read as an option), without our environment's passphrase
variable, and inside its own bubblewrap sandbox when bubblewrap is installed.
Nothing here changes the opened folder except adding the cleaned copies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .passphrase import ENV_VAR as PASSPHRASE_VAR
from .unpack import FILE_MODE, FILES_DIR

MAT2 = "mat2"
CLEANED_MARK = ".cleaned"
# A large video can take minutes; a file mat2 is stuck on must not stop the others.
MAT2_TIMEOUT = 900.0
INSTALL_HINT = "install it with `sudo apt-get install mat2` (on Tails: Additional Software)"


class Outcome(Enum):
    CLEANED = "cleaned"
    UNSUPPORTED = "unsupported"  # mat2 does not know the file type
    FAILED = "failed"  # mat2 knows the type but could not clean this file
    ALREADY = "already"  # a cleaned copy is already there


@dataclass(frozen=True)
class Stripped:
    original: Path
    outcome: Outcome
    cleaned: Path | None = None


def cleaned_path(path: Path) -> Path:
    """Where mat2 writes the clean copy: ``report.pdf`` -> ``report.cleaned.pdf``."""
    return path.with_name(f"{path.stem}{CLEANED_MARK}{path.suffix}")


def is_cleaned_copy(path: Path) -> bool:
    return path.stem.endswith(CLEANED_MARK)


def find_mat2() -> str | None:
    return shutil.which(MAT2)


def strip_file(mat2: str, path: Path, timeout: float = MAT2_TIMEOUT) -> Stripped:
    target = cleaned_path(path)
    if target.exists():
        return Stripped(path, Outcome.ALREADY, target)
    env = {name: value for name, value in os.environ.items() if name != PASSPHRASE_VAR}
    try:
        result = subprocess.run(
            [mat2, str(path.absolute())],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        target.unlink(missing_ok=True)
        return Stripped(path, Outcome.FAILED)
    if result.returncode == 0 and target.is_file():
        # mat2 creates it with the default umask; keep it as private as the original.
        os.chmod(target, FILE_MODE)
        return Stripped(path, Outcome.CLEANED, target)
    target.unlink(missing_ok=True)
    if "not supported" in result.stdout + result.stderr:
        return Stripped(path, Outcome.UNSUPPORTED)
    return Stripped(path, Outcome.FAILED)


def strip_folder(mat2: str, folder: Path) -> list[Stripped]:
    """Clean every attachment of one opened submission folder."""
    files_dir = folder / FILES_DIR
    if not files_dir.is_dir():
        return []
    originals = sorted(
        path for path in files_dir.iterdir() if path.is_file() and not is_cleaned_copy(path)
    )
    return [strip_file(mat2, path) for path in originals]


def strip_opened(out: Path, folders: Iterable[str], say: Callable[[str], None]) -> None:
    """The `--strip-metadata` step of `sealdrop open`, for the folders it just opened."""
    folders = list(folders)
    if not folders:
        return
    mat2 = find_mat2()
    if mat2 is None:
        say(
            "--strip-metadata: mat2 is not installed, so NO hidden information was removed "
            f"from the attachments; {INSTALL_HINT}, then clean a file before sharing it "
            "with `mat2 FILE` (it writes FILE.cleaned.EXT beside it)"
        )
        return
    for name in folders:
        for result in strip_folder(mat2, out / name):
            say(describe(result, out))


def describe(result: Stripped, out: Path) -> str:
    shown = (
        result.original.relative_to(out) if result.original.is_relative_to(out) else result.original
    )
    if result.outcome is Outcome.CLEANED and result.cleaned is not None:
        return f"metadata removed: {shown} -> {result.cleaned.name} (share the .cleaned copy)"
    if result.outcome is Outcome.ALREADY and result.cleaned is not None:
        return f"metadata already removed: {shown} -> {result.cleaned.name}"
    if result.outcome is Outcome.UNSUPPORTED:
        return (
            f"metadata NOT removed: {shown}: mat2 does not know this type of file; do not "
            "share it as it is (copy its text or print it to a new file instead)"
        )
    return (
        f"metadata NOT removed: {shown}: mat2 could not clean it (the file may be damaged "
        "or unusual); do not share it as it is"
    )
