"""Replacing a worker after `recycle_after_requests`, with at most one retiring at once.

A worker that reaches its request count (gunicorn's max_requests, with jitter) stops
accepting and finishes what it holds before it exits, so that what a source's
requests left in its memory goes with it (docs/RELIABILITY.md, "Plaintext in
memory"); a replacement is asked for at once (SIGTTIN), so the service never runs a
worker short. A retiring worker may hold an upload for hours (a source on a slow
circuit, RECYCLE_DRAIN_SECONDS), and so may an attacker trickling bodies just above
the rate floor. Each retiring worker is a whole process (tens of MiB), so without a
cap a flood of slow uploads, each counted as a request, would make worker after
worker retire and fill the memory with them. At most MAX_RETIRING workers retire at
once: a worker reaching its count while another still retires keeps serving, and
looks again every `postpone` requests. Under such a flood recycling waits; what each
request leaves in memory is still overwritten when freed (server.memory).

The count of retiring workers lives in memory shared by the arbiter and its
workers (made in the arbiter before any worker forks): a worker takes a place
before it asks for its replacement, the arbiter gives it back when a worker beyond
the configured number exits.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Any

MAX_RETIRING = 1


class Recycling:
    """gunicorn hooks (`pre_request` in a worker, `child_exit` in the arbiter)."""

    def __init__(self, postpone: int) -> None:
        # Created in the arbiter: forked workers share the value and its lock.
        self._retiring = multiprocessing.get_context("fork").Value("i", 0)
        self._postpone = max(1, postpone)

    @property
    def retiring(self) -> int:
        """Workers retiring now (what the tests look at)."""
        return int(self._retiring.value)

    def pre_request(self, worker: Any, req: Any) -> None:
        """When this request would make `worker` retire (gunicorn counts it right
        after this hook), ask for its replacement if a retiring place is free, or
        postpone its retirement by `postpone` requests."""
        if getattr(worker, "_replacing", False) or worker.nr + 1 < worker.max_requests:
            return
        with self._retiring.get_lock():
            if self._retiring.value >= MAX_RETIRING:
                worker.max_requests = worker.nr + 1 + self._postpone
                return
            self._retiring.value += 1
        worker._replacing = True
        os.kill(worker.ppid, signal.SIGTTIN)

    def child_exit(self, server: Any, worker: Any) -> None:
        """A worker left; if a replacement was added for it, go back to the configured
        number of workers and free the retiring place."""
        if server.num_workers > server.cfg.workers:
            server.num_workers -= 1
            with self._retiring.get_lock():
                self._retiring.value = max(0, self._retiring.value - 1)
