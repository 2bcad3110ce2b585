"""How many connections the service holds, and the open files that takes.

One rule for `serve` (which raises its open-file limit to fit, or refuses to start)
and `sealdrop check` (which reports it): each worker process holds up to its share
of `max_connections`, each connection is a socket and, while it uploads, a spool
file, and the process needs OTHER_OPEN_FILES more for everything else.
"""

from __future__ import annotations

import resource

# Worker processes (server.worker): each holds its share of the connections in an
# event loop, and runs Argon2id, sealing and fsync in a pool of threads that use every
# core. One: a second process costs about 60 MiB of RSS (most of it shared with the
# master, counted again), and in the slow-client load it made no visitor faster
# (docs/PERFORMANCE.md, "The web server's configuration").
WORKERS = 1
# Open files a worker needs besides its connections: the listening socket, gunicorn's
# pipes and heartbeat file, logs, catalogs, the spool's folders, tor's control socket.
OTHER_OPEN_FILES = 256


def per_worker(max_connections: int, workers: int = WORKERS) -> int:
    """One worker's share of `max_connections`."""
    return max(1, -(-max_connections // workers))


def open_files_needed(max_connections: int, workers: int = WORKERS) -> int:
    """Open files one worker needs at most."""
    return 2 * per_worker(max_connections, workers) + OTHER_OPEN_FILES


def open_files_problem(max_connections: int, hard_limit: int) -> str:
    """What is wrong with a hard open-file limit for `max_connections`, or ""."""
    needed = open_files_needed(max_connections)
    if hard_limit == resource.RLIM_INFINITY or hard_limit >= needed:
        return ""
    return (
        f"max_connections {max_connections} needs {needed} open files per worker process, "
        f"but the system allows at most {hard_limit}"
    )


OPEN_FILES_FIX = (
    "raise the limit (LimitNOFILE= in the systemd unit, `ulimit -Hn` in a shell, "
    "--ulimit nofile= for a container), or lower max_connections (setting "
    "max_connections / SEALDROP_MAX_CONNECTIONS)"
)
