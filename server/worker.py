"""The gunicorn worker: one gevent event loop per process, holding every connection.

Why an event loop (measured: docs/PERFORMANCE.md, "Slow clients"): with a thread per
connection (gthread), 300 clients trickling their request heads took every thread of
both workers, and a source's request waited for ever. In an event loop a waiting
connection costs a greenlet and its buffers, kilobytes, so thousands are held while
the head deadline (server.patches.limit_request_heads) and the body's rate floor
(web.body.RateFloor) close the ones only there to hold a place. What would stall the
loop (Argon2id, sealing, fsync) runs in its pool of OS threads (blocking.off_loop).

This is gunicorn's gevent worker (gunicorn's HTTP parser, so every patch in
server.patches applies unchanged), with these differences:
- no keep-alive timer around reading a request head: gunicorn's async workers give
  each head `keepalive` seconds (5), first request included, which would cut a
  source whose first bytes take longer over Tor; the head deadline decides instead;
- the thread pool gets its size and is registered with blocking.off_loop before the
  loop serves anything (the app is built in the worker, after gevent patched it, so
  its locks are the loop's: startup.py says why the master holds none);
- its own end (`run`): a worker being replaced (server.recycling) finishes every
  request it holds, for up to RECYCLE_DRAIN_SECONDS, so no upload is cut; a worker
  told to stop (the whole service stopping: SIGTERM) gives them
  `stop_grace_seconds`, then ends every connection's input, so that each upload
  still arriving is sealed and kept as cut (web.upload, like a source whose
  connection broke) instead of being killed with the process and lost.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import gevent
from gevent import get_hub, monkey
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.workers.ggevent import GeventWorker

from ..blocking import run_off_loop_in
from .patches import close_idle_connections, end_every_input

# Threads for off-loop work, beyond the codename derivations' slots: uploads sealing
# and committing at once. More would only queue for the same cores.
UPLOAD_THREADS = 8
# A worker being replaced waits this long for the requests it holds: longer than any
# upload can take under body_idle_seconds and max_body_bytes at Tor's slowest useful
# rate, so none is cut.
RECYCLE_DRAIN_SECONDS = 24 * 3600
# A worker told to stop waits `stop_grace_seconds` (a setting) for its requests to
# finish, then ends their input, then waits CUT_SECONDS for the uploads among them to
# be sealed and committed as cut; the arbiter kills what is left ARBITER_MARGIN
# seconds after that (`arbiter_grace`).
CUT_SECONDS = 10
ARBITER_MARGIN = 5
# How often the draining loop tells the arbiter it is alive and looks again.
TICK_SECONDS = 1.0


class SealdropWorker(GeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker, as the module docstring says."""

    # Set by `worker_class` from the settings: derivation slots + UPLOAD_THREADS, and
    # the seconds a stop waits for uploads.
    pool_threads = 2 + UPLOAD_THREADS
    stop_grace_seconds = 15.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_requested_at: float | None = None
        self._connections: set[socket.socket] = set()

    def timeout_ctx(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: the whole service stops (or this worker is told to by the arbiter)."""
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
        super().handle_exit(sig, frame)

    def handle(self, listener: Any, client: socket.socket, addr: Any) -> None:
        self._connections.add(client)
        try:
            super().handle(listener, client, addr)
        finally:
            self._connections.discard(client)

    def run(self) -> None:
        self._prepare_loop()
        servers = [self._start_server(sock) for sock in self.sockets]
        while self.alive:
            self.notify()
            gevent.sleep(TICK_SECONDS)
        for server in servers:
            server.close()  # stop accepting; held requests go on
        pools = [server.pool for server in servers]
        self._drain(pools)

    def _prepare_loop(self) -> None:
        hub = get_hub()
        # gevent prints the traceback of an error that escapes a greenlet or a pool
        # thread to stderr, where it could quote what a source sent. Connections' errors
        # go to gunicorn's handler (our redacting logger) and off-loop work hands its
        # errors back (blocking.py); nothing else may print one.
        hub.exception_stream = None
        hub.threadpool.maxsize = self.pool_threads
        native_ident: Callable[[], int] = monkey.get_original("_thread", "get_ident")
        run_off_loop_in(hub.threadpool, native_ident(), native_ident)

    def _start_server(self, sock: Any) -> StreamServer:
        sock.setblocking(1)
        server = StreamServer(
            sock, handle=partial(self.handle, sock), spawn=Pool(self.worker_connections)
        )
        if self.cfg.workers > 1:
            # Take one connection per wake-up, so the workers share a burst.
            server.max_accept = 1
        server.start()
        return server

    def _drain(self, pools: list[Pool]) -> None:
        """Wait for the held requests as the module docstring says; end the rest."""
        started = time.monotonic()
        while any(len(pool) for pool in pools):
            # Connections holding no request go at once; a kept-alive one that a
            # request just ended joins them (the worker no longer keeps any alive).
            close_idle_connections()
            now = time.monotonic()
            if self.stop_requested_at is not None:
                if now - self.stop_requested_at >= self.stop_grace_seconds:
                    break
            elif now - started >= RECYCLE_DRAIN_SECONDS:
                break
            self.notify()
            gevent.sleep(TICK_SECONDS)
        if not any(len(pool) for pool in pools):
            return
        # What each client has sent is all it sends: reads see the end, an upload
        # keeps what arrived (marked cut), a request head still arriving is dropped.
        end_every_input(list(self._connections))
        ending = time.monotonic()
        while any(len(pool) for pool in pools) and time.monotonic() - ending < CUT_SECONDS:
            self.notify()
            gevent.sleep(0.1)
        for pool in pools:
            pool.kill(timeout=1)


def worker_class(derivation_slots: int, stop_grace_seconds: float) -> type[Any]:
    """The worker class with its pool sized for `derivation_slots` at once, giving
    uploads `stop_grace_seconds` when the service stops."""
    return type(
        "SealdropWorker",
        (SealdropWorker,),
        {
            "pool_threads": derivation_slots + UPLOAD_THREADS,
            "stop_grace_seconds": float(stop_grace_seconds),
            "__module__": __name__,
        },
    )


def arbiter_grace(stop_grace_seconds: float) -> float:
    """gunicorn's graceful_timeout for the arbiter: after it, it kills the workers."""
    return stop_grace_seconds + CUT_SECONDS + ARBITER_MARGIN
