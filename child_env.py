"""The environment of every program sealdrop starts: a fixed one, never its own.

`sealdrop serve` runs under allocator settings meant for its own Python
(server/memory.py: PYTHONMALLOC, GLIBC_TUNABLES with no per-thread cache), which
would slow tor's malloc for nothing, and its environment holds the service's
``SEALDROP_*`` settings and import path, none of them tor's business; on the
reviewer's machine it may hold ``SEALDROP_PASSPHRASE``. A program started with
this environment sees none of it: tor, ``tor --version`` for `sealdrop check`,
bubblewrap (which clears it again for the parser inside). The reviewer's editor
(reviewer/reply.py) is the one exception: it is the reviewer's own program, run in
the reviewer's terminal, and needs their TERM, HOME and locale.
"""

from __future__ import annotations

import shutil

# Where Debian's tor and bubblewrap live; programs are started by their full path
# anyway (`find_program`), so this matters only to what they start in turn.
CHILD_PATH = "/usr/bin:/bin"


def child_env() -> dict[str, str]:
    """A new copy of the environment a started program gets."""
    return {"PATH": CHILD_PATH, "LANG": "C.UTF-8"}


def find_program(name: str) -> str:
    """`name` as a full path, looked up on this process's PATH (the child's is shorter);
    `name` itself if it is not found, so that starting it fails as it would have."""
    return shutil.which(name) or name
