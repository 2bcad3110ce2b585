"""A full disk, for real: the spool on a 32 MiB tmpfs, the real server in front of it.

A submission that does not fit gets the 507 page; nothing partial remains; earlier
submissions still open; the service accepts again once space is freed. The
free-space reserve (setting reserve_bytes) keeps the disk from ever filling: with
one set, a large upload is refused while space is still left.

Needs root (mount); skipped with a message otherwise.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealdrop.storage.spool import RESERVE_CHECK_INTERVAL
from sealdrop.tests.canaries import canary, find_canaries
from sealdrop.tests.reliability import (
    RealServer,
    Result,
    Sampler,
    Service,
    exchange_while_sending,
    mib,
    multipart,
    open_sealed,
    request_head,
    revealing,
    running,
)

MiB = 1024 * 1024
DISK = 32 * MiB


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a 32 MiB tmpfs needs root; the disk-full tests did not run")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); disk-full not run")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def free_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def fill_until_free(disk: Path, free: int) -> Path:
    """Write a filler file beside the spool until `free` bytes are left."""
    filler = disk / "filler"
    with filler.open("ab") as handle:
        handle.write(b"\0" * max(0, free_bytes(disk) - free))
    return filler


def submit(server: RealServer, message: str, content: bytes) -> tuple[int, str | None]:
    body, ctype = multipart(message, [("file.bin", content)])
    response = exchange_while_sending(server.port, request_head(ctype, len(body)) + body)
    assert not revealing(response)
    if response.status_code != 200:
        assert b"Error code %d" % response.status_code in response.body
    return response.status_code, response.receipt


class FreeSpaceWatch(Sampler):
    """The least free space seen on a file system while in a `with` block."""

    def __init__(self, path: Path) -> None:
        super().__init__(interval=0.0005)
        self._path = path
        self.lowest = free_bytes(path)

    def sample(self) -> None:
        self.lowest = min(self.lowest, free_bytes(self._path))


def test_a_full_disk_refuses_with_507_and_keeps_what_was_stored(
    tmp_path: Path, small_disk: Path
) -> None:
    service = Service.create(tmp_path / "service", spool=small_disk / "spool")
    result = Result("disk_full", load=f"spool on a {DISK // MiB} MiB tmpfs")
    markers: list[str] = []
    receipts: dict[str, str] = {}
    faults = 0

    def stored_ok(server: RealServer, size: int) -> None:
        marker = canary()
        markers.append(marker)
        status, receipt = submit(server, marker, marker.encode() * (size // len(marker) + 1))
        assert status == 200 and receipt
        receipts[marker] = receipt

    def refused_507(server: RealServer, size: int) -> None:
        nonlocal faults
        before = service.spool_names()
        marker = canary()
        markers.append(marker)
        status, _ = submit(server, marker, marker.encode() * (size // len(marker) + 1))
        faults += 1
        assert status == 507
        assert service.spool_names() == before, "something partial remained"

    # No reserve: the disk really fills, and the write fails with ENOSPC.
    with running(service, {"SEALDROP_RESERVE_BYTES": "0"}) as server:
        for _ in range(3):
            stored_ok(server, 200_000)
        refused_507(server, 40 * MiB)
        stored_ok(server, 200_000)  # the failed upload's space came back at once
        filler = fill_until_free(small_disk, 64 * 1024)
        refused_507(server, 300_000)
        filler.unlink()
        stored_ok(server, 300_000)

    # A reserve: refused while space is left, the disk never full.
    reserve = 12 * MiB
    with running(service, {"SEALDROP_RESERVE_BYTES": str(reserve)}) as server:
        with FreeSpaceWatch(small_disk) as watch:
            refused_507(server, 40 * MiB)
        # The reserve is checked every RESERVE_CHECK_INTERVAL bytes written.
        assert watch.lowest >= reserve - RESERVE_CHECK_INTERVAL - MiB > 0
        filler = fill_until_free(small_disk, reserve - MiB)
        refused_507(server, 1000)  # would fit, but the reserve is not free
        filler.unlink()
        stored_ok(server, 1000)
        rss = mib(server.rss_bytes())

    assert not service.parts()
    opened = {}
    for path in service.sealed():
        submission = open_sealed(path, service.key)
        opened[submission.message] = submission.receipt
    assert opened == receipts
    assert not find_canaries([service.root, small_disk], markers)

    result.faults = "ENOSPC mid-upload, disk filled by another file, free space below reserve"
    result.bad_inputs = faults
    result.acknowledged = len(receipts)
    result.stored = len(service.sealed())
    result.opened = len(opened)
    result.lost = len(set(receipts) - set(opened))
    result.peak_rss_mib = rss
    result.notes = [
        f"reserve {reserve // MiB} MiB: lowest free space seen {mib(watch.lowest)} MiB "
        f"while a 40 MiB upload was refused",
    ]
    result.write()


def test_disk_full_on_the_test_client_gives_the_507_page(tmp_path: Path, small_disk: Path) -> None:
    # The same through Flask's test client: the whole page, even for a body not yet read.
    from flask import Flask

    from sealdrop.app import create_app
    from sealdrop.settings import Settings

    service = Service.create(tmp_path / "service", spool=small_disk / "spool")
    app: Flask = create_app(
        Settings(spool_dir=service.spool, public_key_file=service.public_key_file, reserve_bytes=0)
    )
    body, ctype = multipart("x", [("big.bin", b"z" * 40 * MiB)])
    response = app.test_client().post("/submit", data=body, content_type=ctype)
    assert response.status_code == 507
    assert "Storage is full" in response.get_data(as_text=True)
    assert not service.spool_names()


def test_the_default_reserve_outlasts_the_check_interval(tmp_path: Path) -> None:
    # The reserve is checked every RESERVE_CHECK_INTERVAL bytes written: only a reserve
    # larger than that (plus one read) keeps the disk from filling between two checks.
    from sealdrop.settings import Settings
    from sealdrop.web.body import READ_SIZE

    default = Settings(spool_dir=tmp_path, public_key_file=tmp_path / "k").reserve_bytes
    assert default > RESERVE_CHECK_INTERVAL + READ_SIZE
