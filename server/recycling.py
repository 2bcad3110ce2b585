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

The retiring places live in memory shared by the arbiter and its workers (made in
the arbiter before any worker forks): a worker takes a place, with its pid, before it
asks for its replacement; the arbiter frees it when that worker exits.
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
        # Created in the arbiter: forked workers share the places and their lock. A
        # place holds the pid of the worker retiring in it, 0 when free, so that only
        # that worker's exit frees it (a crash of another must not).
        self._retiring = multiprocessing.get_context("fork").Array("i", MAX_RETIRING)

    @property
    def retiring(self) -> int:
        """Workers retiring now."""
        return sum(1 for pid in self._pids() if pid)

    def _pids(self) -> list[int]:
        return [int(self._retiring[place]) for place in range(MAX_RETIRING)]

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
            free = [place for place, pid in enumerate(self._pids()) if not pid]
            if not free:
                return  # another is retiring: look again after the next request
            self._retiring[free[0]] = worker.pid
        setattr(worker, _RETIRED, True)
        worker.alive = False  # stops accepting; its loop ends once what it holds is done
        os.kill(worker.ppid, signal.SIGTTIN)

    def child_exit(self, server: Any, worker: Any) -> None:
        """A worker left. If it was retiring, free its place and drop the replacement
        it asked for from the count (never below the configured number: its SIGTTIN
        may not have been handled yet). Any other worker that left (a crash) is
        replaced by gunicorn as usual."""
        with self._retiring.get_lock():
            places = [place for place, pid in enumerate(self._pids()) if pid == worker.pid]
            for place in places:
                self._retiring[place] = 0
        if places:
            server.num_workers = max(server.cfg.workers, server.num_workers - 1)
