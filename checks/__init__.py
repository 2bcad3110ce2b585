"""`sealdrop check`: everything an operator can get wrong, each finding with its fix.

One line per finding, ``OK ...`` or ``PROBLEM ...: fix: ...``; the exit status is 1
when there is any problem. ``--quiet`` prints only the problems, for the container's
HEALTHCHECK. Nothing here changes anything: folders are examined, never created or
repaired, and a check that needs an earlier one to pass is skipped (the earlier
PROBLEM already says what to do).

What is checked: the settings (read by `settings.from_command_line`, as ``serve``
reads them), whether the head deadline and the upload rate floor spare a slow Tor circuit
and whether the open-file limit allows max_connections (checks/uploads.py),
whether the codename queue drains within its wait at the configured Argon2id cost
(checks/codenames.py), the reviewer public key, that no reviewer
SECRET key lies anywhere the server can read (next to the public key or the config
file, in the spool, state or replies folder), those folders' permissions, free space
against the reserve, the tor program and whether its version takes the proof-of-work
defence in ADD_ONION, and, with ``--tor-control``, that tor's control port answers and
accepts our authentication. ``WARNING ...`` lines (checks/traces.py) name what a seized
disk could still tell and the days uploads failed; they do not change the exit status.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..settings import Settings, SettingsError, from_command_line
from .codenames import check_codename_queue
from .findings import Finding, ok, problem_from_message
from .folders import (
    check_client_authorization,
    check_free_space,
    check_onion_key,
    check_private_dir,
)
from .languages import check_languages
from .secret_keys import (
    check_public_keys,
    check_reply_signing,
    scan_for_secret_keys,
    secret_key_places,
)
from .targets import Targets
from .tor import check_tor_control, check_tor_program
from .traces import check_failure_counts, check_noatime, check_reply_owners
from .uploads import check_body_rate, check_head_timeout, check_open_files

__all__ = ["Finding", "Targets", "check_all", "check_targets", "run_check"]


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
            reply_signing_key_file=settings.reply_signing_key_file,
            reserve_bytes=settings.reserve_bytes,
            tor_control=settings.tor_control,
            tor_control_password=settings.tor_control_password,
        )
        yield check_languages(settings.languages)
    yield from check_targets(targets)
    if settings is not None:
        yield check_head_timeout(settings)
        yield check_body_rate(settings)
        yield check_open_files(settings)
        yield from check_codename_queue(settings)


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
        replies_findings = check_private_dir(targets.replies_dir, "replies folder")
        yield from replies_findings
        if all(finding.ok for finding in replies_findings):
            yield check_reply_owners(targets.replies_dir)
        if targets.state_dir is not None:
            yield check_reply_signing(targets.reply_signing_key_file)
    data_dirs = [d for d in (targets.spool_dir, targets.state_dir, targets.replies_dir) if d]
    yield from check_noatime(data_dirs)
    if targets.state_dir is not None and targets.state_dir.is_dir():
        yield check_failure_counts(targets.state_dir)
    if targets.tor_control is None:
        yield from check_tor_program(targets.tor_cmd)
    else:
        yield from check_tor_control(targets.tor_control, targets.tor_control_password)
