"""The service's folders: the private-folder rule (as ``serve`` applies it), free space
against the reserve, and what the state folder holds (onion key, client keys)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..onion.errors import OnionStateError
from ..onion.keys import CLIENTS_DIR, KEY_FILE, load_client_public_keys, load_service_key
from ..private_folder import folder_problems, user_name
from ..units import human_size
from .findings import Finding, ok, problem, problem_from_message


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
