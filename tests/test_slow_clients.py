"""1000 connections trickling bytes (half slow headers, half slow bodies) while a normal
client submits: the submission completes within a stated bound and the server's memory
stays bounded.

What this measured on the project's 2-core machine is in docs/RELIABILITY.md and
docs/PERFORMANCE.md ("Slow clients"). With a thread per connection (gthread, 2 workers
x 32 threads) 200 trickling connections held every thread and the normal client got
no answer at all within 15 s; 2 x 128 threads only moved the bar to 256. In the event
loop (server.worker) a waiting connection costs a greenlet and its buffers, about
40 KiB of PSS, so the 1000 here, four times what the threads could hold, fit in the
64 MiB bound. It bounds the service's PSS, not its summed RSS, which counts every
page a worker shares with the master once per process (docs/PERFORMANCE.md, "Worker
recycling's memory").
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import pytest

from sealdrop.tests.canaries import canary, find_canaries
from sealdrop.tests.reliability import (
    NoResponse,
    Result,
    RssSampler,
    Service,
    connect,
    get,
    mib,
    multipart,
    open_sealed,
    post_multipart,
    request_head,
    running,
)

SLOW_CLIENTS = 1000
TRICKLE_PAUSE = 0.5  # one byte every half second: far below any real Tor upload
HOLD = 4.0  # how long the trickling goes on before the normal client submits
NORMAL_BOUND = 5.0  # seconds: the stated bound for the normal submission
MEMORY_GROWTH_BOUND = 64 * 1024 * 1024


class Trickler:
    """One connection sending a request one byte at a time, until told to stop."""

    def __init__(self, port: int, slow_headers: bool, marker: str) -> None:
        body, ctype = multipart(marker, [(f"{marker}.bin", marker.encode() * 1000)])
        head = request_head(ctype, len(body))
        self.sock = connect(port, timeout=10)
        if slow_headers:
            self.pending = head + body
        else:
            self.sock.sendall(head)
            self.pending = body
        self.closed_by_server = False

    def step(self) -> None:
        if self.closed_by_server or not self.pending:
            return
        try:
            self.sock.sendall(self.pending[:1])
        except OSError:
            self.closed_by_server = True
        self.pending = self.pending[1:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.mark.slow
def test_a_normal_submission_gets_through_1000_trickling_connections(tmp_path: Path) -> None:
    service = Service.create(tmp_path / "service")
    markers = [canary() for _ in range(SLOW_CLIENTS)]
    normal_marker = canary()
    result = Result(
        "slow_clients",
        load=f"{SLOW_CLIENTS} connections trickling 1 byte / {TRICKLE_PAUSE} s "
        f"(half headers, half bodies) + 1 normal client",
        faults="slow headers, slow bodies",
        bad_inputs=SLOW_CLIENTS,
    )
    with running(service) as server, RssSampler(server) as rss:
        time.sleep(0.5)
        baseline = server.rss_bytes()
        baseline_pss = server.memory_bytes()
        tricklers = [
            Trickler(server.port, index % 2 == 0, marker) for index, marker in enumerate(markers)
        ]
        stop = threading.Event()

        def trickle() -> None:
            while not stop.is_set():
                for trickler in tricklers:
                    trickler.step()
                stop.wait(TRICKLE_PAUSE)

        pump = threading.Thread(target=trickle, daemon=True)
        pump.start()
        try:
            time.sleep(HOLD)
            body, ctype = multipart(normal_marker, [("normal.bin", b"n" * 1_000_000)])
            started = time.monotonic()
            try:
                response = post_multipart(server.port, body, ctype, timeout=15)
            except NoResponse:
                pytest.fail(f"the normal submission got no answer in 15 s ({SLOW_CLIENTS} slow)")
            normal_seconds = time.monotonic() - started
            started = time.monotonic()
            page = get(server.port, timeout=15)
            page_seconds = time.monotonic() - started
            closed_early = sum(t.closed_by_server for t in tricklers)
        finally:
            stop.set()
            pump.join()
            for trickler in tricklers:
                trickler.close()
        peak = rss.peak
        peak_pss = rss.pss_peak
        most_workers = rss.most_workers
        # The slow bodies' .part files go as their clients go.
        deadline = time.monotonic() + 15
        while service.parts() and time.monotonic() < deadline:
            time.sleep(0.1)

    # The row is written first, so that a failed bound is in the report with its numbers.
    result.acknowledged = 1 if response.receipt else 0
    result.stored = len(service.sealed())
    result.peak_rss_mib = mib(peak)
    result.notes = [
        f"normal 1 MB submission answered in {normal_seconds:.2f} s (bound {NORMAL_BOUND} s), "
        f"form page in {page_seconds:.2f} s",
        f"PSS {mib(baseline_pss)} MiB before, peak {mib(peak_pss)} MiB with {SLOW_CLIENTS} "
        f"held ({(peak_pss - baseline_pss) // SLOW_CLIENTS // 1024} KiB per connection; "
        f"bound {mib(MEMORY_GROWTH_BOUND)} MiB in all); RSS {mib(baseline)} -> {mib(peak)} MiB; "
        f"{most_workers} workers at most",
        f"{closed_early} of {SLOW_CLIENTS} trickling connections closed by the server "
        f"within {HOLD:.0f} s",
    ]
    stored = service.sealed()
    if len(stored) == 1:
        opened = open_sealed(stored[0], service.key)
        result.opened = int(opened.receipt == response.receipt)
    result.write()

    assert response.status_code == 200 and response.receipt
    assert normal_seconds < NORMAL_BOUND
    assert page.status_code == 200 and page_seconds < NORMAL_BOUND
    assert peak_pss - baseline_pss < MEMORY_GROWTH_BOUND, (
        f"PSS grew {mib(peak_pss - baseline_pss)} MiB with {SLOW_CLIENTS} trickling "
        f"connections ({(peak_pss - baseline_pss) // SLOW_CLIENTS // 1024} KiB each, "
        f"{most_workers} workers at most)"
    )
    assert len(stored) == 1 and not service.parts()
    assert opened.receipt == response.receipt and opened.message == normal_marker
    assert not find_canaries([service.root], [*markers, normal_marker])
