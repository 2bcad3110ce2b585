"""Work that must not run on a worker's event loop: Argon2id, sealing, fsync.

Each gunicorn worker serves all its connections from one event loop (gevent, see
server/worker.py), so that a client trickling its request or its body costs a few
kilobytes rather than a thread. A step that holds the CPU or waits on the disk would
stall every other connection of that worker for as long as it lasts: a codename
derivation (Argon2id, a quarter of a second on purpose), sealing a megabyte of an
upload (about 2 ms), an fsync (milliseconds to seconds on a busy disk). Those steps
go through `off_loop`, which runs them in the loop's pool of OS threads and lets the
loop serve the others meanwhile; PyNaCl, hashlib and the kernel release the GIL
while they work. Outside a worker (Flask's test client, the reviewer's commands), and
in the pool's own threads, `off_loop` simply calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class _Loop:
    pool: Any  # gevent.threadpool.ThreadPool
    thread: int  # the OS thread running the loop
    thread_ident: Callable[[], int]  # the OS thread's ident (not gevent's patched one)


_loop: _Loop | None = None


def run_off_loop_in(pool: Any, loop_thread: int, thread_ident: Callable[[], int]) -> None:
    """Called once by a worker when its event loop is set up (server.worker): from now on
    `off_loop` called on `loop_thread` hands its work to `pool`."""
    global _loop
    _loop = _Loop(pool, loop_thread, thread_ident)


def off_loop(work: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """`work(*args, **kwargs)` in one of the pool's threads when called on a worker's
    event loop (the calling greenlet waits, the others run); otherwise a plain call.
    What `work` raises is raised here."""
    loop = _loop
    if loop is None or loop.thread_ident() != loop.thread:
        return work(*args, **kwargs)
    done = loop.pool.spawn(work, *args, **kwargs)
    try:
        result: _R = done.get()
    except BaseException:
        # The waiting greenlet was interrupted (a worker killing its connections at the
        # end of a stop): the thread still runs `work`. Let it end before the caller's
        # cleanup closes what it uses (a file descriptor another file could reuse).
        done.wait()
        raise
    return result
