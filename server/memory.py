"""Freed memory that no longer holds what it held: how `sealdrop serve` starts Python.

A source's message, files and codename pass through Python objects that sealdrop
cannot zero (str and bytes are immutable; Werkzeug, gunicorn and the decoder make
their own). When they are freed, their bytes stay in the process's heap until the
memory is reused, which can be never. Two allocator settings make freeing them
overwrite them, and must be in place before the interpreter starts, so `serve`
starts itself again with them once (`with_memory_hygiene`):

- ``PYTHONMALLOC=malloc``: every object, small ones too (a codename), comes from
  glibc's malloc instead of Python's own pools, which never clear what they free;
- ``GLIBC_TUNABLES`` ``glibc.malloc.perturb`` (glibc fills every block it frees with
  that byte) and ``glibc.malloc.tcache_count=0`` (the per-thread cache would keep
  recently freed small blocks as they were: glibc perturbs a block only on its other
  paths).

What is still live is not touched: the worker recycling (gunicorn_conf,
recycle_after_requests) is what bounds that. docs/RELIABILITY.md, "Plaintext in
memory", states what this does and does not guarantee.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

FREED_BYTE = 0x55
_TUNABLES = f"glibc.malloc.perturb={FREED_BYTE}:glibc.malloc.tcache_count=0"
_DONE = "SEALDROP_MEMORY_HYGIENE"


def hygienic_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with the allocator settings added (other tunables kept), and this
    interpreter's import path, so that the new one finds sealdrop however this one did."""
    changed = dict(env)
    changed["PYTHONPATH"] = os.pathsep.join(entry for entry in sys.path if entry)
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    changed["GLIBC_TUNABLES"] = ":".join([*tunables, _TUNABLES])
    changed["PYTHONMALLOC"] = "malloc"
    changed[_DONE] = "1"
    return changed


def with_memory_hygiene() -> None:
    """Start this `sealdrop serve` again under `hygienic_env`, unless it already runs so.

    The process keeps its id (exec), so a supervisor or a test that started it sees
    no difference.
    """
    if os.environ.get(_DONE) == "1":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "sealdrop", *sys.argv[1:]]
    os.execve(sys.executable, argv, hygienic_env(os.environ))
