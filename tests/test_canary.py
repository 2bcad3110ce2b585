"""The canary: a submission's plaintext reaches no disk and no log, in any encoding.

A unique marker goes into the message, a file's name and a file of more than 1 MB
(Werkzeug's default parser would have spooled that file to a plaintext temporary
file). Afterwards the spool, the server's TMPDIR, its working directory, files
under /tmp and /dev/shm changed since the test began, and everything the server
printed are searched for the marker in every form (tests/canaries.py: as it is, in
UTF-16, in base64 at all three alignments). Only sealed bytes may remain.
"""

from __future__ import annotations

import base64
import http.client
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nacl.public import PrivateKey

from sealdrop.tests.canaries import canary, files_under, find_canaries, found_in


def test_every_form_of_a_marker_is_found_in_base64_at_any_offset_and_in_utf16() -> None:
    marker = canary()
    for offset in range(3):
        text = base64.b64encode(os.urandom(offset) + marker.encode() + os.urandom(5))
        assert found_in(text, [marker]) == [marker]
    assert found_in(b"x" + marker.encode("utf-16-le") + b"y", [marker]) == [marker]
    assert found_in(b"x" + marker.encode("utf-16-be") + b"y", [marker]) == [marker]
    assert found_in(os.urandom(4096), [marker]) == []


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


def test_no_plaintext_anywhere_after_an_upload(
    start_server: Callable[..., Any],
    tmp_path: Path,
    spool_dir: Path,
    reviewer_key: PrivateKey,
    submission_body: Callable[..., Any],
    open_spool: Callable[[], list[Any]],
) -> None:
    began = time.time() - 1
    marker = canary().encode()
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

    own = [spool_dir, server_tmp, workdir]
    hits = find_canaries(own, [marker])
    hits += find_canaries([Path("/tmp"), Path("/dev/shm")], [marker], newer_than=began)
    # The server's own output, stdout and stderr.
    assert found_in(server.output(), [marker]) == []
    assert hits == [], hits
    scanned = sum(1 for root in own for _ in files_under(root))
    assert scanned >= 1
