"""The one rule for the service's private folders (spool, state, replies) and files.

A private folder is a real folder (not a symbolic link, whose target could be swapped
under the running service), belongs to the user sealdrop runs as, is open to nobody
else (mode 0700 or stricter: nothing for group or others) and can be listed, entered
and written by that user. A private file (a key, the codename salt) is open to nobody
else (0600 or stricter). ``serve`` refuses to start and ``check`` reports a PROBLEM on
exactly the same conditions, because both ask this module.

Nothing here repairs anything: a problem comes back as a `PrivacyProblem`, for the
caller to raise as its own error type or to print as a finding; `read_private_file`
reads a private file by the same rule.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600
_OTHERS = 0o077


@dataclass(frozen=True)
class PrivacyProblem:
    """What is wrong with a private folder or file, and the operator's fix."""

    text: str
    fix: str

    def __str__(self) -> str:
        return f"{self.text}; {self.fix}"


def folder_problems(path: Path, label: str) -> list[PrivacyProblem]:
    """Every way `path` breaks the rule; empty when it is a good private folder.

    `label` names the folder for the operator: ``"spool folder"``.
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return [
            PrivacyProblem(
                f"the {label} {path} does not exist",
                f"create it with `install -d -m 700 -o USER {path}` (USER: the user "
                "sealdrop runs as)",
            )
        ]
    except OSError as err:
        return [
            PrivacyProblem(
                f"the {label} {path} cannot be examined ({err.strerror})",
                "check the path and its parent folders' permissions",
            )
        ]
    if stat.S_ISLNK(info.st_mode):
        return [
            PrivacyProblem(
                f"the {label} {path} is a symbolic link",
                f"give the real folder ({os.path.realpath(path)}) in the settings instead",
            )
        ]
    if not stat.S_ISDIR(info.st_mode):
        return [
            PrivacyProblem(
                f"the {label} {path} is not a folder",
                f"move it away and run `install -d -m 700 -o USER {path}`",
            )
        ]
    problems: list[PrivacyProblem] = []
    mode = stat.S_IMODE(info.st_mode)
    if mode & _OTHERS:
        problems.append(
            PrivacyProblem(
                f"the {label} {path} is open to other users (mode {mode:04o})",
                f"run `chmod 700 {path}`",
            )
        )
    uid = os.geteuid()
    if info.st_uid != uid:
        owner, runner = user_name(info.st_uid), user_name(uid)
        problems.append(
            PrivacyProblem(
                f"the {label} {path} belongs to {owner}, not to {runner} who runs sealdrop",
                f"run sealdrop as {owner}, or `chown {runner} {path}`",
            )
        )
    elif not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        problems.append(
            PrivacyProblem(
                f"the {label} {path} is not writable by its owner (mode {mode:04o})",
                f"run `chmod 700 {path}`",
            )
        )
    return problems


def folder_problem(path: Path, label: str, *, create: bool = False) -> PrivacyProblem | None:
    """The first way `path` breaks the rule, or None. With `create`, a missing folder
    (and its missing parents) is made first, mode 0700."""
    if create:
        try:
            path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        except OSError as err:
            return PrivacyProblem(
                f"cannot create the {label} {path} ({err.strerror})",
                "give a folder whose parent sealdrop's user can write",
            )
    problems = folder_problems(path, label)
    return problems[0] if problems else None


def file_problem(path: Path, info: os.stat_result, label: str) -> PrivacyProblem | None:
    """None when the file `info` describes is open to nobody but its owner."""
    mode = stat.S_IMODE(info.st_mode)
    if mode & _OTHERS:
        return PrivacyProblem(
            f"the {label} {path} is open to other users (mode {mode:04o})",
            f"run `chmod 600 {path}`",
        )
    return None


class PrivateFileRefused(Exception):
    """A private file is not a regular file, or is open to other users.

    Raised by `read_private_file`; `problem` says which, with the fix, for the caller to
    pass on in its own error type.
    """

    def __init__(self, problem: PrivacyProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def read_private_file(path: Path, label: str, max_bytes: int) -> bytes:
    """At most `max_bytes` + 1 bytes of a small private file (a key, the codename salt),
    so the caller can tell a file that is too long.

    Never through a symbolic link (one planted at the name could point anywhere):
    OSError when the file cannot be opened (FileNotFoundError when it is missing, ELOOP
    for a link) or read; `PrivateFileRefused` when it is not a regular file or is open
    to other users.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PrivateFileRefused(
                PrivacyProblem(
                    f"the {label} {path} is not a regular file",
                    f"move it out of {path.parent}",
                )
            )
        problem = file_problem(path, info, label)
        if problem is not None:
            raise PrivateFileRefused(problem)
        return os.read(fd, max_bytes + 1)
    finally:
        os.close(fd)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
