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

Whether they are in effect is read from the process itself, never from a marker that
anything could set: Python's object allocator (`PyMem_GetAllocator`) and what glibc
does with a block it frees (tried). The restart marks itself with this process's id
(exec keeps it), only so that settings that did not take effect stop `serve` instead
of restarting it for ever. Running without them needs ``SEALDROP_MEMORY_HYGIENE=off``
(benchmarks), and is announced at every start.

What is still live is not touched: the worker recycling (gunicorn_conf,
recycle_after_requests) is what bounds that. docs/RELIABILITY.md, "Plaintext in
memory", states what this does and does not guarantee.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

FREED_BYTE = 0x55
_TUNABLES = f"glibc.malloc.perturb={FREED_BYTE}:glibc.malloc.tcache_count=0"
# Set to the restarting process's id; "off" runs without the settings, loudly.
MARKER = "SEALDROP_MEMORY_HYGIENE"
OPT_OUT = "off"
# 104 bytes: a chunk of 112, a size none of ctypes' objects in the probe has.
_PROBE_BYTES, _PROBE_BLOCKS = 104, 16
_PYMEM_DOMAIN_RAW, _PYMEM_DOMAIN_OBJ = 0, 2
_ALLOCATOR_FIELDS = ("ctx", "malloc", "calloc", "realloc", "free")


class _Allocator(ctypes.Structure):
    # PyMemAllocatorEx (Python's C API, "Customize Memory Allocators").
    _fields_ = [(name, ctypes.c_void_p) for name in _ALLOCATOR_FIELDS]


def hygienic_env(env: Mapping[str, str], pid: int) -> dict[str, str]:
    """`env` with the allocator settings added (other tunables kept), this interpreter's
    import path, so that the new one finds sealdrop however this one did, and the
    restart's marker for process `pid`."""
    changed = dict(env)
    changed["PYTHONPATH"] = os.pathsep.join(entry for entry in sys.path if entry)
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    changed["GLIBC_TUNABLES"] = ":".join([*tunables, _TUNABLES])
    changed["PYTHONMALLOC"] = "malloc"
    changed[MARKER] = str(pid)
    return changed


def missing_settings() -> list[str]:
    """What of the allocator settings is not in effect in this process, in words."""
    missing = []
    if not _objects_from_malloc():
        missing.append("Python's objects come from its own allocator, not malloc")
    if not _freed_blocks_overwritten():
        missing.append(f"the C library does not overwrite freed blocks ({_TUNABLES})")
    return missing


def _objects_from_malloc() -> bool:
    """Whether Python's object allocator is the raw one (malloc): with pymalloc, or any
    debug hooks, the object domain has functions or a context of its own."""
    get = ctypes.pythonapi.PyMem_GetAllocator
    get.argtypes = [ctypes.c_int, ctypes.POINTER(_Allocator)]
    get.restype = None
    raw, objects = _Allocator(), _Allocator()
    get(_PYMEM_DOMAIN_RAW, ctypes.byref(raw))
    get(_PYMEM_DOMAIN_OBJ, ctypes.byref(objects))
    return all(getattr(raw, name) == getattr(objects, name) for name in _ALLOCATOR_FIELDS)


def _freed_blocks_overwritten() -> bool:
    """Whether glibc fills every small block it frees with FREED_BYTE: tried, not inferred
    from GLIBC_TUNABLES (ld.so may ignore or rewrite it). Perturb alone is not enough:
    the per-thread cache keeps a block as it was, so this needs both tunables.

    Each block is read right after it is freed (a small one stays in the heap), with
    nothing allocated in between but ctypes' own small objects, which are of other
    sizes than _PROBE_BYTES. Taking the blocks first empties the cache's bin for
    their size, so if there is a cache the first one freed goes into it.
    """
    libc = ctypes.CDLL(None)
    malloc, free = getattr(libc, "malloc", None), getattr(libc, "free", None)
    if malloc is None or free is None:
        return False
    malloc.argtypes, malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    free.argtypes, free.restype = [ctypes.c_void_p], None
    seen = ctypes.create_string_buffer(_PROBE_BYTES)
    # A free block's first 16 bytes hold the allocator's links and its last 8 belong to
    # the next block's header: glibc perturbs only what lies between.
    checked = slice(16, _PROBE_BYTES - 8)
    overwritten = bytes([FREED_BYTE]) * (_PROBE_BYTES - 24)
    blocks = [malloc(_PROBE_BYTES) for _ in range(_PROBE_BLOCKS)]
    if not all(blocks):
        return False
    for block in blocks:
        ctypes.memset(block, FREED_BYTE ^ 0xFF, _PROBE_BYTES)
    every = True
    for block in blocks:
        free(block)
        ctypes.memmove(seen, block, _PROBE_BYTES)
        every = every and seen.raw[checked] == overwritten
    return every


def with_memory_hygiene() -> None:
    """Start this `sealdrop serve` again under `hygienic_env`, unless the settings are
    already in effect; SystemExit if they are not even after that restart.

    The process keeps its id (exec), so a supervisor or a test that started it sees
    no difference.
    """
    if os.environ.get(MARKER) == OPT_OUT:
        print(
            f"sealdrop serve: WARNING: {MARKER}={OPT_OUT}: freed memory keeps what it held "
            "(a source's words, files, codename) until it is reused; never run a real "
            "service so",
            file=sys.stderr,
            flush=True,
        )
        return
    missing = missing_settings()
    if not missing:
        return
    if os.environ.get(MARKER) == str(os.getpid()):
        raise SystemExit(
            "sealdrop serve: the allocator settings did not take effect after the restart "
            f"under them ({'; '.join(missing)}); a source's freed data would stay in "
            f"memory. Run it with the system's Python on glibc, or set {MARKER}={OPT_OUT} "
            "to run without them knowingly"
        )
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "sealdrop", *sys.argv[1:]]
    os.execve(sys.executable, argv, hygienic_env(os.environ, os.getpid()))
