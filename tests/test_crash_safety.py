"""SIGKILL the real server's workers and master in the middle of uploads.

Afterwards every acknowledged submission (the client got the page with a receipt) is
in the spool and opens to exactly what was sent; nothing that was refused is there;
`.part` leftovers are gone after the next start.

One case cannot be excluded by any server: a kill after the file was fsync'd and
renamed but before the receipt page reached the client. Such a file is complete and
opens; the client saw its connection cut, never an error page. The test allows it
only for uploads whose connection was cut, and reports how often it happened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import random
import secrets
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from sealdrop.tests.canaries import canary, find_canaries
from sealdrop.tests.reliability import (
    NoResponse,
    RealServer,
    Result,
    RssSampler,
    Service,
    exchange,
    mib,
    multipart,
    open_sealed,
    request_head,
    revealing,
    running,
)

ROUNDS = (
    # (concurrent clients, worker kills, then kill the master)
    (4, 3, False),
    (4, 3, True),
    (4, 2, True),
    (4, 0, True),
)
PIECE = 32 * 1024
PAUSE = 0.008


@dataclasses.dataclass
class Upload:
    marker: str
    file_digest: str
    payload: bytes
    outcome: str = "pending"  # "acknowledged", "refused <status>", "cut", "unsent"
    receipt: str | None = None


def make_upload(rng: random.Random) -> Upload:
    marker = canary()
    size = rng.choice([0, 1000, 70_000, 300_000, 800_000, 2_000_000])
    content = marker.encode() + secrets.token_bytes(size)
    body, ctype = multipart(f"crash test {marker}", [(f"{marker}.bin", content)])
    payload = request_head(ctype, len(body)) + body
    return Upload(marker, hashlib.sha256(content).hexdigest(), payload)


def send(server: RealServer, upload: Upload) -> None:
    try:
        response = exchange(server.port, upload.payload, timeout=30, pace=(PIECE, PAUSE))
    except ConnectionRefusedError:
        upload.outcome = "unsent"  # the master was dead: nothing was sent
        return
    except (NoResponse, OSError):
        upload.outcome = "cut"
        return
    assert not revealing(response)
    if response.status_code == 200 and response.receipt:
        upload.outcome = "acknowledged"
        upload.receipt = response.receipt
    else:
        upload.outcome = f"refused {response.status_code}"


def writers_of_parts(server: RealServer) -> list[int]:
    """The workers holding a `.part` file open: those in the middle of an upload."""
    holders = []
    for pid in server.worker_pids():
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd).endswith(".part"):
                        holders.append(pid)
                        break
    return holders


def at_random_point_of_an_upload(server: RealServer, rng: random.Random) -> list[int]:
    """Wait until some upload is being written, then a random while longer; return the
    workers writing one then (empty if no upload was running within 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if writers_of_parts(server):
            time.sleep(rng.uniform(0.0, 0.25))
            writers = writers_of_parts(server)
            if writers:
                return writers
        time.sleep(0.005)
    return []


def run_round(
    server: RealServer, clients: int, kills: int, kill_master: bool, seed: int
) -> tuple[list[Upload], int, int]:
    """Upload from `clients` threads, SIGKILLing the worker of a running upload `kills`
    times, then perhaps the master; after worker kills each client sends one more
    (the service must have recovered). Return the uploads and the kills done."""
    uploads: list[Upload] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(index: int) -> None:
        rng = random.Random(seed + index)
        after_stop = 0 if kill_master else 1
        while not stop.is_set() or after_stop > 0:
            if stop.is_set():
                after_stop -= 1
            upload = make_upload(rng)
            with lock:
                uploads.append(upload)
            send(server, upload)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    rng = random.Random(seed)
    worker_kills = master_kills = 0
    try:
        for _ in range(kills):
            writers = at_random_point_of_an_upload(server, rng)
            with contextlib.suppress(ProcessLookupError, IndexError):
                os.kill(rng.choice(writers), signal.SIGKILL)
                worker_kills += 1
        if kill_master and at_random_point_of_an_upload(server, rng):
            server.kill_master()
            master_kills += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "an upload hung"
    return uploads, worker_kills, master_kills


def test_sigkill_of_workers_and_master_loses_no_acknowledged_submission(tmp_path: Path) -> None:
    rng = random.Random(secrets.randbits(32))
    service = Service.create(tmp_path / "service")
    result = Result(
        "crash_safety",
    )
    uploads: list[Upload] = []
    worker_kills = master_kills = 0
    parts_left: set[str] = set()
    peak = 0
    for clients, kills, kill_master in ROUNDS:
        server = RealServer(service)
        try:
            server.wait_ready()
            with RssSampler(server) as rss:
                batch, workers_killed, masters_killed = run_round(
                    server, clients, kills, kill_master, rng.randrange(2**32)
                )
            uploads += batch
            worker_kills += workers_killed
            master_kills += masters_killed
            peak = max(peak, rss.peak)
        finally:
            server.stop()
        parts_left.update(p.name for p in service.parts())

    # The next start removes what the kills left half-written.
    with running(service):
        assert not service.parts()
    assert not service.parts()

    by_marker = {u.marker: u for u in uploads}
    stored: dict[str, Path] = {}
    for path in service.sealed():
        opened = open_sealed(path, service.key)  # raises if damaged in any way
        # A killed worker keeps nothing of its uploads: only a client that went away
        # leaves a cut (PARTIAL) submission, never the server's death.
        assert opened.cut is None
        marker = opened.message.removeprefix("crash test ")
        upload = by_marker[marker]
        [(name, content)] = opened.files
        assert name == f"{marker}.bin"
        assert hashlib.sha256(content).hexdigest() == upload.file_digest
        if upload.receipt is not None:
            assert opened.receipt == upload.receipt
        stored[marker] = path

    acknowledged = [u for u in uploads if u.outcome == "acknowledged"]
    lost = [u for u in acknowledged if u.marker not in stored]
    unacknowledged = [u for u in uploads if u.marker in stored and u.outcome != "acknowledged"]
    sent = [u for u in uploads if u.outcome != "unsent"]
    result.load = f"{len(sent)} uploads (0-2 MB, trickled at ~3 MB/s), 4 clients"
    result.faults = f"SIGKILL: {worker_kills} workers, {master_kills} masters (+ orphaned workers)"
    result.acknowledged = len(acknowledged)
    result.stored = len(stored)
    result.opened = len(stored)
    result.lost = len(lost)
    result.peak_rss_mib = mib(peak)
    cut = sum(u.outcome == "cut" for u in uploads)
    result.notes = [
        "outcomes: "
        + ", ".join(f"{k} {v}" for k, v in sorted(Counter(u.outcome for u in uploads).items())),
        f"{cut} uploads cut by a kill; {len(unacknowledged)} of them had been stored "
        "whole before the kill (complete, open, no receipt shown)",
        f"{len(parts_left)} .part files left by kills, {len(service.parts())} after the next start",
    ]
    result.write()

    # Stored without a receipt is only possible when the kill cut the connection.
    assert all(u.outcome == "cut" for u in unacknowledged), [u.outcome for u in unacknowledged]
    assert not lost
    assert worker_kills == sum(r[1] for r in ROUNDS)
    assert master_kills == sum(r[2] for r in ROUNDS)
    assert sum(u.outcome != "unsent" for u in uploads) >= 30
    assert len(acknowledged) >= 5, [u.outcome for u in uploads]
    # Nothing the service wrote holds an upload's plaintext.
    assert not find_canaries([service.spool, service.tmp, service.log], by_marker)
