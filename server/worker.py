"""The gunicorn worker: one gevent event loop per process, holding every connection.

Why an event loop (measured: docs/PERFORMANCE.md, "Slow clients"): with a thread per
connection (gthread), 300 clients trickling their request heads took every thread of
both workers, and a source's request waited for ever. In an event loop a waiting
connection costs a greenlet and its buffers, a few kilobytes, so thousands are held
while the head deadline (server.patches.limit_request_heads) and the body's rate
floor (web.body.RateFloor) close the ones only there to hold a place. What would
stall the loop (Argon2id, sealing, fsync) runs in its pool of OS threads
(blocking.off_loop).

This is gunicorn's own gevent worker (gunicorn's HTTP parser, so every patch in
server.patches applies unchanged) with three differences:
- no keep-alive timer around reading a request head: gunicorn's async workers give
  each head `keepalive` seconds (5), first request included, which would cut a
  source whose first bytes take longer over Tor; the head deadline decides instead;
- the thread pool gets its size and is registered with blocking.off_loop before the
  loop starts;
- what the app built in the master but must own per worker (a lock made before
  gevent patched threading would block the whole loop) is renewed (`WORKER_STARTS`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from gevent import get_hub, monkey
from gunicorn.workers.ggevent import GeventWorker

from ..app import WORKER_STARTS
from ..blocking import run_off_loop_in

# Threads for off-loop work, beyond the codename derivations' slots: uploads sealing
# and committing at once. More only queue for the same two cores.
UPLOAD_THREADS = 8


class SealdropWorker(GeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker, as the module docstring says."""

    # Set by gunicorn_conf from the settings: derivation slots + UPLOAD_THREADS.
    pool_threads = 2 + UPLOAD_THREADS

    def timeout_ctx(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def run(self) -> None:
        hub = get_hub()
        hub.threadpool.maxsize = self.pool_threads
        native_ident: Callable[[], int] = monkey.get_original("_thread", "get_ident")
        run_off_loop_in(hub.threadpool, native_ident(), native_ident)
        for start in getattr(self.wsgi, "extensions", {}).get(WORKER_STARTS, ()):
            start()
        super().run()


def worker_class(derivation_slots: int) -> type[Any]:
    """The worker class with its pool sized for `derivation_slots` at once."""
    return type(
        "SealdropWorker",
        (SealdropWorker,),
        {"pool_threads": derivation_slots + UPLOAD_THREADS, "__module__": __name__},
    )
