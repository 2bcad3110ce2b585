"""Whether the codename settings can keep their promises on this machine.

A codename entry waits for a derivation slot in a queue (web/derivations.py). Only
a run of Argon2id at the configured cost tells how long a full queue takes to drain,
so this check runs one and compares: a queue longer than `codename_wait_seconds` can
serve turns its last entries away after making them wait.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from ..codename import SALT_BYTES, derive, new_codename
from ..keys import KdfCost
from ..settings import Settings
from ..web.derivations import DerivationQueue
from .findings import Finding, ok, warning


def check_codename_queue(
    settings: Settings,
    timer: Callable[[KdfCost], float] | None = None,
) -> Iterator[Finding]:
    """With codenames on: a full queue of entries drains within their wait."""
    if settings.state_dir is None or settings.replies_dir is None:
        return
    cost = KdfCost(settings.codename_kdf_passes, settings.codename_kdf_memory)
    seconds = (timer or _time_one)(cost)
    queue = DerivationQueue(
        settings.codename_max_concurrent,
        settings.codename_queue_length,
        settings.codename_wait_seconds,
    )
    drain = queue.visit_queue * seconds / queue.visit_slots
    what = (
        f"codename queue: one derivation takes {seconds:.2f} s here, a full queue of "
        f"{queue.visit_queue} entries about {drain:.0f} s"
    )
    if drain > settings.codename_wait_seconds:
        fitting = max(1, int(settings.codename_wait_seconds * queue.visit_slots / seconds))
        yield warning(
            f"{what}, longer than codename_wait_seconds ({settings.codename_wait_seconds} s): "
            "the entries at its end wait, then get the 429 page",
            f"lower codename_queue_length to {fitting} or raise codename_wait_seconds",
        )
    else:
        yield ok(f"{what}, within codename_wait_seconds ({settings.codename_wait_seconds} s)")


def _time_one(cost: KdfCost) -> float:
    salt = os.urandom(SALT_BYTES)
    started = time.perf_counter()
    derive(new_codename(), salt, cost)
    return time.perf_counter() - started
