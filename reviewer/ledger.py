"""``DIR/.opened``: the record of spool files already opened into DIR.

One line per opened spool file: its name, percent-encoded so that any name a
file system allows (spaces, newlines, non-ASCII, bytes that are not UTF-8) fits
on one line and reads back exactly, then a tab and the file's identity (a
SHA-256 of its sealed header and size, open_file.py). The name makes a second
run skip a file without reading it; the identity recognises a renamed copy
(``x (1).sealed``) of a file already opened, so the same submission is never
unpacked twice. Lines written before identities were recorded hold only a name
(sealdrop's own names are unchanged by the encoding).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from .. import durable
from .unpack import FILE_MODE

OPENED_RECORD = ".opened"


class Ledger:
    """The names and digests recorded in one output folder's ``.opened``."""

    def __init__(self, out: Path) -> None:
        self.path = out / OPENED_RECORD
        self.names: set[str] = set()
        # File identity -> the name the file was first opened under.
        self.digests: dict[str, str] = {}

    def read(self) -> None:
        """Load the record; a missing file is an empty record. OSError if unreadable."""
        try:
            with open(self.path, "rb") as record:
                lines = record.read().split(b"\n")
        except FileNotFoundError:
            return
        for line in lines:
            name_part, _, digest = line.strip().partition(b"\t")
            if not name_part:
                continue
            name = os.fsdecode(urllib.parse.unquote_to_bytes(name_part))
            self.names.add(name)
            if digest:
                self.digests.setdefault(digest.decode("ascii", "replace"), name)

    def record(self, name: str, digest: str) -> None:
        """Append `name` and `digest` durably (fsync'd) before the caller goes on."""
        line = urllib.parse.quote_from_bytes(os.fsencode(name), safe="") + "\t" + digest + "\n"
        fd = os.open(
            self.path,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            FILE_MODE,
        )
        try:
            durable.write_all(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        self.names.add(name)
        self.digests.setdefault(digest, name)
