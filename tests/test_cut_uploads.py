"""Uploads cut off by the client, against the real server (`sealdrop serve` under gunicorn).

A client sends the request head and a prefix of a real form body, then closes its
socket: inside the first part's headers, the message, a file's part headers, a file's
data, at a file's first and last byte, between files and in the body's last bytes.
For each cut, exactly one spool file must exist iff content (a byte of the message or
of a file) had arrived; it must open as PARTIAL, and every byte it holds must be a
prefix of what was sent, checked by hash. Complete uploads sent during the same run,
one of them trickling the whole time, must arrive whole and unmarked.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import random
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey

from sealdrop import cli, crypto, keys, records
from sealdrop.reviewer import sources

from .conftest import Multipart, build_multipart, multipart_head, spool_entries
from .reliability import Result

CUTS = 50
BOUNDARY = "----sealdropCutTest7f3a"
MESSAGE = "Logs leave the reserve at night by the river road, three trucks, no plates. " * 9
# The framing keeps the last few bytes of a read back while they could start a delimiter
# (a line break, then --BOUNDARY): a cut may lose those, never more.
HELD_BACK = len(BOUNDARY) + 8
LIMITS = {"SEALDROP_MAX_BODY_BYTES": "8 MiB", "SEALDROP_MAX_FILES": "3"}


@dataclass(frozen=True)
class Form:
    body: Multipart
    message_start: int
    message_end: int
    # Per file: (name, content, where its part starts (delimiter), where its data starts)
    files: list[tuple[str, bytes, int, int]]


def make_form(rng: random.Random) -> Form:
    contents = [
        ("permit.jpg", rng.randbytes(150_000)),
        ("video.mp4", rng.randbytes(400_000)),
        ("notes.txt", rng.randbytes(40_000)),
    ]
    body = build_multipart(
        [("message", None, MESSAGE.encode(), None)]
        + [("files", name, data, "application/octet-stream") for name, data in contents],
        boundary=BOUNDARY,
    )
    message_start = len(multipart_head(BOUNDARY, "message", None, None))
    message_end = message_start + len(MESSAGE)
    files = []
    position = message_end + 2  # the CRLF that ends the message's data
    for name, data in contents:
        head = multipart_head(BOUNDARY, "files", name, "application/octet-stream")
        assert body.body[position : position + len(head)] == head
        files.append((name, data, position, position + len(head)))
        position += len(head) + len(data) + 2
    assert body.body[position:] == f"--{BOUNDARY}--\r\n".encode()
    return Form(body, message_start, message_end, files)


def cut_points(form: Form, rng: random.Random) -> list[tuple[str, int]]:
    """50 cuts: (what the cut falls in, how many body bytes are sent)."""
    size = len(form.body.body)
    points = [("first part's headers", rng.randrange(0, form.message_start + 1)) for _ in range(4)]
    points += [
        ("message", rng.randrange(form.message_start + 1, form.message_end)) for _ in range(7)
    ]
    points.append(("message", form.message_start + 1))
    for _, data, part_start, data_start in form.files:
        points.append(("part headers", rng.randrange(part_start, data_start)))
        points.append(("part headers", rng.randrange(part_start, data_start)))
        points.append(("a file's start", data_start))
        points.append(("file data", data_start + 1))
        points.append(("file data", data_start + len(data) - 1))
        points.append(("between files", data_start + len(data) + rng.randrange(0, 3)))
    points += [("file data", rng.randrange(f[3], f[3] + len(f[1]))) for f in form.files * 5]
    closing = len(f"--{BOUNDARY}--\r\n")
    points += [("last bytes", rng.randrange(size - closing - 2, size - 2)) for _ in range(5)]
    assert len(points) == CUTS, len(points)
    return points


def content_arrived(form: Form, sent: int) -> bool | None:
    """Whether a byte of content reached the server's parts: None where it may not have,
    the few bytes after a part's headers that the framing holds back until it knows the
    headers are over (a line break could still begin a delimiter)."""
    if sent <= form.message_start:
        return False
    return True if sent > form.message_start + HELD_BACK else None


def head(server: Any, form: Form, target: str = "/submit") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
        f"Content-Type: {form.body.content_type}\r\n"
        f"Content-Length: {len(form.body.body)}\r\n\r\n"
    ).encode()


def parts(spool_dir: Path) -> set[str]:
    return {name for name in spool_entries(spool_dir) if name.endswith(".part")}


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.005)
    pytest.fail(f"no {what} within {timeout} s")


def cut_upload(
    server: Any, form: Form, sent: int, spool_dir: Path, target: str = "/submit"
) -> Path:
    """Send `sent` bytes of the body, close the socket; return the spool file it would
    be, once the server is done with it."""
    before = parts(spool_dir)
    sock = socket.create_connection((server.host, server.port), timeout=30)
    try:
        sock.sendall(head(server, form, target) + form.body.body[:sent])
        # The route begins the submission (its .part) before it reads the body: once
        # it exists, every byte sent will be read before the close is seen.
        new: set[str] = wait_for(lambda: parts(spool_dir) - before, "new .part file")
        (part,) = new
    finally:
        sock.close()
    wait_for(lambda: part not in parts(spool_dir), f"end of {part}")
    return spool_dir / part.removesuffix(".part")


@dataclass
class Opened:
    message: str
    files: list[tuple[str, bytes]]
    cut: records.UploadCut | None


def open_sealed(path: Path, key: PrivateKey) -> Opened:
    opened = Opened("", [], None)
    with path.open("rb") as handle:
        payload = crypto.open_payload(handle, key)
        for event in records.read_payload(payload, payload.version):
            if isinstance(event, records.MessageText):
                opened.message += event.text
            elif isinstance(event, records.AttachmentStart):
                opened.files.append((event.name, b""))
            elif isinstance(event, records.AttachmentBytes):
                name, content = opened.files[-1]
                opened.files[-1] = (name, content + event.data)
            elif isinstance(event, records.PayloadEnd):
                opened.cut = event.cut
    return opened


def check_prefix(form: Form, sent: int, opened: Opened) -> int:
    """What the file holds is a prefix of what was sent, and not much less than arrived;
    return how many content bytes that arrived it does not hold."""
    assert opened.cut is not None
    assert MESSAGE.startswith(opened.message)
    held = len(opened.message)
    arrived = min(sent, form.message_end) - form.message_start
    for (name, content), (sent_name, data, _, data_start) in zip(
        opened.files, form.files, strict=False
    ):
        assert name == sent_name
        assert hashlib.sha256(content).digest() == hashlib.sha256(data[: len(content)]).digest()
        held += len(content)
        arrived += max(0, min(sent - data_start, len(data)))
    whole_files = (
        opened.files[:-1] if opened.cut.where == records.CUT_IN_ATTACHMENT else opened.files
    )
    for (_, content), (_, data, _, _) in zip(whole_files, form.files, strict=False):
        assert content == data
    assert arrived - HELD_BACK <= held <= arrived
    return arrived - held


def send_complete(server: Any, form: Form, pause: float = 0.0) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=120) as sock:
        sock.sendall(head(server, form))
        body = form.body.body
        for start in range(0, len(body), 16 * 1024):
            sock.sendall(body[start : start + 16 * 1024])
            time.sleep(pause)
        answer = b""
        while piece := sock.recv(65536):
            answer += piece
            if b"</html>" in answer:
                break
    return answer


def test_cut_uploads_keep_exactly_the_prefix_that_arrived(
    start_server: Callable[..., Any],
    spool_dir: Path,
    reviewer_key: PrivateKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    result = Result(
        "cut_uploads",
        load=f"{CUTS} uploads of a 3-file form, cut at random points; complete uploads "
        "between them and one trickled throughout",
        faults="the client closes its socket mid-body",
    )
    server = start_server(env=LIMITS)
    form = make_form(rng)
    started = time.monotonic()

    # A complete upload trickles in the whole time the cuts happen, on its own connection.
    trickled: list[bytes] = []
    trickle = threading.Thread(
        target=lambda: trickled.append(send_complete(server, form, pause=0.25)), daemon=True
    )
    trickle.start()
    wait_for(lambda: parts(spool_dir), "the trickled upload's .part file")

    kept: dict[Path, tuple[str, int]] = {}
    shortfalls: list[int] = []
    complete_answers = []
    for number, (where, sent) in enumerate(cut_points(form, rng)):
        path = cut_upload(server, form, sent, spool_dir)
        expected = content_arrived(form, sent)
        assert path.exists() == expected or expected is None, (seed, where, sent)
        if path.exists():
            shortfalls.append(check_prefix(form, sent, open_sealed(path, reviewer_key)))
            kept[path] = (where, sent)
        if number % 10 == 9:
            complete_answers.append(send_complete(server, form))
    trickle.join(timeout=120)
    elapsed = time.monotonic() - started

    assert not parts(spool_dir)
    complete = [p for p in spool_dir.glob("*.sealed") if p not in kept]
    assert len(complete) == len(complete_answers) + 1
    for answer in [*complete_answers, *trickled]:
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    for path in complete:
        opened = open_sealed(path, reviewer_key)
        assert opened.cut is None
        assert opened.message == MESSAGE
        assert opened.files == [(name, data) for name, data, _, _ in form.files]

    # The reviewer's own command marks every kept cut as PARTIAL, and it is not damage.
    key_file = tmp_path / "reviewer.key"
    key_file.write_text(keys.encode_secret_key(reviewer_key, "pw", keys.KdfCost.MIN))
    monkeypatch.setenv("SEALDROP_PASSPHRASE", "pw")
    out = tmp_path / "opened"
    capsys.readouterr()
    status = cli.main(["open", str(spool_dir), "--key", str(key_file), "--out", str(out)])
    assert status == 0
    folders = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    assert sum(name.endswith("_PARTIAL") for name in folders) == len(kept)
    assert len(folders) == len(kept) + len(complete)
    assert f"of which PARTIAL (cut off)  {len(kept):>5}" in capsys.readouterr().out
    result.acknowledged = len(complete)
    result.stored = result.opened = len(complete) + len(kept)
    result.notes = [
        f"{len(kept)} of {CUTS} cuts kept, as PARTIAL; the {CUTS - len(kept)} others had "
        "no content yet (inside the first part's headers, or its first held-back bytes)",
        f"bytes that arrived but were not kept (held back as a possible delimiter): "
        f"at most {max(shortfalls)}, mean {sum(shortfalls) / len(shortfalls):.1f}",
        f"{len(complete)} complete uploads in the same run arrived whole, unmarked",
    ]
    result.write()
    with capsys.disabled():
        print(f"\nseed {seed}: {CUTS} cuts, {len(kept)} kept, {elapsed:.1f} s")


def test_a_cut_follow_up_is_kept_and_filed_with_its_source(
    start_server: Callable[..., Any],
    codenames_env: dict[str, str],
    spool_dir: Path,
    reviewer_key: PrivateKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_server(env=codenames_env)
    first = build_multipart([("message", None, b"Ivory at the north gate.", None)])
    answer = send_complete(server, Form(first, 0, 0, []))
    match = re.search(rb'<p class="codename"[^>]*>([^<]+)</p>', answer)
    assert match, answer[:300]
    words = html.unescape(match.group(1).decode())

    scan = random.Random(5).randbytes(300_000)
    follow = build_multipart(
        [
            ("codename", None, words.encode(), None),
            ("message", None, b"The bill of lading, scanned.", None),
            ("files", "bill.pdf", scan, "application/pdf"),
        ]
    )
    form = Form(follow, 0, 0, [])
    sent = follow.body.index(scan) + 123_456
    path = cut_upload(server, form, sent, spool_dir, target="/follow-up")
    opened = open_sealed(path, reviewer_key)
    assert opened.cut == records.UploadCut(records.CUT_IN_ATTACHMENT, 0, len(opened.files[0][1]))
    assert opened.files[0][1] == scan[: len(opened.files[0][1])]
    assert 123_456 - HELD_BACK <= len(opened.files[0][1]) <= 123_456

    key_file = tmp_path / "reviewer.key"
    key_file.write_text(keys.encode_secret_key(reviewer_key, "pw", keys.KdfCost.MIN))
    monkeypatch.setenv("SEALDROP_PASSPHRASE", "pw")
    out = tmp_path / "opened"
    assert cli.main(["open", str(spool_dir), "--key", str(key_file), "--out", str(out)]) == 0
    (source,) = [p for p in out.iterdir() if p.name.startswith(sources.SOURCE_PREFIX)]
    order = sources.read_info(source).submissions
    assert len(order) == 2 and order[1].endswith("_PARTIAL")
    manifest = json.loads((source / order[1] / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "follow-up"
    assert manifest["partial"]["cut_in"] == "attachment"
    assert (source / order[1] / "files" / "bill.pdf.partial").read_bytes() == opened.files[0][1]


def source_records(path: Path, key: PrivateKey) -> list[records.SourceIdentity]:
    with path.open("rb") as handle:
        payload = crypto.open_payload(handle, key)
        events = list(records.read_payload(payload, payload.version))
    return [event for event in events if isinstance(event, records.SourceIdentity)]


def test_a_first_submission_cut_before_its_codename_costs_no_derivation(
    start_server: Callable[..., Any],
    codenames_env: dict[str, str],
    spool_dir: Path,
    reviewer_key: PrivateKey,
) -> None:
    # A client gone during the read-ahead (web.derivations) never sees a codename: what
    # it sent is kept, cut, with no reply key, and no Argon2id ran for it. Held bodies
    # an attacker drops at once would otherwise each take a derivation.
    server = start_server(env=codenames_env)
    photo = random.Random(7).randbytes(200_000)
    form = Form(message_and_photo(photo), 0, 0, [])
    sent = form.body.body.index(photo) + 20_000  # well inside the first 64 KiB
    # No .part exists before the read-ahead ends: every byte sent before the close is
    # read before the server sees it.
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(head(server, form) + form.body.body[:sent])
    (path,) = wait_for(lambda: list(spool_dir.glob("*.sealed")), "kept cut upload")
    opened = open_sealed(path, reviewer_key)
    assert opened.cut is not None and opened.files[0][1] == photo[: len(opened.files[0][1])]
    assert source_records(path, reviewer_key) == []

    # The same form sent whole is filed under the codename its page shows.
    answer = send_complete(server, form)
    assert re.search(rb'<p class="codename"', answer), answer[:300]
    (complete,) = [p for p in spool_dir.glob("*.sealed") if p != path]
    assert len(source_records(complete, reviewer_key)) == 1


def test_a_whole_form_whose_connection_ends_early_still_gets_its_codename(
    start_server: Callable[..., Any],
    codenames_env: dict[str, str],
    spool_dir: Path,
    reviewer_key: PrivateKey,
) -> None:
    # The closing delimiter came, then the connection's sending side ended before the
    # declared length (a proxy, a stalling circuit tripping the floor after the last
    # piece): the form is whole, so the source is answered with a codename as usual.
    server = start_server(env=codenames_env)
    form = message_and_photo(random.Random(8).randbytes(20_000))
    head = (
        f"POST /submit HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
        f"Content-Type: {form.content_type}\r\nContent-Length: {len(form.body) + 2}\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(head + form.body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while piece := sock.recv(65536):
            answer += piece
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert re.search(rb'<p class="codename"', answer), answer[:300]
    (path,) = list(spool_dir.glob("*.sealed"))
    assert open_sealed(path, reviewer_key).cut is None
    assert len(source_records(path, reviewer_key)) == 1


def message_and_photo(photo: bytes) -> Multipart:
    return build_multipart(
        [
            ("message", None, b"Rhino horn, in the spare tyre.", None),
            ("files", "p.jpg", photo, None),
        ]
    )


def test_stopping_the_service_keeps_an_upload_in_progress_as_cut(
    start_server: Callable[..., Any], spool_dir: Path, reviewer_key: PrivateKey
) -> None:
    """SIGTERM to the service while an upload is arriving: it is given
    stop_grace_seconds to finish, then ended, and what had arrived is sealed and kept,
    marked cut (server.worker). Before, the arbiter killed the worker after its
    graceful_timeout and the upload was lost, its .part removed at the next start.
    Meanwhile the service takes no new connection."""
    grace = 2
    server = start_server(env={**LIMITS, "SEALDROP_STOP_GRACE_SECONDS": str(grace)})
    form = make_form(random.Random(7))
    sent = form.files[0][3] + len(form.files[0][1]) // 2  # half way through the first file
    sock = socket.create_connection((server.host, server.port), timeout=60)
    try:
        sock.sendall(head(server, form) + form.body.body[:sent])
        (part,) = wait_for(lambda: parts(spool_dir), "the upload's .part file")
        time.sleep(0.5)  # what was sent has been read: the connection stays open, silent
        stopping = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        time.sleep(grace / 2)
        with pytest.raises(OSError):  # no longer listening
            socket.create_connection((server.host, server.port), timeout=2).close()
        assert server.process.wait(timeout=60) == 0
        stopped_after = time.monotonic() - stopping
    finally:
        sock.close()

    assert grace <= stopped_after < grace + 10, stopped_after
    assert not parts(spool_dir)
    kept = spool_dir / part.removesuffix(".part")
    shortfall = check_prefix(form, sent, open_sealed(kept, reviewer_key))
    assert shortfall <= HELD_BACK
