"""Soak: 2,000 submissions of mixed sizes from 32 concurrent clients against the real
server. Acknowledged == stored == opened, and the server's RSS stays flat (the last
quarter of the run against the first).

The workers are not recycled here: recycle_after_requests is set to its largest value,
so each worker lives through the whole run, the longest any operator can make it, and
what one leaks would show. With the default (50) workers were replaced dozens of times
in the run, and its memory swung by whole workers with how many overlapped in a
quarter: not growth, and no measure of it (docs/PERFORMANCE.md, "Worker recycling's
memory"). RSS is compared once the first 256 submissions are answered: by then every
worker thread exists, and what it allocates once (its stack, its state) is not growth.

Sizes are mostly small (the run must fit the CI budget on 2 cores) with a tail of
larger files, so that both the many-small-files and the big-buffer paths are soaked.
"""

from __future__ import annotations

import hashlib
import random
import statistics
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
    mib,
    multipart,
    open_sealed,
    post_multipart,
    revealing,
    running,
)

SUBMISSIONS = 2000
CLIENTS = 32
# (weight, smallest, largest file size): mostly small, a tail of larger files.
SIZES = [(85, 0, 20_000), (13, 20_000, 500_000), (2, 500_000, 3_000_000)]
# Allowed growth of the mean RSS from the first to the last quarter of the run.
RSS_FLAT_BOUND = 12 * 1024 * 1024
# Submissions before the RSS comparison starts: enough for every client to have gone
# through the worker's pool threads (each thread's stack and state are allocated once).
WARM_UP = 256
NOT_RECYCLED = {"SEALDROP_RECYCLE_AFTER_REQUESTS": "10000"}


def file_size(rng: random.Random) -> int:
    (_, low, high) = rng.choices(SIZES, weights=[w for w, _, _ in SIZES])[0]
    return rng.randint(low, high)


@pytest.mark.slow
def test_two_thousand_submissions_from_32_clients(tmp_path: Path) -> None:
    service = Service.create(tmp_path / "service")
    seed = random.randrange(2**32)
    sent: dict[str, str] = {}  # marker -> sha256 of the file
    receipts: dict[str, str] = {}  # marker -> receipt
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(SUBMISSIONS))
    total_bytes = 0
    warm_at: list[float] = []  # when WARM_UP submissions were answered (sampler time)

    with running(service, NOT_RECYCLED) as server, RssSampler(server, interval=0.25) as rss:
        started = time.monotonic()

        def client(index: int) -> None:
            nonlocal total_bytes
            rng = random.Random(seed + index)
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                marker = canary()
                content = marker.encode() + rng.randbytes(file_size(rng))
                message = f"soak {marker} " + "words " * rng.randint(0, 200)
                files = [(f"{marker}.dat", content)] if rng.random() < 0.9 else []
                body, ctype = multipart(message, files)
                try:
                    response = post_multipart(server.port, body, ctype, timeout=60)
                except NoResponse as err:
                    with lock:
                        failures.append(f"no response: {err}")
                    continue
                with lock:
                    if len(sent) + 1 == WARM_UP:
                        warm_at.append(time.monotonic() - rss.started)
                    total_bytes += len(body)
                    sent[marker] = hashlib.sha256(content if files else b"").hexdigest()
                    if revealing(response):
                        failures.append(f"revealing response {revealing(response)}")
                    if response.receipt is None:
                        failures.append(f"status {response.status_code}")
                    else:
                        receipts[marker] = response.receipt

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        elapsed = time.monotonic() - started
        assert not any(thread.is_alive() for thread in threads), "clients hung"
        samples = [value for at, value in rss.samples if warm_at and at >= warm_at[0]]
        pss_samples = [value for at, value in rss.pss_samples if warm_at and at >= warm_at[0]]

    stored = service.sealed()
    opened: dict[str, str] = {}
    mismatched = []
    for path in stored:
        submission = open_sealed(path, service.key)
        marker = submission.message.split()[1]
        content = submission.files[0][1] if submission.files else b""
        if hashlib.sha256(content).hexdigest() == sent.get(marker):
            opened[marker] = submission.receipt
        else:
            mismatched.append(path.name)
    quarter = max(1, len(samples) // 4)
    first, last = statistics.mean(samples[:quarter]), statistics.mean(samples[-quarter:])
    pss_first = statistics.mean(pss_samples[:quarter])
    pss_last = statistics.mean(pss_samples[-quarter:])

    # The row is written first, so that a failure is in the report with its numbers.
    result = Result(
        "soak",
        load=f"{SUBMISSIONS} submissions ({mib(total_bytes)} MiB) from {CLIENTS} clients",
        acknowledged=len(receipts),
        stored=len(stored),
        opened=len(opened),
        lost=len(set(receipts) - set(opened)),
        peak_rss_mib=mib(max(value for _, value in rss.samples)),
        notes=[
            f"{SUBMISSIONS / elapsed:.0f} submissions/s, {mib(total_bytes) / elapsed:.1f} MiB/s",
            f"mean RSS after {WARM_UP} submissions: first quarter {mib(first)} MiB, "
            f"last quarter {mib(last)} MiB (PSS {mib(pss_first)} -> {mib(pss_last)} MiB); "
            f"{rss.most_workers} workers at most",
        ],
    )
    result._started = started
    result.write()

    assert not failures, failures[:10]
    assert not mismatched
    assert len(receipts) == SUBMISSIONS
    assert opened == receipts
    assert not service.parts()
    assert last - first < RSS_FLAT_BOUND, (mib(first), mib(last))
    # Only a sample of markers: scanning every file for 2,000 needles would be slow.
    assert not find_canaries([service.root], list(sent)[:: max(1, len(sent) // 50)])
