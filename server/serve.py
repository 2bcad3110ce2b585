"""`sealdrop serve`: check everything, then run the app under gunicorn.

The keys, folders and languages are checked once, in the gunicorn master, before any
worker exists (startup.prepare): a bad key or spool stops start-up with a plain
message. The master holds no app and no Flask; each worker builds the app from what
was checked, once its event loop is set up (startup.py says why). Whatever publishes
the service (the onion service) is started once, in the master, from gunicorn's
``when_ready`` hook (the listening socket exists by then) and stopped from
``on_exit``; never once per worker.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol

from gunicorn.app.base import BaseApplication

from ..connections import OPEN_FILES_FIX, open_files_needed, open_files_problem
from ..onion.errors import OnionError
from ..onion.publisher import OnionPublisher
from ..onion.service import OnionConfig
from ..settings import Settings, SettingsError, from_command_line
from ..startup import Startup, StartupRefused, prepare
from .gunicorn_conf import KEEPALIVE, gunicorn_options
from .memory import with_memory_hygiene
from .patches import (
    bound_body_drains,
    hide_error_details,
    hide_server_header,
    honour_connection_close,
    limit_request_heads,
    read_bodies_in_place,
    watch_body_pieces,
)

EXIT_REFUSED = 2
# gunicorn's exit codes for a worker that could not load the app (Arbiter).
BUILD_FAILED = (3, 4)


class Publisher(Protocol):
    """Makes the listening service reachable (the onion service); one per server."""

    def start(self, target: str) -> str:
        """Publish `target` (gunicorn's bind address); return the address to give out."""
        ...

    def stop(self) -> None: ...


class SealdropServer(BaseApplication):  # type: ignore[misc]
    """gunicorn run programmatically, with our options; each worker builds the app."""

    def __init__(self, build: Callable[[], Any], options: Mapping[str, Any]) -> None:
        self._build = build
        self._options = dict(options)
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        # Called in each worker (preload_app is off), after gevent patched it.
        return self._build()


def run_serve(args: argparse.Namespace) -> int:
    with_memory_hygiene()
    try:
        settings = from_command_line(args, os.environ)
        startup = prepare(settings)
    except (SettingsError, StartupRefused) as err:
        print(f"sealdrop serve: {err}", file=sys.stderr)
        return EXIT_REFUSED
    if problem := fit_open_files(settings.max_connections):
        print(f"sealdrop serve: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    labels = startup.labels
    print(
        f"sealdrop serve: each submission is sealed to {len(labels)} reviewer "
        f"key{'' if len(labels) == 1 else 's'}: {', '.join(labels)}",
        flush=True,
    )
    publisher: Publisher | None = None
    if args.local_only:
        print(
            "sealdrop serve: LOCAL ONLY: this service is NOT published on Tor; "
            "only this machine can reach it.",
            flush=True,
        )
    elif settings.state_dir is None:
        print(
            "sealdrop serve: no onion state folder; name one with --state DIR (it keeps "
            "the onion address's key: mode 700, outside the spool), or add --local-only",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    else:
        publisher = OnionPublisher(
            OnionConfig(
                settings.state_dir,
                target="",  # the listening socket, known once gunicorn has bound it
                control=settings.tor_control,
                control_password=settings.tor_control_password,
                ephemeral=args.ephemeral,
            )
        )
    try:
        serve(settings, startup, publisher)
    except OnionError as err:
        print(f"sealdrop serve: {err}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def fit_open_files(max_connections: int) -> str:
    """Raise this process's open-file limit (the workers inherit it) to what
    `max_connections` needs; a message naming the fix if the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if problem := open_files_problem(max_connections, hard):
        return f"{problem}: {OPEN_FILES_FIX}"
    needed = open_files_needed(max_connections)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return ""


def serve(settings: Settings, startup: Startup, publisher: Publisher | None) -> None:
    """Run gunicorn until it is told to stop (SIGTERM, SIGINT)."""

    sweeper = startup.sweeper

    def when_ready(server: Any) -> None:
        print(listening_url(server), flush=True)
        if publisher is not None:
            # The onion URL on a line of its own; the publisher reports the rest.
            print(publisher.start(listening_target(server)), flush=True)
        # Once per server, in the master, like the publisher; before any worker forks.
        if problem := sweeper.start():
            print(f"sealdrop serve: {problem}", file=sys.stderr, flush=True)

    def on_exit(server: Any) -> None:
        if publisher is not None:
            publisher.stop()
        sweeper.stop()

    hide_server_header()
    honour_connection_close()
    watch_body_pieces()
    read_bodies_in_place()
    limit_request_heads(settings.head_timeout_seconds, KEEPALIVE)
    bound_body_drains(KEEPALIVE)
    options = gunicorn_options(
        settings,
        when_ready=when_ready,
        on_exit=on_exit,
        counters=sweeper.counters,
    )
    master = os.getpid()
    try:
        SealdropServer(partial(build_app, settings, startup), options).run()
    except SystemExit as stopped:
        # gunicorn stops the whole service when a worker cannot build the app. The
        # master checked everything the app is built from, so what is left is the
        # installation itself (a file removed, or changed by an upgrade while the
        # service ran); a worker's own exit passes through here too, silently.
        if os.getpid() == master and stopped.code in BUILD_FAILED:
            print(
                "sealdrop serve: a worker could not build the web app (the error is "
                "above); the installation is broken or was changed while the service "
                "ran: reinstall sealdrop, then start it again",
                file=sys.stderr,
                flush=True,
            )
        raise


def build_app(settings: Settings, startup: Startup) -> Any:
    """A worker's app, and our pages for the requests gunicorn refuses itself, made
    from it in the deployment's default language. Imported here, in the worker: the
    master holds no Flask (startup.py)."""
    from ..app import create_app
    from ..web.errors import server_refusal_pages

    app = create_app(settings, startup)
    hide_error_details(server_refusal_pages(app))
    return app


def listening_target(server: Any) -> str:
    """The bound socket as tor's ADD_ONION target: ``127.0.0.1:PORT`` or ``unix:/path``."""
    name = server.LISTENERS[0].sock.getsockname()
    if isinstance(name, str):
        return f"unix:{name}"
    host = f"[{name[0]}]" if ":" in name[0] else name[0]
    return f"{host}:{name[1]}"


def listening_url(server: Any) -> str:
    """``http://127.0.0.1:PORT/`` for the socket gunicorn bound (the port may be chosen
    by the system when 0 was asked), or ``unix:/path`` for a Unix socket."""
    name = server.LISTENERS[0].sock.getsockname()
    if isinstance(name, str):
        return f"unix:{name}"
    host, port = name[0], name[1]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"
