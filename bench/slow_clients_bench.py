"""Slow clients against the real server (issue 13): do real visitors still get through?

One run starts, one after the other and each alone on the machine:

- ``this``: ``python -m sealdrop serve --local-only`` from this checkout (or
  ``--checkout PATH``, e.g. a worktree not landed yet);
- ``previous``: the same command from ``--baseline-ref`` (default ``adbedb2``, the last
  commit before the worker-model change), checked out with ``git worktree add
  --detach`` into a temporary folder and run with the same venv (a folder holding a
  ``sealdrop`` symlink to that checkout goes first on PYTHONPATH: the repository root
  *is* the package);
- ``onionshare``: ``onionshare-cli --local-only --receive --public`` (OnionShare 2.7, in
  a venv of its own under ``~/.cache/sealdrop-bench``; ``--install-onionshare``).

Against each, ONE separate load process (asyncio, so the attacker is cheap) opens,
ramped over a few seconds, ``--heads`` connections that send a request line and then
one header byte every 2 s (never finishing the head) and ``--bodies`` connections that
send a whole multipart POST head and then trickle the body at ``--body-rate`` bytes a
second, above the server's 500 B/s floor, so they are NOT legitimately droppable. A
connection the server closes is opened again (an attacker would; ``--no-reconnect``).
While the load holds, this process makes ``--tries`` visits to ``GET /`` and as many
1 MB submissions (the page's own form), each on a fresh connection with a ``--timeout``;
a failure counts as the whole timeout. The server's whole process tree (master and
workers) is sampled for total RSS and PSS meanwhile.

    .venv/bin/python bench/slow_clients_bench.py            # 2,000 heads + 500 bodies, 75 s
    .venv/bin/python bench/slow_clients_bench.py --quick    # 200 + 50, 5 tries, 20 s

A measurement, not a test: a table, the ratios against ``previous``, the issue's pass
criteria for ``this`` (PASS/FAIL each), one JSON line last. Loopback only; every load
is bounded in count and time; servers, worktree and temporary folders are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sealdrop.bench.checkouts import (
    DEFAULT_BASELINE_REF,
    REPO,
    WrongCheckout,
    baseline_checkout,
    check_import,
    sealdrop_env,
)
from sealdrop.bench.harness import (
    CONTENT_TYPE,
    ONIONSHARE_REQUIREMENT,
    ONIONSHARE_VENV,
    find_onionshare,
    install_onionshare,
    loadavg,
    multipart,
    onionshare_version,
    part_head,
)

HOST = "127.0.0.1"
# The bounds for "this" (issue 13, "Done when").
P99_BOUND = 1.0
RSS_BOUND_MIB = 256.0
# One header byte every 2 s: the attack the issue describes.
HEAD_INTERVAL = 2.0
# 600 B/s per body: 20 % above the server's default floor (body_min_rate 500 B/s), so a
# server that drops these is cutting uploads it promised to keep. Sent as one piece
# every 2 s so 500 bodies cost the load process ~250 writes a second.
BODY_RATE = 600
BODY_INTERVAL = 2.0
# The trickling bodies announce far more than they can send in the hold, so none ends.
BODY_CONTENT_LENGTH = 64 * 1024 * 1024
SUBMISSION_BYTES = 1_000_000
CONNECT_TIMEOUT = 10.0
RECONNECT_PAUSE = 0.5
# A transport whose server does not read (gthread's listen backlog) is not written to
# past this: the load process's memory stays bounded whatever the server does.
MAX_UNSENT = 256 * 1024
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
SAMPLE_INTERVAL = 0.5
FULL = {"heads": 2000, "bodies": 500, "tries": 20, "hold": 75.0, "ramp": 5.0}
QUICK = {"heads": 200, "bodies": 50, "tries": 5, "hold": 20.0, "ramp": 2.0}


# --- small helpers (tested in tests/test_slow_clients_bench.py) ---------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: with 20 values p50 is the 10th and p99 the 20th (the
    max), so one failure in 20 tries is a p99 of the whole timeout. NaN if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def proc_kib(path: Path, name: str) -> int:
    """A ``Name: N kB`` line of a /proc file, in KiB; 0 once the process is gone."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def group_pids(pgid: int) -> list[int]:
    """Live processes of process group `pgid`: a server started in a session of its own
    is its master and every worker it forked (an orphaned worker included)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def memory_kib(pids: Sequence[int]) -> tuple[int, int]:
    """(total RSS, total PSS) of `pids` in KiB. PSS counts a page shared by the master
    and its forked workers once; RSS counts it in each (the issue's bound is on RSS)."""
    rss = sum(proc_kib(Path(f"/proc/{pid}/status"), "VmRSS") for pid in pids)
    pss = sum(proc_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss") for pid in pids)
    return rss, pss


def accept_queue(port: int, table: Path = Path("/proc/net/tcp")) -> int:
    """Connections the kernel has completed on 127.0.0.1:`port` that the server has not
    accepted yet: a listening socket's rx_queue in /proc/net/tcp is its accept queue.
    The load counts these as open, but the server does not hold them: they only wait."""
    wanted = f"0100007F:{port:04X}"
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return 0
    for line in lines:
        fields = line.split()
        if len(fields) > 4 and fields[1] == wanted and fields[3] == "0A":  # LISTEN
            return int(fields[4].split(":")[1], 16)
    return 0


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard one (2,500 sockets need it; the servers started
    from here inherit it too, so their own limit is not what is measured)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def post_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
        f"Content-Type: {CONTENT_TYPE}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


# --- the load process ----------------------------------------------------------------------


@dataclass
class LoadConfig:
    port: int
    heads: int
    bodies: int
    ramp: float
    duration: float  # hard bound: the load process stops by itself after this
    head_path: str
    body_path: str
    body_field: str
    body_rate: int = BODY_RATE
    reconnect: bool = True


@dataclass
class Counts:
    """One kind of slow connection, as the load process sees it."""

    target: int
    established: int = 0  # connects that succeeded, reconnects included
    open: int = 0  # connected now and closed by neither side
    closed_by_server: int = 0  # EOF or reset from the server
    answered: int = 0  # of those, how many got some response bytes first
    connect_failures: int = 0


class Trickle(asyncio.Protocol):
    """One slow connection: remembers whether the server answered or closed it."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.answered = False
        self.ours = False  # we are closing it: not counted as the server's doing
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.counts.established += 1
        self.counts.open += 1

    def data_received(self, data: bytes) -> None:
        self.answered = True

    def eof_received(self) -> bool:
        return False  # close our side too: a response then EOF means the server is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.gone.done():
            self.gone.set_result(None)
        self.counts.open -= 1
        if not self.ours:
            self.counts.closed_by_server += 1
            self.counts.answered += int(self.answered)

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self.lost or transport.is_closing():
            return
        if transport.get_write_buffer_size() < MAX_UNSENT:
            transport.write(data)

    def close(self) -> None:
        self.ours = True
        if self.transport is not None and not self.lost:
            self.transport.abort()  # reset: thousands of FIN_WAITs would outlive the run


def head_pieces(config: LoadConfig) -> tuple[bytes, Iterator[bytes]]:
    """A GET whose head never ends: its first line and Host, then a header one byte at
    a time (far below gunicorn's 8190-byte field limit over any hold)."""
    first = f"GET {config.head_path} HTTP/1.1\r\nHost: {HOST}\r\nX-Trickle: ".encode()

    def rest() -> Iterator[bytes]:
        while True:
            yield b"a"

    return first, rest()


def body_pieces(config: LoadConfig) -> tuple[bytes, Iterator[bytes]]:
    """A whole POST head and the start of a file part, then `body_rate` bytes a second of
    the file, sent as one piece every BODY_INTERVAL seconds; it never reaches its end."""
    first = post_head(config.body_path, BODY_CONTENT_LENGTH) + part_head(
        config.body_field, "trickle.bin"
    )
    piece = b"b" * int(config.body_rate * BODY_INTERVAL)

    def rest() -> Iterator[bytes]:
        while True:
            yield piece

    return first, rest()


async def pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def slow_connection(
    config: LoadConfig,
    counts: Counts,
    pieces: Callable[[], tuple[bytes, Iterator[bytes]]],
    interval: float,
    delay: float,
    stop: asyncio.Event,
    live: set[Trickle],
) -> None:
    """Keep one slow connection open until `stop`, opening it again if the server closes
    it (config.reconnect). Its sends happen at its own phase, so they spread evenly.
    No wake-up on `stop`: `run_load` cancels every one of these tasks, and a timer per
    connection is all thousands of them should cost."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(delay)
    while not stop.is_set():
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: Trickle(counts), HOST, config.port),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError):
            counts.connect_failures += 1
            await asyncio.sleep(1.0)
            if config.reconnect:
                continue
            return
        live.add(protocol)
        first, rest = pieces()
        protocol.send(first)
        while not stop.is_set() and not protocol.lost:
            # Wakes at once when the server closes it (no task made: a future and a timer).
            await asyncio.wait([protocol.gone], timeout=interval)
            protocol.send(next(rest))
        live.discard(protocol)
        if stop.is_set() or not config.reconnect:
            protocol.close()
            return
        await asyncio.sleep(RECONNECT_PAUSE)


def status_line(event: str, started: float, heads: Counts, bodies: Counts) -> str:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return json.dumps(
        {
            "event": event,
            "t": round(time.monotonic() - started, 2),
            "heads": asdict(heads),
            "bodies": asdict(bodies),
            "load_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "load_maxrss_kib": usage.ru_maxrss,
        }
    )


async def run_load(config: LoadConfig) -> None:
    """The load process's whole life: ramp up, hold, report a status line every second
    on stdout, stop on SIGTERM, on stdin closing or after `duration`, close everything."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.call_later(config.duration, stop.set)
    heads, bodies = Counts(config.heads), Counts(config.bodies)
    live: set[Trickle] = set()
    tasks = start_connections(config, heads, bodies, stop, live)
    started = time.monotonic()
    ramped = False
    while not stop.is_set():
        await pause(stop, 1.0)
        event = "status"
        if not ramped and time.monotonic() - started >= config.ramp + 1.0:
            ramped, event = True, "ramped"
        print(status_line(event, started, heads, bodies), flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for protocol in list(live):
        protocol.close()
    await asyncio.sleep(0.2)  # let connection_lost run for each
    print(status_line("done", started, heads, bodies), flush=True)


def start_connections(
    config: LoadConfig, heads: Counts, bodies: Counts, stop: asyncio.Event, live: set[Trickle]
) -> list[asyncio.Task[None]]:
    """One task per slow connection, heads and bodies interleaved over the ramp so both
    kinds arrive all along it."""
    total = config.heads + config.bodies
    tasks = []
    for index, is_body in enumerate(interleave(config.heads, config.bodies)):
        delay = config.ramp * index / max(1, total)
        if is_body:
            work = slow_connection(
                config, bodies, lambda: body_pieces(config), BODY_INTERVAL, delay, stop, live
            )
        else:
            work = slow_connection(
                config, heads, lambda: head_pieces(config), HEAD_INTERVAL, delay, stop, live
            )
        tasks.append(asyncio.ensure_future(work))
    return tasks


def interleave(heads: int, bodies: int) -> list[bool]:
    """`heads + bodies` flags, True for a body: the bodies spread evenly among heads."""
    total = heads + bodies
    return [(i + 1) * bodies // total > i * bodies // total for i in range(total)]


def load_main(raw: str) -> int:
    raise_nofile()
    config = LoadConfig(**json.loads(raw))
    # stdin closing (the measuring process died) stops the load too.
    threading.Thread(target=_stop_on_stdin_eof, daemon=True).start()
    asyncio.run(run_load(config))
    return 0


def _stop_on_stdin_eof() -> None:
    sys.stdin.read()
    os.kill(os.getpid(), signal.SIGTERM)


# --- the servers ---------------------------------------------------------------------------


class NotRun(Exception):
    """A server that could not be set up or started here: its row says why."""


class Server:
    """A server in a session (and process group) of its own, its output in a file; its
    URL is read from what it prints and it is ready once ``GET /`` answers 200."""

    def __init__(
        self, command: list[str], env: dict[str, str], cwd: Path, log: Path, pattern: str
    ) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        try:
            self.port = self._wait_for_port(pattern)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_for_port(self, pattern: str) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log.read_text(errors="replace"), re.M)
            if match:
                return int(match.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise NotRun(f"did not start; its output: {self.output_tail()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if visit(self.port, get_request(), 5.0, (200,)).ok:
                time.sleep(1.0)  # let every worker finish booting before the baseline
                return
            time.sleep(0.2)
        raise NotRun(f"GET / never answered 200; its output: {self.output_tail()}")

    def output_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def pids(self) -> list[int]:
        return group_pids(self.process.pid)

    def stop(self) -> None:
        """SIGTERM, as an operator stops it; then SIGKILL to its group if it hangs or left
        anything behind (only the group this bench started)."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)


# --- the measured visitor ------------------------------------------------------------------


@dataclass
class Try:
    ok: bool
    seconds: float  # the whole timeout for a failure
    detail: str = ""


def get_request() -> bytes:
    return f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()


def visit(
    port: int,
    request: bytes,
    timeout: float,
    ok_statuses: Sequence[int],
    must_contain: bytes | None = None,
) -> Try:
    """Send `request` on a fresh connection and read the whole answer, all within
    `timeout` seconds. Anything but an answer with one of `ok_statuses` (and holding
    `must_contain`) is a failure, and a failure counts as the whole timeout: the
    visitor was not served."""
    started = time.monotonic()
    deadline = started + timeout
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock.sendall(request)
            status, body = read_answer(sock, deadline)
    except (OSError, ValueError) as error:
        return Try(False, timeout, type(error).__name__)
    if status not in ok_statuses:
        return Try(False, timeout, f"status {status}")
    if must_contain is not None and must_contain not in body:
        return Try(False, timeout, f"status {status} without {must_contain!r}")
    return Try(True, time.monotonic() - started, f"status {status}, {len(body)} bytes")


def read_answer(sock: socket.socket, deadline: float) -> tuple[int, bytes]:
    """(status, body) of one response, read until its Content-Length or EOF."""
    data = bytearray()
    length: int | None = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no whole answer in time")
        sock.settimeout(left)
        piece = sock.recv(65536)
        data += piece
        head, found, body = bytes(data).partition(b"\r\n\r\n")
        if found and length is None:
            match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
            length = int(match.group(1)) if match else -1
        if not piece or (found and length is not None and 0 <= length <= len(body)):
            break
    if not found:
        raise ValueError(f"no response head ({len(data)} bytes)")
    status = int(head.split(b" ", 2)[1])
    return status, body


@dataclass
class Visitor:
    """What a real visitor does on one server: load the page, send the page's form."""

    submit_request: bytes
    submit_ok: tuple[int, ...]
    receipt: bytes | None = None  # in the body of an acknowledged submission


def sealdrop_visitor() -> Visitor:
    """templates/index.html's form: POST /submit, fields `message` and `files`."""
    body = multipart(
        [
            ("message", None, b"slow clients bench: a normal submission"),
            ("files", "normal.bin", os.urandom(SUBMISSION_BYTES)),
        ]
    )
    return Visitor(post_head("/submit", len(body)) + body, (200,), b'class="receipt-number"')


def onionshare_visitor() -> Visitor:
    """OnionShare's receive.html form: POST /upload, fields `file[]` and `text`; it
    answers a plain (non-JS) form with a redirect to its page."""
    body = multipart([("file[]", "normal.bin", os.urandom(SUBMISSION_BYTES)), ("text", None, b"")])
    return Visitor(post_head("/upload", len(body)) + body, (200, 302, 303))


def scheduled_tries(
    port: int, visitor: Visitor, tries: int, window: float, timeout: float
) -> tuple[list[Try], list[Try]]:
    """`tries` page loads and `tries` submissions, each in its own thread, started at
    even steps over `window` seconds (a submission half a step after each page load),
    so a server that never answers costs the run `window + timeout`, not 40 timeouts."""
    pages: list[Try] = []
    submissions: list[Try] = []
    step = window / max(1, tries)
    threads = []
    began = time.monotonic()

    def one(results: list[Try], request: bytes, ok: tuple[int, ...], marker: bytes | None) -> None:
        results.append(visit(port, request, timeout, ok, marker))

    for index in range(tries):
        for offset, results, request, ok, marker in (
            (0.0, pages, get_request(), (200,), None),
            (step / 2, submissions, visitor.submit_request, visitor.submit_ok, visitor.receipt),
        ):
            at = began + index * step + offset
            time.sleep(max(0.0, at - time.monotonic()))
            thread = threading.Thread(target=one, args=(results, request, ok, marker), daemon=True)
            thread.start()
            threads.append(thread)
    for thread in threads:
        thread.join(timeout + 5)
    return pages, submissions


# --- memory and the load process, seen from here --------------------------------------------


class MemorySampler:
    """Total RSS and PSS of a server's process group every SAMPLE_INTERVAL seconds,
    from a thread, while in a `with` block; keeps the maxima, the most processes and the
    accept queue's samples. RSS and PSS are read a few milliseconds apart, so while
    64 MiB derivations come and go the PSS maximum can exceed the RSS one."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.rss_kib = 0
        self.pss_kib = 0
        self.processes = 0
        self.queued: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = self.server.pids()
            rss, pss = memory_kib(pids)
            self.rss_kib = max(self.rss_kib, rss)
            self.pss_kib = max(self.pss_kib, pss)
            self.processes = max(self.processes, len(pids))
            self.queued.append(accept_queue(self.server.port))
            self._stop.wait(SAMPLE_INTERVAL)


class LoadProcess:
    """This script run as the load generator (`--load-config`), its status lines read
    from its stdout by a thread."""

    def __init__(self, config: LoadConfig) -> None:
        self.lines: list[dict[str, object]] = []
        self._ramped = threading.Event()
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--load-config",
                json.dumps(asdict(config)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                status = json.loads(line)
                self.lines.append(status)
                if status["event"] in ("ramped", "done"):
                    self._ramped.set()
        self._ramped.set()

    def wait_ramped(self, timeout: float) -> bool:
        return self._ramped.wait(timeout) and self.process.poll() is None

    def latest(self) -> dict[str, object] | None:
        return self.lines[-1] if self.lines else None

    def stop(self) -> dict[str, object] | None:
        """SIGTERM (it closes every socket and prints its last status), SIGKILL if it
        hangs; its last status line."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        return self.latest()


# --- one server under load -----------------------------------------------------------------


@dataclass
class Row:
    name: str
    not_run: str = ""
    loadavg_before: str = ""
    heads_at_start: int = 0
    bodies_at_start: int = 0
    heads_min: int = 0
    bodies_min: int = 0
    final: dict[str, object] = field(default_factory=dict)  # the load's last status
    pages: list[Try] = field(default_factory=list)
    submissions: list[Try] = field(default_factory=list)
    idle_rss_kib: int = 0
    idle_pss_kib: int = 0
    load_rss_kib: int = 0  # the most with the load alone, before the first try
    load_pss_kib: int = 0
    rss_kib: int = 0
    pss_kib: int = 0
    processes: int = 0
    # The accept queue (connected, not yet taken by the server): longest and median.
    queued: int = 0
    queued_median: int = 0
    stored: str = ""  # what the server kept of the acknowledged submissions

    def seconds(self, which: str) -> list[float]:
        return [t.seconds for t in getattr(self, which)]

    def failures(self, which: str) -> int:
        return sum(not t.ok for t in getattr(self, which))


@dataclass
class Setup:
    """How to start one server and what its real visitor does."""

    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    pattern: str  # finds the port in its output
    visitor: Visitor
    body_path: str
    body_field: str
    after: Callable[[Row], None] | None = None  # checks what it stored


def measure(setup: Setup, args: argparse.Namespace, work: Path) -> Row:
    """Start the server, put the load on it, make the tries while it holds, and keep the
    load on for the whole hold even when the tries end early (memory is sampled and a
    head deadline, if any, can act all along); then stop everything."""
    row = Row(setup.name, loadavg_before=loadavg())
    server = Server(setup.command, setup.env, setup.cwd, work / f"{setup.name}.log", setup.pattern)
    try:
        row.idle_rss_kib, row.idle_pss_kib = memory_kib(server.pids())
        with MemorySampler(server) as memory:
            load = LoadProcess(load_config(server.port, setup, args))
            try:
                if not load.wait_ramped(args.ramp + 30.0):
                    raise NotRun("the load process did not ramp up")
                ramped_at, first = time.monotonic(), len(load.lines) - 1
                row.load_rss_kib, row.load_pss_kib = memory.rss_kib, memory.pss_kib
                row.pages, row.submissions = scheduled_tries(
                    server.port,
                    setup.visitor,
                    args.tries,
                    max(0.0, args.hold - args.timeout),
                    args.timeout,
                )
                if setup.after is not None:
                    setup.after(row)  # before the load stops: its cut bodies are not counted
                time.sleep(max(0.0, ramped_at + args.hold - time.monotonic()))
                during = load.lines[first:]
            finally:
                row.final = load.stop() or {}
        held(row, during)
        row.rss_kib, row.pss_kib, row.processes = memory.rss_kib, memory.pss_kib, memory.processes
        row.queued = max(memory.queued, default=0)
        row.queued_median = int(percentile(memory.queued, 0.5)) if memory.queued else 0
    finally:
        server.stop()
    return row


def load_config(port: int, setup: Setup, args: argparse.Namespace) -> LoadConfig:
    return LoadConfig(
        port=port,
        heads=args.heads,
        bodies=args.bodies,
        ramp=args.ramp,
        duration=args.ramp + args.hold + 60.0,  # the load process's own bound
        head_path="/",
        body_path=setup.body_path,
        body_field=setup.body_field,
        body_rate=args.body_rate,
        reconnect=args.reconnect,
    )


def held(row: Row, during: Sequence[dict[str, object]]) -> None:
    """Open connections at the first try and the fewest over the hold."""
    row.heads_at_start = _open(during[0], "heads")
    row.bodies_at_start = _open(during[0], "bodies")
    row.heads_min = min(_open(status, "heads") for status in during)
    row.bodies_min = min(_open(status, "bodies") for status in during)


def _open(status: dict[str, object], kind: str) -> int:
    counts = status[kind]
    assert isinstance(counts, dict)
    return int(counts["open"])


# --- setting up each server ------------------------------------------------------------------


def sealdrop_setup(
    name: str, checkout: Path, work: Path, key: Path, args: argparse.Namespace
) -> Setup:
    """``python -m sealdrop serve --local-only`` of `checkout`, with this venv: a folder
    holding only a `sealdrop` symlink to the checkout goes first on PYTHONPATH, ahead of
    the venv's editable install (whose finder comes after the path)."""
    root = work / name
    spool = root / "spool"
    for folder in (spool, root / "state", root / "replies", root / "tmp"):
        folder.mkdir(parents=True, mode=0o700)
    env = sealdrop_env(checkout, root / "pythonpath")
    env.update(
        {
            "SEALDROP_PUBLIC_KEY_FILE": str(key),
            "SEALDROP_REPLY_SIGNING_KEY_FILE": str(key.with_name("reply-signing.pub")),
            "SEALDROP_SPOOL_DIR": str(spool),
            # State and replies as scripts/run sets them: a first submission also gets
            # a codename (an Argon2id derivation), as on a real service.
            "SEALDROP_STATE_DIR": str(root / "state"),
            "SEALDROP_REPLIES_DIR": str(root / "replies"),
            "SEALDROP_LISTEN": f"{HOST}:0",
            "SEALDROP_RESERVE_BYTES": "0",  # a bench's disk is small; not what is measured
            "TMPDIR": str(root / "tmp"),
        }
    )
    check_import(env, checkout, root)
    visitor = sealdrop_visitor()

    def count_sealed(row: Row) -> None:
        sealed = len(list(spool.glob("*.sealed")))
        acknowledged = len(row.submissions) - row.failures("submissions")
        row.stored = f"{sealed} sealed for {acknowledged} acknowledged"

    return Setup(
        name,
        [sys.executable, "-m", "sealdrop", "serve", "--local-only"],
        env,
        root,
        r"^http://127\.0\.0\.1:(\d+)/$",
        visitor,
        "/submit",
        "files",
        count_sealed,
    )


def make_key(work: Path) -> Path:
    """A reviewer key pair from this checkout's `sealdrop keygen` (cheapest KDF: the
    private key is never used); both servers get its public half."""
    out = work / "offline"
    env = sealdrop_env(REPO, work / "keygen-path")
    env["SEALDROP_PASSPHRASE"] = "slow clients bench"
    subprocess.run(
        [sys.executable, "-m", "sealdrop", "keygen", "--out", str(out), "--kdf-cost", "min"],
        env=env,
        cwd=work,
        check=True,
        capture_output=True,
    )
    return out / "reviewer.pub"


def onionshare_setup(work: Path, args: argparse.Namespace) -> Setup:
    executable = find_onionshare(args.onionshare)
    if executable is None:
        raise NotRun("onionshare-cli not found (--install-onionshare installs it)")
    version = onionshare_version(executable)
    if not version.startswith("2.7"):
        print(f"note: onionshare-cli is {version}, not 2.7", file=sys.stderr)
    root = work / "onionshare"
    (root / "home").mkdir(parents=True)
    (root / "received").mkdir()
    # Its own HOME: it writes its settings there, not into this user's.
    env = {**os.environ, "HOME": str(root / "home"), "TMPDIR": str(root)}
    command = [
        str(executable),
        "--local-only",  # no tor: it serves on 127.0.0.1 only
        "--receive",
        "--public",  # no private key: the form is at / with no auth
        "--data-dir",
        str(root / "received"),
    ]
    return Setup(
        f"onionshare {version}",
        command,
        env,
        root,
        r"http://127\.0\.0\.1:(\d+)",
        onionshare_visitor(),
        "/upload",
        "file[]",
    )


# --- the report ----------------------------------------------------------------------------


def closed(row: Row, kind: str) -> int:
    counts = row.final.get(kind, {})
    return int(counts.get("closed_by_server", 0)) if isinstance(counts, dict) else 0


def latency_cells(row: Row, which: str) -> str:
    seconds = row.seconds(which)
    return " ".join(f"{percentile(seconds, p):>6.2f}" for p in (0.5, 0.99)) + (
        f" {max(seconds, default=float('nan')):>6.2f}"
    )


def table(rows: Sequence[Row], args: argparse.Namespace) -> str:
    header = (
        f"{'server':<16} {'heads held':>11} {'bodies held':>11} {'closed h/b':>11} "
        f"{'GET / p50':>9} {'p99':>6} {'max':>6} {'1 MB p50':>8} {'p99':>6} {'max':>6} "
        f"{'fail G/S':>8} {'RSS MiB':>8} {'PSS MiB':>8} {'loadavg':>15}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        if row.not_run:
            lines.append(f"{row.name:<16} not run: {row.not_run}")
            continue
        held_h = f"{row.heads_min}/{args.heads}"
        held_b = f"{row.bodies_min}/{args.bodies}"
        cut = f"{closed(row, 'heads')}/{closed(row, 'bodies')}"
        failed = f"{row.failures('pages')}/{row.failures('submissions')}"
        lines.append(
            f"{row.name:<16} {held_h:>11} {held_b:>11} "
            f"{cut:>11} "
            f"{latency_cells(row, 'pages'):>23} {latency_cells(row, 'submissions'):>22} "
            f"{failed:>8} "
            f"{row.rss_kib / 1024:>8.1f} {row.pss_kib / 1024:>8.1f} {row.loadavg_before:>15}"
        )
    return "\n".join(lines)


def details(rows: Sequence[Row]) -> str:
    lines = []
    for row in rows:
        if row.not_run:
            continue
        final = row.final
        load = f"load process {final.get('load_cpu_s')} CPU s, {final.get('load_maxrss_kib')} KiB"
        lines.append(
            f"{row.name}: open at the first try {row.heads_at_start} heads, "
            f"{row.bodies_at_start} bodies; in the accept queue (not taken by the server) up "
            f"to {row.queued}, median {row.queued_median}; {describe(final, 'heads')}; "
            f"{describe(final, 'bodies')}; idle RSS {row.idle_rss_kib / 1024:.1f} MiB, "
            f"PSS {row.idle_pss_kib / 1024:.1f} MiB; with the load alone (before the first "
            f"try) RSS {row.load_rss_kib / 1024:.1f} MiB, PSS {row.load_pss_kib / 1024:.1f} MiB; "
            f"{row.processes} processes at most; "
            f"{load}" + (f"; {row.stored}" if row.stored else "")
        )
        failed = Counter(t.detail for t in row.pages + row.submissions if not t.ok)
        if failed:
            lines.append("  failures: " + ", ".join(f"{n} x {d}" for d, n in failed.items()))
    return "\n".join(lines)


def describe(final: dict[str, object], kind: str) -> str:
    counts = final.get(kind, {})
    if not isinstance(counts, dict):
        return f"{kind}: ?"
    return (
        f"{kind}: {counts['established']} connects ({counts['connect_failures']} failed), "
        f"{counts['closed_by_server']} closed by the server ({counts['answered']} answered)"
    )


def ratios(rows: Sequence[Row]) -> dict[str, float]:
    """this / previous, measured in the same run."""
    by_name = {row.name: row for row in rows if not row.not_run}
    this, previous = by_name.get("this"), by_name.get("previous")
    if this is None or previous is None:
        return {}
    return {
        "GET / p99": percentile(this.seconds("pages"), 0.99)
        / percentile(previous.seconds("pages"), 0.99),
        "1 MB p99": percentile(this.seconds("submissions"), 0.99)
        / percentile(previous.seconds("submissions"), 0.99),
        "RSS total": this.rss_kib / max(1, previous.rss_kib),
        "PSS total": this.pss_kib / max(1, previous.pss_kib),
    }


def criteria(row: Row, args: argparse.Namespace) -> list[tuple[str, bool, str]]:
    """The issue's "Done when" bounds for one server: (criterion, met, figure)."""
    get_p99 = percentile(row.seconds("pages"), 0.99)
    submit_p99 = percentile(row.seconds("submissions"), 0.99)
    rss = row.rss_kib / 1024
    return [
        (
            f"{args.heads} heads and {args.bodies} bodies connected at once",
            row.heads_at_start >= args.heads and row.bodies_at_start >= args.bodies,
            f"{row.heads_at_start} + {row.bodies_at_start} open at the first try",
        ),
        (f"GET / p99 < {P99_BOUND:g} s", get_p99 < P99_BOUND, f"{get_p99:.2f} s"),
        (f"1 MB submission p99 < {P99_BOUND:g} s", submit_p99 < P99_BOUND, f"{submit_p99:.2f} s"),
        (f"total RSS < {RSS_BOUND_MIB:g} MiB", rss < RSS_BOUND_MIB, f"{rss:.1f} MiB"),
        (
            f"no body trickling at {args.body_rate} B/s (above the floor) cut",
            closed(row, "bodies") == 0,
            f"{closed(row, 'bodies')} closed by the server",
        ),
    ]


def report(rows: Sequence[Row], args: argparse.Namespace) -> None:
    print(
        f"\nSlow clients, loopback: {args.heads} heads (1 byte / {HEAD_INTERVAL:g} s) + "
        f"{args.bodies} bodies ({args.body_rate} B/s), ramp {args.ramp:g} s, hold {args.hold:g} s, "
        f"{'reconnecting' if args.reconnect else 'not reconnecting'}; {args.tries} tries each "
        f"of GET / and a 1 MB submission, timeout {args.timeout:g} s (a failure counts as it)"
    )
    print(table(rows, args))
    print(
        "held: the fewest open over the hold / the target; closed h/b: connections the "
        "server closed (heads/bodies, each reopened); seconds; RSS and PSS: the most of the "
        "whole process tree during the load; loadavg: before the server started (the "
        "machine is shared)"
    )
    print(details(rows))
    found = ratios(rows)
    if found:
        print("\nthis / previous (same run):")
        for name, value in found.items():
            print(f"  {name:<10} {value:6.2f}")
    this = next((row for row in rows if row.name == "this" and not row.not_run), None)
    if this is not None:
        print("\nIssue 13's bounds for this:")
        for name, met, figure in criteria(this, args):
            print(f"  {'PASS' if met else 'FAIL'}  {name}: {figure}")
    print(json.dumps(as_json(rows, args, found)))


def as_json(rows: Sequence[Row], args: argparse.Namespace, found: dict[str, float]) -> object:
    def summary(row: Row, which: str) -> dict[str, float | int]:
        seconds = row.seconds(which)
        return {
            "p50": percentile(seconds, 0.5),
            "p99": percentile(seconds, 0.99),
            "max": max(seconds, default=float("nan")),
            "failures": row.failures(which),
        }

    return {
        "settings": {
            key: getattr(args, key)
            for key in ("heads", "bodies", "ramp", "hold", "tries", "timeout", "body_rate")
        },
        "ratios": found,
        "rows": {
            row.name: {"not_run": row.not_run}
            if row.not_run
            else {
                "get": summary(row, "pages"),
                "submit": summary(row, "submissions"),
                "rss_mib": row.rss_kib / 1024,
                "pss_mib": row.pss_kib / 1024,
                "idle_rss_mib": row.idle_rss_kib / 1024,
                "load_only_rss_mib": row.load_rss_kib / 1024,
                "load_only_pss_mib": row.load_pss_kib / 1024,
                "held": [row.heads_min, row.bodies_min],
                "accept_queue_max": row.queued,
                "accept_queue_median": row.queued_median,
                "at_start": [row.heads_at_start, row.bodies_at_start],
                "load": row.final,
                "loadavg": row.loadavg_before,
                "stored": row.stored,
            }
            for row in rows
        },
    }


# --- the run -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="slow-clients-bench-", dir=args.dir))
    try:
        key = make_key(work)
        for name in args.servers:
            rows.append(run_one(name, work, key, args))
            time.sleep(2.0)  # let the closed sockets and the stopped server go
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def run_one(name: str, work: Path, key: Path, args: argparse.Namespace) -> Row:
    print(f"[{time.strftime('%H:%M:%S')}] {name} (loadavg {loadavg()})", file=sys.stderr)
    try:
        if name == "this":
            checkout = args.checkout.resolve()
            return measure(sealdrop_setup("this", checkout, work, key, args), args, work)
        if name == "previous":
            with baseline_checkout(args.baseline_ref, work) as checkout:
                return measure(sealdrop_setup("previous", checkout, work, key, args), args, work)
        return measure(onionshare_setup(work, args), args, work)
    except (NotRun, WrongCheckout, subprocess.CalledProcessError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"  {name} not run: {error}", file=sys.stderr)
        return Row(name, not_run=reason)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Slow clients against sealdrop serve, its previous setup and OnionShare."
    )
    parser.add_argument("--heads", type=int, help="trickling request heads (2000)")
    parser.add_argument("--bodies", type=int, help="trickling request bodies (500)")
    parser.add_argument(
        "--body-rate", type=int, default=BODY_RATE, help=f"bytes/s per body ({BODY_RATE})"
    )
    parser.add_argument("--ramp", type=float, help="seconds to open them all (5)")
    parser.add_argument("--hold", type=float, help="seconds the load holds after the ramp (75)")
    parser.add_argument("--tries", type=int, help="GET / and 1 MB submissions (20)")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per try")
    parser.add_argument(
        "--no-reconnect",
        dest="reconnect",
        action="store_false",
        help="do not reopen a slow connection the server closed",
    )
    parser.add_argument(
        "--checkout",
        type=Path,
        default=REPO,
        help="the checkout measured as `this` (default: the one this script is in), "
        "e.g. a worktree whose change has not landed; it runs with this venv",
    )
    parser.add_argument(
        "--baseline-ref",
        default=DEFAULT_BASELINE_REF,
        help=f"the git ref measured as `previous` (default {DEFAULT_BASELINE_REF})",
    )
    parser.add_argument(
        "--servers",
        default="this,previous,onionshare",
        help="which to run, comma-separated (this, previous, onionshare)",
    )
    parser.add_argument("--onionshare", help="path of onionshare-cli (default: looked for)")
    parser.add_argument(
        "--install-onionshare",
        action="store_true",
        help=f"pip install {ONIONSHARE_REQUIREMENT} into {ONIONSHARE_VENV} first",
    )
    parser.add_argument("--quick", action="store_true", help="200 + 50, 5 tries, 20 s hold")
    parser.add_argument("--dir", help="where the temporary folder goes (default $TMPDIR)")
    parser.add_argument("--load-config", help=argparse.SUPPRESS)  # the load process itself
    args = parser.parse_args(argv)
    # --quick changes the defaults only: `--quick --bodies 0` is a quick run without bodies.
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = set(args.servers) - {"this", "previous", "onionshare"}
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.body_rate * BODY_INTERVAL < 1 or args.tries < 1 or args.hold <= 0:
        parser.error("--body-rate, --tries and --hold must be positive")
    if args.heads < 0 or args.bodies < 0 or args.ramp < 0:
        parser.error("--heads, --bodies and --ramp cannot be negative")
    if args.body_rate * (args.ramp + args.hold + 60) >= BODY_CONTENT_LENGTH:
        parser.error("--body-rate too high: a trickling body would end within the run")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load_config:
        return load_main(args.load_config)
    soft, hard = raise_nofile()
    needed = args.heads + args.bodies + 2 * args.tries + 64
    if soft < needed:
        print(f"RLIMIT_NOFILE is {soft} (hard {hard}): {needed} are needed", file=sys.stderr)
        return 2
    if args.install_onionshare:
        install_onionshare()
    report(run(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
