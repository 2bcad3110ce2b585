"""Replacing a worker after `recycle_after_requests`, with at most one retiring at once.

A worker that has *finished* its share of requests (`recycle_after_requests` plus a
random 0 to half as many more, drawn for each worker) stops accepting and finishes
what it holds before it exits, so that what a source's requests left in its memory
goes with it (docs/RELIABILITY.md, "Plaintext in memory"); a replacement is asked for
at once (SIGTTIN), so the service never runs a worker short. Requests are counted as
they end, not as they begin: a request's leftovers exist once it was handled, and
counting beginnings would let a flood of uploads that never end (trickled just
above the rate floor) make worker after worker retire.

A retiring worker may hold an upload for hours (a source on a slow circuit,
server.worker.RECYCLE_DRAIN_SECONDS), and so may an attacker. Each retiring worker is
a whole process (tens of MiB), so at most MAX_RETIRING retire at once: a worker that
reaches its count while another still retires keeps serving and looks again at each
request it finishes. Under such a flood recycling waits; what each request leaves in
memory is still overwritten when freed (server.memory).

The count of retiring workers lives in memory shared by the arbiter and its workers
(made in the arbiter before any worker forks): a worker takes a place before it asks
for its replacement, the arbiter gives it back when a worker beyond the configured
number exits.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import signal
from typing import Any

MAX_RETIRING = 1
# The attributes a worker carries: the requests it serves before retiring, those it
# has finished, and whether it has retired.
_LIMIT = "sealdrop_recycle_after"
_DONE = "sealdrop_requests_done"
_RETIRED = "sealdrop_retired"


class Recycling:
    """gunicorn hooks: `post_fork` and `post_request` in a worker, `child_exit` in the
    arbiter."""

    def __init__(self, after_requests: int) -> None:
        self._after = after_requests
        # Created in the arbiter: forked workers share the value and its lock.
        self._retiring = multiprocessing.get_context("fork").Value("i", 0)

    @property
    def retiring(self) -> int:
        """Workers retiring now."""
        return int(self._retiring.value)

    def post_fork(self, server: Any, worker: Any) -> None:
        """Draw this worker's share: `after_requests` plus 0 to half as many more, so
        that workers started together do not all retire together."""
        setattr(worker, _LIMIT, self._after + secrets.randbelow(self._after // 2 + 1))
        setattr(worker, _DONE, 0)

    def post_request(self, worker: Any, req: Any, environ: Any, resp: Any) -> None:
        """A request ended; retire once the share is done and a retiring place is free."""
        done = getattr(worker, _DONE, 0) + 1
        setattr(worker, _DONE, done)
        if getattr(worker, _RETIRED, False) or done < getattr(worker, _LIMIT, done + 1):
            return
        with self._retiring.get_lock():
            if self._retiring.value >= MAX_RETIRING:
                return  # another is retiring: look again after the next request
            self._retiring.value += 1
        setattr(worker, _RETIRED, True)
        worker.alive = False  # stops accepting; its loop ends once what it holds is done
        os.kill(worker.ppid, signal.SIGTTIN)

    def child_exit(self, server: Any, worker: Any) -> None:
        """A worker left; if a replacement was added for it, go back to the configured
        number of workers and free the retiring place."""
        if server.num_workers > server.cfg.workers:
            server.num_workers -= 1
            with self._retiring.get_lock():
                self._retiring.value = max(0, self._retiring.value - 1)
