"""The canary: a submission's plaintext reaches no disk and no log, raw or base64-encoded.

A unique marker goes into the message, a file's name and a file of more than 1 MB
(Werkzeug's default parser would have spooled that file to a plaintext temporary
file). Afterwards the spool, the server's TMPDIR, its working directory, files
under /tmp and /dev/shm changed since the test began, and everything the server
printed are searched for the marker, as it is and in base64 at all three
alignments. Only sealed bytes may remain.
"""

from __future__ import annotations

import base64
import http.client
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nacl.public import PrivateKey

SCAN_LIMIT = 512 * 1024 * 1024  # skip larger files under /tmp: not ours, and slow to read


def encodings(marker: bytes) -> list[bytes]:
    """The marker, and the base64 characters that encode only marker bits at each offset."""
    found = [marker]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + marker)
        first = -(-offset * 8 // 6)  # the first character made only of marker bits
        last = (offset + len(marker)) * 8 // 6
        found.append(encoded[first:last])
    return found


def test_encodings_find_the_marker_in_base64_at_any_offset() -> None:
    marker = b"canary-" + secrets.token_hex(8).encode()
    patterns = encodings(marker)
    for offset in range(3):
        text = base64.b64encode(os.urandom(offset) + marker + os.urandom(5))
        assert any(p in text for p in patterns[1:])


def files_under(root: Path, newer_than: float | None = None) -> Iterator[Path]:
    for directory, _, names in os.walk(root, onerror=lambda error: None):
        for name in names:
            path = Path(directory, name)
            try:
                info = path.lstat()
            except OSError:
                continue
            if not path.is_file() or path.is_symlink() or info.st_size > SCAN_LIMIT:
                continue
            if newer_than is not None and max(info.st_mtime, info.st_ctime) < newer_than:
                continue
            yield path


def wait_for_part(spool_dir: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.name.endswith(".part") for p in spool_dir.iterdir()):
            return True
        time.sleep(0.02)
    return False


def suspicious_open_files(master: int, spool_dir: Path, expected: set[Path]) -> list[str]:
    """Files open in the server's processes other than the spool's and gunicorn's own."""
    pids = [master]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    suspicious = []
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if not target.startswith("/") or target.startswith("/dev/"):
                continue  # sockets, pipes, /dev/null, /dev/urandom, the heartbeat in /dev/shm
            if Path(target).parent == spool_dir and target.endswith(".sealed.part"):
                continue
            if Path(target) in expected:
                continue
            suspicious.append(target)
    return suspicious


def find(patterns: list[bytes], data: bytes) -> list[bytes]:
    return [p for p in patterns if p in data]


def test_no_plaintext_anywhere_after_an_upload(
    start_server: Callable[..., Any],
    tmp_path: Path,
    spool_dir: Path,
    reviewer_key: PrivateKey,
    submission_body: Callable[..., Any],
    open_spool: Callable[[], list[Any]],
) -> None:
    began = time.time() - 1
    marker = b"canary-" + secrets.token_hex(12).encode()
    patterns = encodings(marker)
    server_tmp = tmp_path / "server-tmp"
    server_tmp.mkdir()
    workdir = tmp_path / "server-cwd"
    workdir.mkdir()
    server = start_server(cwd=workdir, tmpdir=server_tmp)

    filler = os.urandom(700_000)
    document = filler + marker + filler + marker  # > 1 MB, marker at two alignments
    name = marker.decode() + ".txt"
    body = submission_body(f"report {marker.decode()} ends", (name, document))
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        connection.putrequest("POST", "/submit")
        connection.putheader("Content-Type", body.content_type)
        connection.putheader("Content-Length", str(len(body.body)))
        connection.endheaders()
        half = len(body.body) // 2
        connection.send(body.body[:half])
        # Mid-upload, the workers' open files: a temporary file (even an unnamed
        # O_TMPFILE one, which no directory scan can see) would show here.
        assert wait_for_part(spool_dir)
        logs = {server.stdout_path, server.stderr_path}
        assert suspicious_open_files(server.pid, spool_dir, logs) == []
        connection.send(body.body[half:])
        response = connection.getresponse()
        page = response.read()
    finally:
        connection.close()
    assert response.status == 200
    assert marker not in page  # the receipt page repeats nothing sent

    # The submission is really there, sealed: the canary would be blind otherwise.
    [opened] = open_spool()
    assert marker.decode() in opened.message
    assert opened.files[0][0] == name
    assert opened.files[0][2] == document

    hits: dict[str, list[bytes]] = {}
    roots: list[tuple[Path, float | None]] = [
        (spool_dir, None),
        (server_tmp, None),
        (workdir, None),
    ]
    roots += [(Path("/tmp"), began), (Path("/dev/shm"), began)]
    scanned = 0
    for root, newer_than in roots:
        for path in files_under(root, newer_than):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            scanned += 1
            if found := find(patterns, data):
                hits[str(path)] = found
    # The server's own output, stdout and stderr.
    if found := find(patterns, server.output()):
        hits["server output"] = found
    assert hits == {}, hits
    assert scanned >= 1
