"""How spool files are named: the one rule the server writes by and the reviewer reads by.

The server names a submission ``<32 lowercase hex digits>.sealed``: 128 random bits,
so a name reveals nothing and guesses nothing. While it is written it carries
``.part`` after that, and only the rename that completes it drops the ``.part``.
The format gives a name no other meaning: a reader knows a spool file by its
content (magic, version, authenticated header), so a copy a tool renamed
(``... (1).sealed``) is still a spool file.

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
    """An upload in progress, or one a crash left unfinished."""
    return name.endswith(PART_SUFFIX)
