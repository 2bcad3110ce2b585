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
THREADS = 32
HEARTBEAT_TIMEOUT = 60
KEEPALIVE = 5
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
        # Connections a worker holds at once (kept-alive ones included).
        "worker_connections": threads * 2,
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
    }
    if SHM.is_dir() and os.access(SHM, os.W_OK):
        # The heartbeat file holds no data; on tmpfs its updates never touch a disk.
        options["worker_tmp_dir"] = str(SHM)
    if when_ready is not None:
        options["when_ready"] = when_ready
    if on_exit is not None:
        options["on_exit"] = on_exit
    return options


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
