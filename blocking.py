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
from typing import Any, Generic, ParamSpec, TypeVar

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
    return start_off_loop(work, *args, **kwargs).wait()


class Pending(Generic[_R]):
    """Work started by `start_off_loop`; `wait` gives its result or raises its error."""

    def __init__(self, running: Any = None, result: Any = None) -> None:
        self._running = running
        self._result = result

    def wait(self) -> _R:
        if self._running is not None:
            running, self._running = self._running, None
            try:
                box = running.get()
            except BaseException:
                # The waiting greenlet was interrupted (a worker killing its connections
                # at the end of a stop): the thread is done with `work` only once
                # `running` is ready. Wait for that before the caller's cleanup closes
                # what it uses (a file descriptor another file could reuse).
                running.wait()
                raise
            succeeded, outcome = box
            box.clear()
            if not succeeded:
                try:
                    raise outcome
                finally:
                    # The error's traceback holds this frame, whose locals hold the
                    # error: a cycle (see `_outcome`).
                    del outcome
            self._result = outcome
        result: _R = self._result
        return result


def _outcome(work: Callable[..., Any], args: Any, kwargs: Any) -> list[Any]:
    """Run `work` in a pool thread and hand back its result or its exception. Nothing
    may escape: gevent's pool would print the traceback of an exception raised in a
    thread to stderr, and a traceback can quote what a source sent.

    Handed back as [succeeded, result or error] in a list that `Pending.wait` empties:
    gevent's result object keeps what it is given and outlives the wait in a reference
    cycle of its own, and with it an error, its traceback's frames and every buffer
    they held stayed allocated until the garbage collector's next full pass."""
    try:
        return [True, work(*args, **kwargs)]
    except BaseException as error:
        return [False, error]


def start_off_loop(work: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Pending[_R]:
    """Start `work(*args, **kwargs)` in one of the pool's threads and return at once,
    when called on a worker's event loop: its result or error comes from
    `Pending.wait`, which the caller must call. Otherwise run it now: what it raises
    is raised here."""
    loop = _loop
    if loop is not None and loop.thread_ident() == loop.thread:
        return Pending(running=loop.pool.spawn(_outcome, work, args, kwargs))
    return Pending(result=work(*args, **kwargs))
