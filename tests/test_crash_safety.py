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

import dataclasses
import hashlib
import random
import secrets
import threading
import time
from pathlib import Path

from sealdrop.tests.reliability import (
    NoResponse,
    RealServer,
    Result,
    RssSampler,
    Service,
    canary,
    exchange,
    find_canaries,
    mib,
    multipart,
    open_sealed,
    request_head,
    revealing,
    running,
)

ROUNDS = (
    # (uploads, concurrent clients, worker kills, then kill the master)
    (12, 4, 2, False),
    (12, 4, 1, True),
    (12, 4, 0, True),
)
PIECE = 32 * 1024
PAUSE = 0.004


@dataclasses.dataclass
class Upload:
    marker: str
    file_digest: str
    payload: bytes
    outcome: str = "pending"  # "acknowledged", "refused <status>", "cut"
    receipt: str | None = None


def make_upload(rng: random.Random) -> Upload:
    marker = canary()
    size = rng.choice([0, 1, 1000, 70_000, 300_000, 1_200_000])
    content = marker.encode() + secrets.token_bytes(size)
    body, ctype = multipart(f"crash test {marker}", [(f"{marker}.bin", content)])
    payload = request_head(ctype, len(body)) + body
    return Upload(marker, hashlib.sha256(content).hexdigest(), payload)


def send(server: RealServer, upload: Upload) -> None:
    try:
        response = exchange(server.port, upload.payload, timeout=30, pace=(PIECE, PAUSE))
    except (NoResponse, OSError):
        upload.outcome = "cut"
        return
    assert not revealing(response)
    if response.status_code == 200 and response.receipt:
        upload.outcome = "acknowledged"
        upload.receipt = response.receipt
    else:
        upload.outcome = f"refused {response.status_code}"


def run_round(
    server: RealServer, uploads: list[Upload], clients: int, kills: int, rng: random.Random
) -> int:
    """Send `uploads` from `clients` threads while SIGKILLing workers; return kills done."""
    queue = list(uploads)
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                upload = queue.pop()
            send(server, upload)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    done = 0
    for _ in range(kills):
        time.sleep(rng.uniform(0.1, 0.8))
        if server.kill_worker() is not None:
            done += 1
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "an upload hung"
    return done


def test_sigkill_of_workers_and_master_loses_no_acknowledged_submission(tmp_path: Path) -> None:
    rng = random.Random(secrets.randbits(32))
    service = Service.create(tmp_path / "service")
    result = Result(
        "crash_safety",
        load=f"{sum(r[0] for r in ROUNDS)} uploads (0-1.2 MB, trickled), 4 clients",
    )
    uploads: list[Upload] = []
    worker_kills = master_kills = parts_left = 0
    peak = 0
    for count, clients, kills, kill_master in ROUNDS:
        batch = [make_upload(rng) for _ in range(count)]
        uploads += batch
        server = RealServer(service)
        try:
            server.wait_ready()
            with RssSampler(server) as rss:
                if kill_master:
                    # The master dies at a random moment of the round, with uploads running.
                    timer = threading.Timer(rng.uniform(0.3, 1.5), server.kill_master)
                    timer.start()
                worker_kills += run_round(server, batch, clients, kills, rng)
                if kill_master:
                    timer.join()
                    master_kills += 1
            peak = max(peak, rss.peak)
        finally:
            server.stop()
        parts_left += len(service.parts())

    # The next start removes what the kills left half-written.
    with running(service):
        assert not service.parts()
    assert not service.parts()

    by_marker = {u.marker: u for u in uploads}
    stored: dict[str, Path] = {}
    for path in service.sealed():
        opened = open_sealed(path, service.key)  # raises if damaged in any way
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
    # Stored without a receipt is only possible when the kill cut the connection.
    assert all(u.outcome == "cut" for u in unacknowledged), [u.outcome for u in unacknowledged]
    assert not lost
    assert worker_kills >= 3 and master_kills == 2
    assert len(acknowledged) >= 5, [u.outcome for u in uploads]
    # Nothing the service wrote holds an upload's plaintext.
    assert not find_canaries([service.spool, service.tmp, service.log], by_marker)

    result.faults = f"SIGKILL: {worker_kills} workers, {master_kills} masters (+ orphaned workers)"
    result.acknowledged = len(acknowledged)
    result.stored = len(stored)
    result.opened = len(stored)
    result.lost = len(lost)
    result.peak_rss_mib = mib(peak)
    cut = sum(u.outcome == "cut" for u in uploads)
    result.notes = [
        f"{cut} uploads cut by a kill; {len(unacknowledged)} of them had been stored "
        "whole before the kill (complete, open, no receipt shown)",
        f"{parts_left} .part files left by kills, 0 after the next start",
    ]
    result.write()
