"""`sealdrop check`: everything an operator can get wrong, each finding with its fix.

One line per finding, ``OK ...`` or ``PROBLEM ...: fix: ...``; the exit status is 1
when there is any problem. ``--quiet`` prints only the problems, for the container's
HEALTHCHECK. Nothing here changes anything: folders are examined, never created or
repaired, and a check that needs an earlier one to pass is skipped (the earlier
PROBLEM already says what to do).

What is checked: the settings (read by `settings.from_command_line`, as ``serve``
reads them), the reviewer public key, that no reviewer
SECRET key lies anywhere the server can read (next to the public key or the config
file, in the spool, state or replies folder), those folders' permissions, free space
against the reserve, the tor program and whether its version takes the proof-of-work
defence in ADD_ONION, and, with ``--tor-control``, that tor's control port answers and
accepts our authentication.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import stem

from .keys import KeyFileError, KeyFileInaccessible, looks_like_secret_key
from .onion.errors import OnionError, OnionStateError
from .onion.keys import CLIENTS_DIR, KEY_FILE, load_client_public_keys, load_service_key
from .private_folder import folder_problems, user_name
from .recipients import load_recipients
from .settings import Settings, SettingsError, from_command_line
from .units import human_size

# Onion-service proof-of-work (the DoS defence) arrived in tor 0.4.8, but only as torrc
# options; ADD_ONION, which sealdrop publishes with, takes its PoW keywords from tor
# 0.4.9.2-alpha. An older tor publishes sealdrop's service without the defence.
POW_MINIMUM = (0, 4, 9, 2)
TOR_VERSION_TIMEOUT = 10.0
# A reviewer secret key file is a few hundred bytes, and `keys` refuses any key file
# over 64 KiB; a bigger file is read only at its start, where an accidental copy of
# a key (a file renamed, say) would be, so big spool files cost little to scan.
_SMALL_FILE_BYTES = 64 * 1024
_HEAD_BYTES = 4 * 1024
_TOR_VERSION = re.compile(r"\bTor version (\d+)\.(\d+)\.(\d+)(?:\.(\d+))?(-[0-9A-Za-z-]+)?")


@dataclass(frozen=True)
class Finding:
    """One result: fine, or a problem together with what to do about it."""

    ok: bool
    text: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"OK {self.text}"
        return f"PROBLEM {self.text}: fix: {self.fix}"


def ok(text: str) -> Finding:
    return Finding(True, text)


def problem(text: str, fix: str) -> Finding:
    return Finding(False, text, fix)


def problem_from_message(message: str, default_fix: str) -> Finding:
    """A finding from another module's error message, which names the problem and,
    after its first ``; `` or ``. ``, the fix (the house style for operator messages)."""
    for separator in ("; ", ". "):
        head, found, tail = message.partition(separator)
        if found and tail.strip():
            return problem(head, tail.strip().rstrip("."))
    return problem(message.rstrip("."), default_fix)


@dataclass(frozen=True)
class Targets:
    """What to check; None means "not configured" and skips that check."""

    config_file: Path | None = None
    spool_dir: Path | None = None
    public_key_file: Path | None = None
    state_dir: Path | None = None
    replies_dir: Path | None = None
    reserve_bytes: int = 0
    tor_control: str | None = None
    tor_control_password: str | None = None
    tor_cmd: str = "tor"


def run_check(args: argparse.Namespace) -> int:
    findings = list(check_all(args, os.environ))
    for finding in findings:
        if not (args.quiet and finding.ok):
            print(finding.line(), flush=True)
    return 0 if all(finding.ok for finding in findings) else 1


def check_all(args: argparse.Namespace, env: Mapping[str, str]) -> Iterator[Finding]:
    settings, finding = load(args, env)
    yield finding
    if settings is None:
        # Still check what the command line names: the folders and key it points at.
        targets = Targets(
            config_file=args.config,
            spool_dir=_given_path(args.spool_dir),
            public_key_file=_given_path(args.public_key_file),
            state_dir=_given_path(args.state_dir),
            tor_control=args.tor_control,
        )
    else:
        targets = Targets(
            config_file=args.config,
            spool_dir=settings.spool_dir,
            public_key_file=settings.public_key_file,
            state_dir=settings.state_dir,
            replies_dir=settings.replies_dir,
            reserve_bytes=settings.reserve_bytes,
            tor_control=settings.tor_control,
            tor_control_password=settings.tor_control_password,
        )
    yield from check_targets(targets)


def _given_path(raw: str | None) -> Path | None:
    return Path(raw) if raw else None


def load(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Settings | None, Finding]:
    """The settings exactly as ``sealdrop serve`` reads them."""
    try:
        settings = from_command_line(args, env)
    except SettingsError as err:
        return None, problem_from_message(f"configuration: {err}", "fix the setting named")
    where = f"the config file {args.config} and " if args.config else ""
    return settings, ok(f"configuration: {where}SEALDROP_* variables read without error")


def check_targets(targets: Targets) -> Iterator[Finding]:
    if targets.public_key_file is not None:
        yield from check_public_keys(targets.public_key_file)
    yield from scan_for_secret_keys(secret_key_places(targets))
    if targets.spool_dir is not None:
        spool_findings = check_private_dir(targets.spool_dir, "spool folder")
        yield from spool_findings
        if all(finding.ok for finding in spool_findings):
            yield check_free_space(targets.spool_dir, targets.reserve_bytes)
    if targets.state_dir is not None:
        state_findings = check_private_dir(targets.state_dir, "state folder")
        yield from state_findings
        if all(finding.ok for finding in state_findings):
            yield check_onion_key(targets.state_dir)
            yield check_client_authorization(targets.state_dir)
    if targets.replies_dir is not None:
        yield from check_private_dir(targets.replies_dir, "replies folder")
    if targets.tor_control is None:
        yield from check_tor_program(targets.tor_cmd)
    else:
        yield from check_tor_control(targets.tor_control, targets.tor_control_password)


# --- the reviewer's keys -----------------------------------------------------------------


def check_public_keys(path: Path) -> Iterator[Finding]:
    """One line per configured reviewer key (label and key text), or the one refusal."""
    try:
        reviewers = load_recipients(path)
    except KeyFileInaccessible as err:
        yield problem(
            f"public key: {err}",
            "give the path of reviewer.pub, or of a folder of .pub files (public_key_file), "
            "and make it readable by the service's user",
        )
        return
    except KeyFileError as err:
        yield problem_from_message(f"public key: {err}", "give the reviewers' .pub files")
        return
    count = f"{len(reviewers)} reviewer key{'' if len(reviewers) == 1 else 's'}"
    yield ok(f"{count} in {path}; each submission is sealed to every one")
    for reviewer in reviewers:
        yield ok(f"reviewer key {reviewer.label!r}: {reviewer.fingerprint}")


def secret_key_places(targets: Targets) -> list[tuple[Path, bool]]:
    """Folders to scan, each with whether to descend into subfolders.

    The spool, state and replies folders belong to sealdrop, so all of each is scanned; the
    folders holding the public key and the config file may be shared (/etc/sealdrop,
    a home folder), so only the files directly in them.
    """
    places: list[tuple[Path, bool]] = []
    keys = targets.public_key_file
    for path, recursive in (
        (keys.parent if keys else None, False),
        # A folder of .pub files: its own files too (load_recipients refuses strays).
        (keys if keys and os.path.isdir(keys) else None, False),
        (targets.config_file.parent if targets.config_file else None, False),
        (targets.spool_dir, True),
        (targets.state_dir, True),
        (targets.replies_dir, True),
    ):
        if path is not None and os.path.isdir(path):
            places.append((path, recursive))
    return places


def scan_for_secret_keys(places: Iterable[tuple[Path, bool]]) -> Iterator[Finding]:
    """A PROBLEM for each file holding a reviewer secret key, and for each file that
    cannot be read (it could be one); one OK if the places are clean."""
    seen: set[tuple[int, int]] = set()
    scanned_places: list[str] = []
    clean = True
    for folder, recursive in places:
        scanned_places.append(str(folder))
        for path in _files_in(folder, recursive):
            try:
                info = path.stat()
            except OSError:
                continue  # a dangling symlink holds nothing
            if (info.st_dev, info.st_ino) in seen or not stat.S_ISREG(info.st_mode):
                continue
            seen.add((info.st_dev, info.st_ino))
            finding = _scan_file(path, info.st_size)
            if finding is not None:
                clean = False
                yield finding
    if clean and scanned_places:
        yield ok(f"no reviewer secret key in {', '.join(scanned_places)}")


def _files_in(folder: Path, recursive: bool) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return  # an unreadable folder is reported by the permission checks
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if recursive:
                yield from _files_in(Path(entry.path), recursive)
        else:
            yield Path(entry.path)


def _scan_file(path: Path, size: int) -> Finding | None:
    limit = _SMALL_FILE_BYTES if size <= _SMALL_FILE_BYTES else _HEAD_BYTES
    try:
        with path.open("rb") as handle:
            data = handle.read(limit)
    except OSError as err:
        return problem(
            f"{path} cannot be read ({err.strerror}), so it cannot be checked for a "
            "reviewer secret key",
            "make it readable by the user running `sealdrop check`, or move it out",
        )
    if looks_like_secret_key(data):
        return problem(
            f"{path} holds a reviewer SECRET key; the server must never have it",
            f"delete it securely (shred -u {path}); the secret key belongs only on the "
            "reviewer's offline machine; if it has been on this server, make a new key "
            "pair and give the service the new reviewer.pub",
        )
    return None


# --- folders -------------------------------------------------------------------------------


def check_private_dir(path: Path, label: str) -> list[Finding]:
    """The private-folder rule, exactly as ``serve`` applies it (`private_folder`)."""
    problems = folder_problems(path, label)
    if problems:
        return [problem(found.text, found.fix) for found in problems]
    mode = stat.S_IMODE(path.lstat().st_mode)
    return [ok(f"the {label} {path}: mode {mode:04o}, owner {user_name(os.geteuid())}")]


def check_free_space(path: Path, reserve_bytes: int) -> Finding:
    try:
        info = os.statvfs(path)
    except OSError as err:
        return problem(
            f"the free space of {path} cannot be measured ({err.strerror})",
            "check the spool folder's file system",
        )
    free = info.f_bavail * info.f_frsize
    text = f"{human_size(free)} free in {path}, reserve {human_size(reserve_bytes)}"
    if free < reserve_bytes:
        return problem(
            f"{text}: the service refuses submissions until free space is above the reserve",
            "move opened spool files to the reviewer and delete them here, add disk space, "
            "or lower reserve_bytes",
        )
    return ok(text)


def check_onion_key(state_dir: Path) -> Finding:
    if not (state_dir / KEY_FILE).exists():
        return ok(f"no onion service key in {state_dir} yet: the first start makes one")
    try:
        key = load_service_key(state_dir)
    except (OnionStateError, OSError) as err:
        return problem_from_message(
            f"onion service key: {err}", "restore the state folder from your backup"
        )
    assert key is not None
    return ok(
        f"onion service key in {state_dir} (address {key.service_id}.onion); keep a backup of it"
    )


def check_client_authorization(state_dir: Path) -> Finding:
    """The client keys exactly as ``serve`` reads them: any error is a PROBLEM (fail closed)."""
    try:
        keys = load_client_public_keys(state_dir)
    except OnionStateError as err:
        return problem_from_message(
            f"client authorization: {err}", f"fix or remove {state_dir / CLIENTS_DIR}"
        )
    if not keys:
        return ok(
            f"no client authorization ({state_dir / CLIENTS_DIR} does not exist): anyone "
            "with the onion address can reach the service"
        )
    return ok(
        f"client authorization: {len(keys)} authorised client(s) in {state_dir / CLIENTS_DIR}"
    )


# --- tor -------------------------------------------------------------------------------------


def parse_tor_version(text: str) -> tuple[int, int, int, int] | None:
    """(major, minor, micro, patch) from ``tor --version`` output, or None."""
    match = _TOR_VERSION.search(text)
    if match is None:
        return None
    major, minor, micro, patch = (int(group or 0) for group in match.groups()[:4])
    return major, minor, micro, patch


def format_version(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def version_finding(version: tuple[int, int, int, int], where: str) -> Finding:
    name = f"tor {format_version(version)} ({where})"
    if version < POW_MINIMUM:
        return problem(
            f"{name} cannot give sealdrop's onion service the proof-of-work defence (ADD_ONION "
            f"takes it from tor {format_version(POW_MINIMUM)}), so a flood of connections can "
            "keep sources out",
            "upgrade tor: Debian 12's tor package is 0.4.9 since its 2025 updates "
            "(apt-get update && apt-get install tor), or use the Tor Project's repository",
        )
    return ok(f"{name} supports the proof-of-work defence")


def check_tor_program(tor_cmd: str) -> list[Finding]:
    """``tor --version``; and ``--list-modules``, since proof-of-work is an optional
    module (a tor built without ``--enable-gpl`` lacks it whatever its version)."""
    try:
        result = subprocess.run(
            [tor_cmd, "--version"],
            capture_output=True,
            text=True,
            timeout=TOR_VERSION_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        return [
            problem(
                f"tor is not installed (no {tor_cmd!r} on the PATH)",
                "install it (Debian: apt-get install tor), or attach to a running tor "
                "with --tor-control",
            )
        ]
    except (OSError, subprocess.TimeoutExpired) as err:
        return [problem(f"`{tor_cmd} --version` failed ({err})", "reinstall tor")]
    version = parse_tor_version(result.stdout)
    if result.returncode != 0 or version is None:
        return [
            problem(
                f"`{tor_cmd} --version` did not report a version (exit status {result.returncode})",
                "reinstall tor (Debian: apt-get install --reinstall tor)",
            )
        ]
    findings = [version_finding(version, f"the {tor_cmd!r} program sealdrop starts")]
    if findings[0].ok and _pow_module(tor_cmd) is False:
        findings.append(
            problem(
                f"this tor was built without its proof-of-work module ({tor_cmd} "
                "--list-modules says 'pow: no')",
                "install a tor built with --enable-gpl, like Debian's or the Tor Project's",
            )
        )
    return findings


def _pow_module(tor_cmd: str) -> bool | None:
    """True/False from ``tor --list-modules``; None when tor cannot say."""
    try:
        result = subprocess.run(
            [tor_cmd, "--list-modules"],
            capture_output=True,
            text=True,
            timeout=TOR_VERSION_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_pow_module(result.stdout)


def parse_pow_module(text: str) -> bool | None:
    match = re.search(r"^pow:\s*(yes|no)\s*$", text, re.MULTILINE)
    return None if match is None else match.group(1) == "yes"


def check_tor_control(control: str, password: str | None = None) -> list[Finding]:
    """Connect and authenticate as ``serve`` will (cookie, password or none)."""
    from .onion.control import connect

    try:
        controller = connect(control, password)
    except OnionError as err:
        return [problem_from_message(str(err), "check tor's ControlPort/ControlSocket lines")]
    try:
        version = parse_tor_version(f"Tor version {controller.get_version()}")
    except stem.ControllerError as err:
        return [
            problem(f"tor's control port at {control} stopped answering ({err})", "check tor's log")
        ]
    finally:
        controller.close()
    reached = ok(f"tor's control port at {control} answers and accepts sealdrop's authentication")
    if version is None:
        return [reached, problem(f"tor at {control} reports no version", "upgrade tor")]
    return [reached, version_finding(version, f"at {control}")]
