"""Small durable file operations shared by the key, codename, onion and reviewer code.

Each writes through raw file descriptors so nothing is buffered where a failure
could hide it, and each fsyncs before it reports success: a crash right after a
key or salt is made must not lose it, and a reviewer must not be told a
submission was written out when its bytes are still only in the page cache.
The spool has its own writer in storage/; these are for small files.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of `data`; os.write may write less than it was given."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_directory(directory: Path) -> None:
    """Make the names created, renamed or removed in `directory` survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_new_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create `path` holding `data` with exactly `mode`, durably; never replace anything.

    The bytes go to a hidden temporary name first and are hard-linked into place,
    so a reader never sees a half-written file and two processes racing to create
    the same file cannot both win: the loser gets FileExistsError. Symlinks are
    never followed. Any other failure raises OSError and leaves nothing behind.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.part")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask can only have removed bits; make the mode exact
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temporary, path, follow_symlinks=False)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_directory(path.parent)


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with a file holding `data`, atomically and durably.

    A reader sees the old file or the new one, never a mix; after a crash, one of
    the two. The bytes go to a hidden temporary name first (never a symlink).
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.part")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_directory(path.parent)
