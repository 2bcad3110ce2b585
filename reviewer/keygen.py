"""`sealdrop keygen --out DIR [--name NAME]`: make a reviewer key pair on the offline machine.

The pair is NAME.pub and NAME.key (``reviewer`` by default). The name is the key's
label: a team's keys are told apart by it in `sealdrop check` on the server, where
the public keys sit side by side in one folder (recipients.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..keys import (
    DEFAULT_KEY_NAME,
    KdfCost,
    KeyFileError,
    encode_public_key,
    key_file_paths,
    load_public_key,
    refuse_existing_key_files,
    write_key_pair,
)
from .passphrase import PassphraseError, read_passphrase

_COSTS = {"sensitive": KdfCost.SENSITIVE, "moderate": KdfCost.MODERATE, "min": KdfCost.MIN}


class OutputFolderError(Exception):
    """The --out folder is unusable: it is a file, or cannot be created."""


def run_keygen(args: argparse.Namespace) -> int:
    out: Path = args.out
    name: str = getattr(args, "name", DEFAULT_KEY_NAME)
    cost = _COSTS[getattr(args, "kdf_cost", "sensitive")]
    try:
        _check_output_folder(out, name)
        passphrase = read_passphrase(confirm=True)
        _make_private_folder(out)
        print("Deriving the key from the passphrase (a few seconds)...", file=sys.stderr)
        public_path, secret_path = write_key_pair(out, passphrase, cost, name)
        public_line = encode_public_key(load_public_key(public_path))
    except (OutputFolderError, PassphraseError, KeyFileError) as error:
        print(f"sealdrop keygen: {error}", file=sys.stderr)
        return 1
    public_name, secret_name = public_path.name, secret_path.name
    print(
        f"Wrote the reviewer key pair {name!r}:\n"
        f"  public key: {public_path}\n"
        f"  secret key: {secret_path} (protected by the passphrase)\n"
        f"\n"
        f"Public key:\n"
        f"{public_line}\n"
        f"\n"
        f"Keep {secret_name} on this offline machine, with a backup; without it and\n"
        f"the passphrase no submission sealed to it can ever be opened.\n"
        f"Carry only {public_name} to the operator of the server (with a team, it goes\n"
        f"into the folder of reviewer keys under this name). Never copy {secret_name}\n"
        f"to the server."
    )
    return 0


def _check_output_folder(out: Path, name: str) -> None:
    """Refuse early, before the passphrase is typed, whatever would refuse later."""
    key_file_paths(out, name)  # the name itself
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise OutputFolderError(f"{out} exists and is not a folder; give --out a folder path")
    refuse_existing_key_files(out, name)


def _make_private_folder(out: Path) -> None:
    if out.is_dir():
        return
    try:
        out.mkdir(mode=0o700, parents=True)
        # mkdir's mode passes through the umask; make it exact.
        out.chmod(0o700)
    except OSError as error:
        raise OutputFolderError(
            f"cannot create the folder {out}: {error.strerror}; check the path and permissions"
        ) from None
