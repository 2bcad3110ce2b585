"""``sealdrop onion add-client NAME [--state DIR | --config FILE]``: works without tor running.

The state folder is the service's `state_dir` setting, read as ``serve`` reads it.

The service reads the client keys as its own user, the owner of the state folder.
Run as another user (``sudo sealdrop onion add-client``), the new folder and key
would belong to that user, and the service, unable to read them, must refuse to
start (onion.keys fails closed). So this command acts as the state folder's owner:
as root it says so and makes its files as that user (and gives back a client folder
an earlier root run left behind); as any other user it refuses and names the fix.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from ..private_folder import user_name
from ..settings import SettingsError, one_from_command_line
from .errors import OnionError, OnionStateError
from .keys import CLIENTS_DIR, add_client

_COMMAND = "sealdrop onion add-client"


def run_add_client(args: argparse.Namespace) -> int:
    try:
        state_dir: Path | None = one_from_command_line("state_dir", args, os.environ)
    except SettingsError as err:
        print(f"{_COMMAND}: {err}", file=sys.stderr)
        return 2
    if state_dir is None:
        print(
            f"{_COMMAND}: no state folder; name it with --state DIR, or give the service's "
            "settings (--config FILE, or SEALDROP_STATE_DIR)",
            file=sys.stderr,
        )
        return 2
    try:
        with acting_as_state_owner(state_dir):
            credentials = add_client(state_dir, args.name)
    except OnionError as err:
        print(f"{_COMMAND}: {err}", file=sys.stderr)
        return 2
    print(credentials.instructions(), end="")
    print(
        "Restart sealdrop serve for the new client to take effect. From now on ONLY "
        "authorised clients can reach the service."
    )
    return 0


@contextlib.contextmanager
def acting_as_state_owner(state_dir: Path) -> Iterator[None]:
    """Run the body with the effective user and group of `state_dir`'s owner."""
    try:
        info = state_dir.lstat()
    except FileNotFoundError:
        yield  # a new state folder: it belongs to whoever makes it
        return
    except OSError as err:
        raise OnionStateError(
            f"cannot examine the state folder {state_dir} ({err.strerror})"
        ) from None
    me = os.geteuid()
    if info.st_uid == me:
        yield
        return
    owner = user_name(info.st_uid)
    if me != 0:
        raise OnionStateError(
            f"the state folder {state_dir} belongs to {owner}, the user sealdrop serve runs "
            f"as, not to {user_name(me)}: the service could not read a key made by "
            f"{user_name(me)}. Run: sudo -u {owner} {_COMMAND} ..."
        )
    print(
        f"{_COMMAND}: warning: run as root, but the state folder {state_dir} belongs to "
        f"{owner}, the user sealdrop serve runs as; the new key is made as {owner} so the "
        f"service can read it (next time: sudo -u {owner} {_COMMAND} ...)",
        file=sys.stderr,
    )
    give_back_client_folder(state_dir / CLIENTS_DIR, info.st_uid, info.st_gid)
    saved_gid = os.getegid()
    os.setegid(info.st_gid)
    os.seteuid(info.st_uid)
    try:
        yield
    finally:
        os.seteuid(me)
        os.setegid(saved_gid)


def give_back_client_folder(clients: Path, uid: int, gid: int) -> None:
    """Give a client folder (and the files in it) made by root to the state's owner.

    An earlier ``sudo sealdrop onion add-client`` left one behind that the service cannot
    list. Links are not followed; anything that is not a plain folder or file is left for
    the service's start-up check to name.
    """
    try:
        info = clients.lstat()
    except FileNotFoundError:
        return
    except OSError as err:
        raise OnionStateError(f"cannot examine {clients} ({err.strerror})") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid == uid:
        return
    changed = [clients]
    os.lchown(clients, uid, gid)
    for entry in os.scandir(clients):
        if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid != uid:
            os.lchown(entry.path, uid, gid)
            changed.append(Path(entry.path))
    print(
        f"{_COMMAND}: gave {len(changed)} path(s) under {clients} to {user_name(uid)}, "
        "who could not read them",
        file=sys.stderr,
    )
