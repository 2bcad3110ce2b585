"""gunicorn's configuration for sealdrop, chosen for sources on slow Tor circuits.

Worker model: ``gthread``. A source over Tor uploads at tens to hundreds of KB/s,
so one large upload holds its handler for minutes or hours. A ``sync`` worker
serves one request at a time: 20 slow uploads need 20 processes, and the 21st
visitor (even one just loading the form) waits until one finishes. ``gthread``
gives each connection a thread: 2 workers x 32 threads take 64 uploads at once
while the form still loads at once. Measured on the 2-core development machine
(2026-11), 20 uploads trickling at 100 KB/s for 8 s each, plus one GET of the form
1 s in: sync (2 workers) answered the GET after 7.8 s, once a worker was free;
gthread (2 x 32) answered it in 0.02 s, and all 20 uploads finished together.

Timeout: with ``gthread``, ``timeout`` is only the worker's heartbeat. The worker's
main loop tells the arbiter it is alive every second whatever its threads are
doing, so a 500 MB upload at 100 KB/s (about 83 minutes) is never cut by it:
measured with timeout=5, 12-second uploads completed under gthread, while under
sync the arbiter killed both workers at 5 s (WORKER TIMEOUT, uploads lost). With
sync the same 500 MB upload would need a timeout over 5000 s, which would also let a
hung worker hang that long. gthread has no per-request time limit: a client that
stalls mid-body holds its thread until the connection closes (tor closes it when
the circuit dies).

Threads: 2 workers x 128. gthread gives a connection a thread from its first byte
until its request is read, with no header or body timeout, so a client trickling
bytes holds a thread as long as it likes. Measured (tests/test_slow_clients.py,
docs/RELIABILITY.md): with 2 x 32 threads, 200 connections trickling one byte every
0.5 s held every thread and a normal submission got no answer in 15 s; with 2 x 128
it was answered in milliseconds, once `worker_connections` was also cut to the threads
plus a few kept-alive slots (with twice the threads, one worker took 129 of the 200
and the visitor who landed on it waited while the other had threads free). A thread
held in a request's headers costs about 50 KB of RSS; one held in a body also holds the
upload's read buffer, 64 KiB until the body comes fast (web/upload.py): 200 trickling
connections, half of each, +19 MiB.
Threads only raise the bar: Tor's stream limits and proof-of-work are the real bound.

Memory: each worker's glibc malloc is limited to 2 arenas with a fixed mmap threshold
of 4 MiB (`prepare_worker`). With glibc's defaults, every thread that handled an
upload kept its own arena holding freed 1 MiB read buffers: RSS rose by ~90 MiB over
the first few thousand submissions and kept creeping (tests/test_soak.py: 93 -> 215
MiB over 8,000); with 2 arenas the same run stays flat (121 -> 131 MiB over 2,000).
The threshold is fixed so glibc's dynamic one cannot drift, but at 4 MiB rather than
128 KiB: at 128 KiB every 1 MiB buffer was mmapped and unmapped again, which doubled
the CPU per uploaded byte (bench/upload_bench.py: 12-13 CPU s per GiB against 5-6).

Error pages: gunicorn answers a request it cannot parse itself, and its page quotes
the offending method, version or header name back (HTML-escaped). `prepare_worker`
makes those pages name the status only, like the app's own.

Logging: no access log at all, and the error log goes through `RedactingLogger`,
which withholds request data (request lines, URIs, client addresses) and
tracebacks: a log line names what failed and where, never who or what was sent.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger

from ..settings import Settings

WORKERS = 2
THREADS = 128
# glibc mallopt parameters (malloc.h) and the values `prepare_worker` sets.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 4 * 1024 * 1024
HEARTBEAT_TIMEOUT = 60
KEEPALIVE = 5
KEEPALIVE_SLOTS = 4
SHM = Path("/dev/shm")


def gunicorn_options(
    settings: Settings,
    *,
    workers: int = WORKERS,
    threads: int = THREADS,
    worker_class: str = "gthread",
    when_ready: Callable[[Any], None] | None = None,
    on_exit: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """The gunicorn settings for this service (names as in gunicorn's documentation)."""
    options: dict[str, Any] = {
        "bind": [settings.listen.bind],
        "worker_class": worker_class,
        "workers": workers,
        "threads": threads,
        # Connections a worker holds at once (kept-alive ones included): its threads and
        # a few idle kept-alive ones, no more. A worker whose threads are all held then
        # stops accepting, and a new visitor goes to a worker with a thread free. With
        # twice the threads, the workers took 200 trickling connections unevenly (129
        # and 73), and whoever landed on the full one waited with threads free next door.
        "worker_connections": threads + KEEPALIVE_SLOTS,
        "timeout": HEARTBEAT_TIMEOUT,
        "graceful_timeout": 30,
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
        "logger_class": RedactingLogger,
        "capture_output": False,
        # Tor connects from loopback; no proxy may rewrite the client's address or scheme.
        "forwarded_allow_ips": "",
        "proxy_allow_ips": "",
        "proxy_protocol": "off",
        "secure_scheme_headers": {},
        # No control socket: nothing but the listening address is opened.
        "control_socket_disable": True,
        # The app is built (and the key and spool checked) once, in the master.
        "preload_app": True,
        "http_protocols": "h1",
        "proc_name": "sealdrop",
        "post_fork": prepare_worker,
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
    """gunicorn's ``post_fork`` hook: runs in each new worker before its threads start."""
    limit_malloc_arenas()
    hide_error_details()


def limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas and fix its mmap threshold in this process (see the
    module docstring); does nothing under a C library without ``mallopt`` (musl)."""
    import ctypes

    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return
    mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    # A fixed threshold: 1 MiB read buffers are mmap'd and given back when freed, instead
    # of raising the threshold and staying in an arena.
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def hide_error_details() -> None:
    """Make the error pages gunicorn writes itself (unparseable requests) name only the
    status: its own page quotes the offending method, version or header back."""
    from gunicorn import util

    original = util.write_error
    if getattr(original, "_sealdrop_hidden", False):
        return

    def write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
        # `reason` is gunicorn's fixed phrase for the status; `mesg` quotes the request.
        original(sock, status_int, reason, "")

    write_error._sealdrop_hidden = True  # type: ignore[attr-defined]
    util.write_error = write_error


def hide_server_header() -> None:
    """Make gunicorn's responses carry no ``Server`` header.

    gunicorn writes ``Server: gunicorn`` itself, after the application's headers,
    so the app cannot remove it. It would tell a visitor which software (and so
    which known weaknesses) sits behind the onion address. Called in the master
    before workers fork, so every worker inherits it.
    """
    from gunicorn.http import wsgi

    original = wsgi.Response.default_headers
    if getattr(original, "_sealdrop_hidden", False):
        return

    def default_headers(self: Any) -> list[str]:
        headers: list[str] = original(self)
        return [line for line in headers if not line.lower().startswith("server:")]

    default_headers._sealdrop_hidden = True  # type: ignore[attr-defined]
    wsgi.Response.default_headers = default_headers


def honour_connection_close() -> None:
    """Make gunicorn close the connection when the app's response says ``Connection: close``.

    gunicorn drops the app's hop-by-hop headers and decides keep-alive itself, but only
    the app knows when a refused upload's body was not wholly read (web/upload.py,
    `discard_refused_body`): then the answer must say ``Connection: close`` and the
    connection must end, rather than gunicorn announce keep-alive and cut it anyway.
    Called in the master before workers fork.
    """
    from gunicorn.http import wsgi

    original = wsgi.Response.process_headers
    if getattr(original, "_sealdrop_close", False):
        return

    def process_headers(self: Any, headers: list[tuple[str, str]]) -> None:
        original(self, headers)
        for name, value in headers:
            if name.lower() == "connection" and value.strip().lower() == "close":
                self.force_close()

    process_headers._sealdrop_close = True  # type: ignore[attr-defined]
    wsgi.Response.process_headers = process_headers


class _Redact(logging.Filter):
    """Withhold request data and tracebacks from gunicorn's error log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("Invalid request from"):
            # Pre-formatted by gunicorn with the address and the offending request line.
            record.msg = "Invalid request refused (details withheld)"
            record.args = None
        elif "request" in message.lower() and record.args:
            if isinstance(record.args, tuple):
                record.args = tuple("[withheld]" for _ in record.args)
            else:
                record.msg = message.replace("%", "%%")
                record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            frames = traceback.extract_tb(error.__traceback__)
            where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            record.msg = f"{record.msg} [{type(error).__qualname__}{where}]"
            record.exc_info = None
            record.exc_text = None
        return True


class RedactingLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger with `_Redact` on the error log and no access log."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if not any(isinstance(f, _Redact) for f in self.error_log.filters):
            self.error_log.addFilter(_Redact())

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None
