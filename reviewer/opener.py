"""`sealdrop open SPOOL --key FILE --out DIR`: decrypt spool files into folders, offline.

The job is shared out: spool_folder.py decides what in SPOOL to open (every
``.sealed`` file, whatever its name) and names what it does not; workspace.py
holds DIR (its lock, its ``.incoming-*`` folders) and ledger.py its
record of opened files, so a second run (or one after a crash) skips them;
open_file.py opens one file (an upload cut off opens as PARTIAL: not damage,
exit status 0); summary.py tells what happened. ``--remove`` deletes a spool
file only after its record is durable.

SPOOL is left as it was found unless ``--remove`` is given: a file this key cannot
open (sealed to other reviewer keys) or that is damaged is named, with the cause
and what to do, and stays where it is for the next reviewer or a fresh copy.

Exit status: 0 all opened, 1 some file could not be opened (refused,
unreadable, or not opened and named in the summary), 2 nothing could be done or
the run had to stop (key, output folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..keys import KeyFileError, encode_public_key, load_secret_key
from .open_file import Opener
from .passphrase import PassphraseError, read_passphrase
from .progress import Progress
from .spool_folder import read_spool_folder
from .summary import Report, format_summary
from .workspace import OutputUnusable, Workspace


def run_open(args: argparse.Namespace) -> int:
    spool: Path = args.spool
    out: Path = args.out
    try:
        contents = read_spool_folder(spool, out)
    except OSError as err:
        _say(
            f"cannot read the spool folder {spool} ({err.strerror}); give the folder "
            "holding the .sealed files copied from the server"
        )
        return 2
    try:
        key = load_secret_key(args.key, read_passphrase(confirm=False))
    except (KeyFileError, PassphraseError) as err:
        _say(f"{err}\nNothing was opened or written.")
        return 2
    # With a team's keys and a backup key on one machine, say which one this run uses.
    _say(f"opening with {args.key.name}: {encode_public_key(key.public_key)}")
    report = Report(
        parts=len(contents.parts), litter=contents.litter, not_opened=contents.not_opened
    )
    workspace = Workspace(out)
    try:
        workspace.prepare()
    except OutputUnusable as err:
        _say(f"{err}\nNothing was opened or written.")
        return 2
    report.stale_incoming = workspace.removed_stale
    try:
        with workspace:
            progress = Progress(
                sys.stderr,
                sum(1 for n in contents.to_open if n not in workspace.ledger.names),
                sys.stderr.isatty(),
            )
            opener = Opener(spool, key, workspace, progress, report, remove=args.remove)
            for name in contents.to_open:
                opener.handle(name)
    except OutputUnusable as err:
        _say(str(err))
        print(format_summary(report, out))
        return 2
    if getattr(args, "strip_metadata", False):
        from .metadata import strip_opened

        strip_opened(out, report.opened, print)
    print(format_summary(report, out))
    return report.status


def _say(message: str) -> None:
    print(f"sealdrop open: {message}", file=sys.stderr)
