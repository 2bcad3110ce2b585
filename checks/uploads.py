"""Whether the deadlines on requests would cut a real source on a slow Tor circuit,
and whether the open-file limit lets the service hold `max_connections`.

`body_min_rate` over `body_rate_window_seconds` drops a body that trickles
(web.body.RateFloor); `head_timeout_seconds` closes a connection whose request head
is not complete in time (server.patches). Tor circuits stall for up to a minute and
carry tens of KB/s between stalls; deadlines such a source could miss would cut it.
"""

from __future__ import annotations

import resource

from ..connections import OPEN_FILES_FIX, open_files_needed, open_files_problem
from ..settings import Settings
from .findings import Finding, ok, problem, warning

# A slow but real Tor upload: this many bytes a second, with stalls this long.
TOR_RATE = 20_000
TOR_STALL_SECONDS = 60
# A head is a few hundred bytes: a few cells, but a new circuit's first round trips
# can take seconds.
HEAD_SECONDS_FOR_TOR = 20


def check_body_rate(settings: Settings) -> Finding:
    rate, window = settings.body_min_rate, settings.body_rate_window_seconds
    if rate == 0:
        return ok("upload rate floor: off (body_min_rate = 0); only body_idle_seconds applies")
    # The worst window for such an upload holds one whole stall.
    least = max(0, window - TOR_STALL_SECONDS) * TOR_RATE
    what = f"upload rate floor: {rate} bytes a second over {window} s"
    if least < rate * window:
        return warning(
            f"{what} would cut a Tor upload at {TOR_RATE // 1000} KB/s with "
            f"{TOR_STALL_SECONDS} s stalls (at least {least} bytes in such a window, "
            f"{rate * window} needed)",
            f"raise body_rate_window_seconds above {TOR_STALL_SECONDS} or lower body_min_rate",
        )
    return ok(
        f"{what}; a Tor upload at {TOR_RATE // 1000} KB/s with a minute's stalls stays above it"
    )


def check_head_timeout(settings: Settings) -> Finding:
    seconds = settings.head_timeout_seconds
    what = f"request head deadline: {seconds} s from the connection's opening"
    if seconds < HEAD_SECONDS_FOR_TOR:
        return warning(
            f"{what}, short enough to close a real visitor's connection on a slow Tor circuit",
            f"raise head_timeout_seconds to {HEAD_SECONDS_FOR_TOR} or more (default 60)",
        )
    return ok(what)


def check_open_files(settings: Settings, hard_limit: int | None = None) -> Finding:
    """Whether this process's hard open-file limit allows `max_connections` (the
    service's own limit is its unit's LimitNOFILE; `serve` raises the soft one)."""
    if hard_limit is None:
        hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    needed = open_files_needed(settings.max_connections)
    if what_is_wrong := open_files_problem(settings.max_connections, hard_limit):
        return problem(f"connections: {what_is_wrong} here", OPEN_FILES_FIX)
    return ok(
        f"connections: max_connections {settings.max_connections} needs {needed} open "
        "files per worker; the hard limit here allows it (the service's is its own: "
        "LimitNOFILE in its unit)"
    )
