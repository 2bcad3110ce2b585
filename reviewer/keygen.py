"""`sealdrop keygen --out DIR [--name NAME]`: make the reviewer's keys on the offline machine.

Two pairs under one passphrase. The reviewer key pair, NAME.pub and NAME.key
(``reviewer`` by default), which submissions are sealed to; the name is the key's
label: a team's keys are told apart by it in `sealdrop check` on the server, where
the public keys sit side by side in one folder (recipients.py). And the
reply-signing pair, reply-signing.pub and reply-signing.key (NAME-reply-signing.*
for another name; signing.py), which
signs every reply so that the server shows only the reviewer's. With
`--reply-signing-only` just the second is made, for a reviewer whose key pair
predates signed replies.
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
from ..signing import (
    encode_signing_public_key,
    load_signing_public_keys,
    refuse_existing_signing_files,
    write_signing_key_pair,
)
from .passphrase import PassphraseError, read_passphrase

_COSTS = {"sensitive": KdfCost.SENSITIVE, "moderate": KdfCost.MODERATE, "min": KdfCost.MIN}


class OutputFolderError(Exception):
    """The --out folder is unusable: it is a file, or cannot be created."""


def run_keygen(args: argparse.Namespace) -> int:
    out: Path = args.out
    name: str = getattr(args, "name", DEFAULT_KEY_NAME)
    cost = _COSTS[getattr(args, "kdf_cost", "sensitive")]
    signing_only: bool = getattr(args, "reply_signing_only", False)
    try:
        _check_output_folder(out, name, signing_only)
        passphrase = read_passphrase(confirm=True)
        _make_private_folder(out)
        print("Deriving the keys from the passphrase (a few seconds)...", file=sys.stderr)
        if not signing_only:
            public_path, secret_path = write_key_pair(out, passphrase, cost, name)
            public_line = encode_public_key(load_public_key(public_path))
        signing_public, signing_secret = write_signing_key_pair(out, passphrase, cost, name)
        signing_line = encode_signing_public_key(load_signing_public_keys(signing_public)[0])
    except (OutputFolderError, PassphraseError, KeyFileError) as error:
        print(f"sealdrop keygen: {error}", file=sys.stderr)
        return 1
    if not signing_only:
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
            f"to the server.\n"
        )
    print(
        f"Wrote the reply-signing key pair:\n"
        f"  public key: {signing_public}\n"
        f"  secret key: {signing_secret} (protected by the same passphrase)\n"
        f"\n"
        f"Reply-signing public key:\n"
        f"{signing_line}\n"
        f"\n"
        f"Keep {signing_secret.name} on this offline machine too: `sealdrop reply` signs\n"
        f"with it, and the server shows only signed replies. Carry only\n"
        f"{signing_public.name} to the operator (setting reply_signing_key_file)."
    )
    return 0


def _check_output_folder(out: Path, name: str, signing_only: bool) -> None:
    """Refuse early, before the passphrase is typed, whatever would refuse later."""
    key_file_paths(out, name)  # the name itself
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise OutputFolderError(f"{out} exists and is not a folder; give --out a folder path")
    if not signing_only:
        refuse_existing_key_files(out, name)
    refuse_existing_signing_files(out, name)


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
