"""How spool files are named: the one rule the server writes by and the reviewer reads by.

The server names a submission ``<32 lowercase hex digits>.sealed``: 128 random bits,
so a name reveals nothing and guesses nothing. While it is written it carries
``.part`` after that, and only the rename that completes it drops the ``.part``.
A reader goes by the name's end alone (`is_sealed`): every file ending in
``.sealed``, in any case, is one to open, whatever a copy tool made of the rest
(``... (1).sealed``, ``Copy of ....SEALED``); its content then decides whether
it opens. Nothing else is opened, even what starts like a spool file
(``x.sealed~``, a backup; ``x.sealed.part``, unfinished): a reviewer copies
``*.sealed`` and an operator deletes ``*.sealed``, so a rule by content would
count files that neither ever sees. `sealdrop spool` and `sealdrop open` both
sort a folder by this rule (reviewer/spool_folder.py).

The server also keeps ``.pool/`` in the spool: empty files made ahead of time, which
submissions take and rename (storage/spool.py). It never holds a submission.
"""

from __future__ import annotations

import re
import secrets

SEALED_SUFFIX = ".sealed"
PART_SUFFIX = ".part"
POOL_DIR = ".pool"
# Exactly what `sealed_name` makes; nothing else in a spool folder was named by sealdrop.
SERVER_NAME = re.compile(r"[0-9a-f]{32}" + re.escape(SEALED_SUFFIX))


def random_name() -> str:
    """A fresh stem carrying 128 random bits."""
    return secrets.token_hex(16)


def sealed_name(stem: str) -> str:
    """The finished submission's name for `stem`."""
    return stem + SEALED_SUFFIX


def part_name(sealed: str) -> str:
    """The name a submission has while it is written, from its finished name."""
    return sealed + PART_SUFFIX


def is_part(name: str) -> bool:
    """An upload in progress, or one a crash left unfinished, as the server names it."""
    return name.endswith(PART_SUFFIX)


def is_sealed(name: str) -> bool:
    """A spool file a reviewer opens: its name ends in ``.sealed``, in any case (a
    FAT stick may show ``X.SEALED``)."""
    return name.lower().endswith(SEALED_SUFFIX)


def is_copied_part(name: str) -> bool:
    """`is_part` for a copied spool, in any case: an upload unfinished when it was copied."""
    return name.lower().endswith(PART_SUFFIX)
