"""An upload that stops arriving must not hold its connection for ever.

A client that declares a body and then sends nothing keeps its connection, and the
submission's `.part` file, until it goes away; enough such clients, cheap to make,
would fill `max_connections`. While a request is handled, the connection's socket
gets a timeout: a read that waits longer than `body_idle_seconds` fails, and the
upload path treats that as a client that disconnected (what arrived is kept, marked
cut; web.upload). Tor circuits can stall for tens of seconds, so the default is
generous.
"""

from __future__ import annotations

import contextlib
import socket

from flask import Flask, g, request


def register_idle_timeout(app: Flask, seconds: float) -> None:
    @app.before_request
    def limit_idle_reads() -> None:
        sock = request.environ.get("gunicorn.socket")
        if isinstance(sock, socket.socket):
            g.prior_socket_timeout = sock.gettimeout()
            sock.settimeout(seconds)

    @app.teardown_request
    def restore_socket_timeout(_: BaseException | None) -> None:
        sock = request.environ.get("gunicorn.socket")
        if isinstance(sock, socket.socket) and "prior_socket_timeout" in g:
            # gunicorn keeps the connection for the next request, with its own settings.
            with contextlib.suppress(OSError):
                sock.settimeout(g.prior_socket_timeout)
