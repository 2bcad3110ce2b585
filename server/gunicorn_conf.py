"""gunicorn's configuration for sealdrop, chosen for sources on slow Tor circuits.

Event-loop workers (server.worker: gunicorn's gevent worker): an upload over Tor holds
its connection for minutes or hours and an attacker can open thousands of connections
that trickle their requests, so a waiting connection must cost kilobytes, not a
thread. One worker holds up to `max_connections`; the head deadline and the body's rate floor
close the connections that are only there to hold a place; the worker's ``timeout``
is only a heartbeat and never cuts a long upload. Each worker limits glibc's malloc
arenas and has glibc overwrite every block it frees (`prepare_worker`; serve also
starts Python so, server.memory), and is replaced after `recycle_after_requests`
requests (with jitter) once the uploads it holds have finished, a replacement serving
meanwhile, so that what a source's requests left in its memory does not stay there
(docs/RELIABILITY.md, "Plaintext in memory"). No access log; the error log withholds
request data (`logs.RedactingLogger`).

Why these numbers, with the measurements behind them: docs/PERFORMANCE.md, "The web
server's configuration" and "Slow clients", and docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import queue
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..connections import WORKERS, per_worker
from ..settings import Settings
from ..storage.counters import FailureCounters
from ..units import MiB
from .logs import RedactingLogger, counting_logger
from .memory import FREED_BYTE
from .patches import hide_error_details
from .recycling import Recycling
from .worker import arbiter_grace
from .worker import worker_class as event_loop_worker

# glibc mallopt parameters (malloc.h) and the values `prepare_worker` sets.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_M_PERTURB = -6
_M_TRIM_THRESHOLD = -1
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 4 * MiB
# Free memory at the top of the heap kept rather than given back to the kernel: at
# glibc's 128 KiB, each freed 1 MiB read buffer went back and came again as fresh
# pages, faulted in one by one (1.16 million faults per GiB uploaded on the event
# loop's thread, +2.7 CPU s per GiB: bench/upload_bench.py, docs/PERFORMANCE.md).
# What is kept was overwritten when freed (perturb).
TRIM_THRESHOLD = 4 * MiB
HEARTBEAT_TIMEOUT = 60
# Seconds a kept-alive connection may wait for its next request's first byte
# (server.patches.limit_request_heads; non-zero: connections are kept alive).
KEEPALIVE = 5
SHM = Path("/dev/shm")
# The signals that stop a worker (gunicorn: TERM graceful, INT and QUIT quick).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def gunicorn_options(
    settings: Settings,
    *,
    workers: int = WORKERS,
    when_ready: Callable[[Any], None] | None = None,
    on_exit: Callable[[Any], None] | None = None,
    counters: FailureCounters | None = None,
) -> dict[str, Any]:
    """The gunicorn settings for this service (names as in gunicorn's documentation);
    `counters` counts what the error log withholds (workers' deaths)."""

    recycling = Recycling(settings.recycle_after_requests)

    def post_fork(server: Any, worker: Any) -> None:
        prepare_worker(server, worker)
        recycling.post_fork(server, worker)

    options: dict[str, Any] = {
        "bind": [settings.listen.bind],
        "worker_class": event_loop_worker(
            settings.codename_max_concurrent, settings.stop_grace_seconds
        ),
        "workers": workers,
        # Connections one worker holds at once; a full worker stops accepting and the
        # others take the new ones.
        "worker_connections": per_worker(settings.max_connections, workers),
        "timeout": HEARTBEAT_TIMEOUT,
        # Workers are recycled by server.recycling, which counts requests as they end.
        "max_requests": 0,
        # The arbiter's bound on a stop of the whole service, after which it kills the
        # workers; theirs (server.worker, stop_grace_seconds) ends within it, uploads
        # in progress kept as cut.
        "graceful_timeout": arbiter_grace(settings.stop_grace_seconds),
        "keepalive": KEEPALIVE,
        # The request line is a method and one of our few short paths.
        "limit_request_line": 2048,
        "limit_request_fields": 50,
        "limit_request_field_size": 8190,
        # No access log anywhere: it would record when someone visited.
        "accesslog": None,
        "disable_redirect_access_to_syslog": True,
        "errorlog": "-",
        "loglevel": "warning",
        "logger_class": counting_logger(counters) if counters else RedactingLogger,
        "capture_output": False,
        # Tor connects from loopback; no proxy may rewrite the client's address or scheme.
        "forwarded_allow_ips": "",
        "proxy_allow_ips": "",
        "proxy_protocol": "off",
        "secure_scheme_headers": {},
        # No control socket: nothing but the listening address is opened.
        "control_socket_disable": True,
        # The master checks the keys and folders (startup.prepare) but holds no app:
        # each worker builds its own, so that Flask and the catalogs are not counted
        # twice (startup.py).
        "preload_app": False,
        "http_protocols": "h1",
        "proc_name": "sealdrop",
        "post_fork": post_fork,
        "post_request": recycling.post_request,
        "child_exit": recycling.child_exit,
    }
    if SHM.is_dir() and os.access(SHM, os.W_OK):
        # The heartbeat file holds no data; on tmpfs its updates never touch a disk.
        options["worker_tmp_dir"] = str(SHM)
    if when_ready is not None:
        options["when_ready"] = when_ready
    if on_exit is not None:
        options["on_exit"] = on_exit
    return options


def prepare_worker(server: Any, worker: Any) -> None:
    """gunicorn's ``post_fork`` hook: runs in each new worker before its loop starts
    (our pages for gunicorn's own refusals come once its app is built: server.serve)."""
    keep_stop_signals(server, worker)
    limit_malloc_arenas()
    hide_error_details()


def keep_stop_signals(server: Any, worker: Any) -> None:
    """Have a stop signal that reaches this worker before gunicorn installs the worker's
    own handlers (after ``post_fork``) stop it rather than vanish.

    Until then the worker runs the handler it inherited from the arbiter, which only
    queues the signal in this process's copy of the arbiter's queue, where nothing ever
    reads it. A stop that comes while the arbiter is starting (a SIGTERM or Ctrl-C
    during ``when_ready``: tor, the first sweep) is handled just after it forks the
    workers, so its SIGTERM reached a worker still booting, was lost, and the service
    took the arbiter's whole graceful_timeout to stop. Here such a signal, one queued
    before the fork or one arriving until gunicorn's handlers take over, ends the
    worker's loop before it starts (it holds no connection yet)."""

    def stop(signum: int, frame: Any) -> None:
        worker.alive = False

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    # Read after our handler is in place: nothing can land in the copied queue now.
    if any(sig in STOP_SIGNALS for sig in _queued_signals(server)):
        worker.alive = False


def _queued_signals(server: Any) -> list[int]:
    """Empty this process's copy of the arbiter's signal queue (nothing else here reads
    it) and return what it held: a queue in recent gunicorn, a list in older ones."""
    pending = getattr(server, "SIG_QUEUE", None)
    if isinstance(pending, list):
        taken = list(pending)
        pending.clear()
        return taken
    taken = []
    while pending is not None:
        try:
            taken.append(pending.get_nowait())
        except queue.Empty:
            break
    return taken


def limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas, fix its mmap and trim thresholds and have it overwrite every
    block it frees (a freed buffer or string no longer holds a source's bytes) in this
    process; does nothing under a C library without ``mallopt`` (musl).

    With glibc's defaults every thread that handled an upload kept its own arena holding
    freed read buffers, and RSS crept with the number of submissions. The threshold is
    fixed so glibc's dynamic one cannot drift, and high enough that the 1 MiB read buffers
    stay in the heap (mmapping each one cost CPU per byte). Measurements:
    docs/PERFORMANCE.md, "The web server's configuration".
    """
    import ctypes

    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return
    mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    mallopt(_M_PERTURB, FREED_BYTE)
