"""The three places sealdrop changes gunicorn's behaviour, each for a source's safety.

gunicorn offers no setting for any of them, so each wraps one gunicorn function, once
(a second call does nothing), before workers fork or in each new worker. Tests against
the real server show each in effect (no ``Server`` header and the refused upload's
``Connection: close`` in tests/test_gunicorn_server.py, error pages that quote nothing
in tests/test_leaks.py), so a gunicorn release that moves a function fails a test
rather than silently undoing the patch.
"""

from __future__ import annotations

from typing import Any


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
    the app knows when a refused upload's body was not wholly read (web/discard.py,
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
