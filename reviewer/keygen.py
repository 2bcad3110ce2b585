"""`sealdrop keygen --out DIR`: make the reviewer key pair on the offline machine."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..keys import (
    PUBLIC_KEY_FILENAME,
    SECRET_KEY_FILENAME,
    KdfCost,
    KeyFileError,
    encode_public_key,
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
    cost = _COSTS[getattr(args, "kdf_cost", "sensitive")]
    try:
        _check_output_folder(out)
        passphrase = read_passphrase(confirm=True)
        _make_private_folder(out)
        print("Deriving the key from the passphrase (a few seconds)...", file=sys.stderr)
        public_path, secret_path = write_key_pair(out, passphrase, cost)
        public_line = encode_public_key(load_public_key(public_path))
    except (OutputFolderError, PassphraseError, KeyFileError) as error:
        print(f"sealdrop keygen: {error}", file=sys.stderr)
        return 1
    print(
        f"Wrote the reviewer key pair:\n"
        f"  public key: {public_path}\n"
        f"  secret key: {secret_path} (protected by the passphrase)\n"
        f"\n"
        f"Public key:\n"
        f"{public_line}\n"
        f"\n"
        f"Keep {SECRET_KEY_FILENAME} on this offline machine, with a backup; without it and\n"
        f"the passphrase no submission can ever be opened. Carry only {PUBLIC_KEY_FILENAME}\n"
        f"to the operator of the server. Never copy {SECRET_KEY_FILENAME} to the server."
    )
    return 0


def _check_output_folder(out: Path) -> None:
    """Refuse early, before the passphrase is typed, whatever would refuse later."""
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise OutputFolderError(f"{out} exists and is not a folder; give --out a folder path")
    refuse_existing_key_files(out)


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
