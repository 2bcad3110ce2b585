"""What a seized server gives away: the real service and its own tor, used by sources and
attackers, stopped, and every byte it left inventoried (tests/seizure.py).

`sealdrop serve` runs as in production, starting its own tor with its data under the
state folder; a wrapper placed first on PATH adds ``DisableNetwork 1`` (and a dummy
authority) to tor's command line, so that tor never contacts any relay. Sources and
attackers talk to gunicorn's loopback port directly.

Two runs, as an operator would see them: the first takes first submissions seconds
apart, follow-ups, refused, cut and killed uploads and a codename flood; between the
runs the operator copies replies in (one as another user, mode 644); the second run's
source reads replies and deletes one while the disk is "full" (a reserve larger than
the disk), so uploads are refused. Then the inventory must show only what the issue
allows: how many submissions, their padded sizes, the day, the onion address; no
time from inside the traffic, no arrival order, no plaintext, no codename, and no
line of output written while the traffic ran.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from sealdrop import codename, replies, signing
from sealdrop.connections import WORKERS
from sealdrop.keys import KdfCost, encode_public_key
from sealdrop.spool_names import POOL_DIR
from sealdrop.storage.counters import REFUSED_FULL, WORKER_DIED, read_counts
from sealdrop.storage.spool import utc_day
from sealdrop.tests.canaries import canary, find_canaries, found_in
from sealdrop.tests.procs import child_pids
from sealdrop.tests.reliability import (
    HOST,
    HttpResponse,
    exchange,
    exchange_while_sending,
    multipart,
    open_sealed,
    request_head,
)
from sealdrop.tests.seizure import (
    Item,
    inventory,
    is_midnight,
    utc,
    write_results,
)
from sealdrop.tests.tor_local import OFFLINE_TORRC, tor_binary
from sealdrop.tests.tor_network import TorNetwork, http_request

pytestmark = [
    pytest.mark.tor,
    pytest.mark.skipif(tor_binary() is None, reason="needs the Debian tor package"),
    # stem 1.8.2 calls Thread.setDaemon(), deprecated since Python 3.10.
    pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning"),
]

FIRST_SUBMISSIONS = 6
SPACING = 1.0  # seconds between two first submissions
# Costly enough that a flood finds the one derivation slot taken and the one place in
# the queue too (SEALDROP_CODENAME_QUEUE_LENGTH=1): some entries get the 429 page.
KDF = KdfCost(2, 16 * 1024 * 1024)
CODENAME_RE = re.compile(rb'<p class="codename"[^>]*>([^<]+)</p>')
ONION_RE = re.compile(rb"^http://([a-z2-7]{56})\.onion/$", re.M)
LOCAL_RE = re.compile(rb"^http://127\.0\.0\.1:(\d+)/$", re.M)
SHM = Path("/dev/shm")


class Server:
    """`sealdrop serve` with its own tor, output kept as journald would keep it."""

    def __init__(self, root: Path, env: dict[str, str], run: int) -> None:
        self.stdout = root / "output" / "stdout"
        self.stderr = root / "output" / "stderr"
        self.stdout.parent.mkdir(exist_ok=True)
        with self.stdout.open("ab") as out, self.stderr.open("ab") as err:
            self._start = self.stdout.stat().st_size
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sealdrop", "serve"],
                env=env,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.port = 0
        self.onion = ""
        self.run = run

    def wait_for(self, pattern: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.stdout.read_bytes()[self._start :], re.M):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"no {pattern!r} from serve:\n{self.output().decode(errors='replace')}")
            time.sleep(0.2)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.stdout.read_bytes()[self._start :]
            local, onion = LOCAL_RE.search(out), ONION_RE.search(out)
            if local and onion and len(child_pids(self.process.pid)) >= 1 + WORKERS:  # + tor
                self.port, self.onion = int(local.group(1)), onion.group(1).decode()
                return
            if self.process.poll() is not None:
                pytest.fail(f"serve exited:\n{self.output().decode(errors='replace')}")
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"serve was not ready:\n{self.output().decode(errors='replace')}")

    def output(self) -> bytes:
        return self.stdout.read_bytes() + self.stderr.read_bytes()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Audit:
    """The service's folders, the requests made, and the moments traffic ran."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.key = PrivateKey.generate()
        self.spool, self.replies, self.state, self.tmp = (
            root / name for name in ("spool", "replies", "state", "tmp")
        )
        for folder in (self.spool, self.replies, self.state, self.tmp):
            folder.mkdir(mode=0o700)
        self.public_key_file = root / "reviewer.pub"
        self.public_key_file.write_text(encode_public_key(self.key.public_key) + "\n")
        self.signing_key = SigningKey.generate()
        self.signing_public_file = root / "reply-signing.pub"
        self.signing_public_file.write_text(
            signing.encode_signing_public_key(self.signing_key.verify_key) + "\n"
        )
        self.bin = root / "bin"
        self.bin.mkdir()
        self._tor_wrapper()
        self.canaries: list[str] = []
        self.codenames: list[str] = []
        self.receipts: list[str] = []
        self.arrivals: list[tuple[int, int]] = []  # (ns before the request, ns after)
        self.traffic: list[tuple[int, int]] = []  # (start, end) of each run's traffic
        self.during_traffic: list[str] = []  # what the service printed while traffic ran
        self.statuses: dict[str, list[int]] = {}
        self.runs: list[tuple[int, int]] = []  # (ns before serve started, ns after it stopped)
        self.pool_inodes: set[int] = set()
        self.pool_made_before: int = 0

    def _tor_wrapper(self, torrc: Sequence[tuple[str, str]] = OFFLINE_TORRC) -> None:
        # tor reads options after -f from its command line too: these keep it offline, or
        # inside the private Tor network.
        binary = tor_binary()
        assert binary is not None
        options = " ".join(f"--{key} '{value}'" for key, value in torrc)
        wrapper = self.bin / "tor"
        wrapper.write_text(f'#!/bin/sh\nexec {binary} "$@" {options}\n')
        wrapper.chmod(0o755)

    def env(self, **settings: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP_")}
        env.update(
            {
                "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
                "TMPDIR": str(self.tmp),
                "SEALDROP_SPOOL_DIR": str(self.spool),
                "SEALDROP_PUBLIC_KEY_FILE": str(self.public_key_file),
                "SEALDROP_STATE_DIR": str(self.state),
                "SEALDROP_REPLIES_DIR": str(self.replies),
                "SEALDROP_REPLY_SIGNING_KEY_FILE": str(self.signing_public_file),
                "SEALDROP_LISTEN": f"{HOST}:0",
                "SEALDROP_RESERVE_BYTES": "0",
                "SEALDROP_MAX_BODY_BYTES": str(256 * 1024),
                "SEALDROP_MAX_FILES": "2",
                "SEALDROP_CODENAME_KDF_MEMORY": str(KDF.memlimit),
                "SEALDROP_CODENAME_KDF_PASSES": str(KDF.opslimit),
                "SEALDROP_CODENAME_MAX_CONCURRENT": "1",
                "SEALDROP_CODENAME_QUEUE_LENGTH": "1",
                # No periodic sweep inside the test: the one at stop must do it all.
                "SEALDROP_SWEEP_INTERVAL_SECONDS": "3600",
            }
        )
        env.update(settings)
        return env

    def note(self, what: str, response: HttpResponse | None) -> None:
        self.statuses.setdefault(what, []).append(0 if response is None else response.status_code)

    @contextlib.contextmanager
    def traffic_window(self, server: Server) -> Iterator[None]:
        before = server.output()
        start = time.time_ns()
        yield
        self.traffic.append((start, time.time_ns()))
        time.sleep(0.5)  # anything the traffic made the service print has arrived
        self.during_traffic.append(server.output()[len(before) :].decode(errors="replace"))

    def marker(self) -> str:
        value = canary()
        self.canaries.append(value)
        return value


def post(port: int, path: str, body: bytes, ctype: str, timeout: float = 30.0) -> HttpResponse:
    head = request_head(ctype, len(body)).replace(b"POST /submit ", f"POST {path} ".encode())
    return exchange(port, head + body, timeout=timeout)


def form(port: int, path: str, fields: dict[str, str]) -> HttpResponse:
    from urllib.parse import urlencode

    body = urlencode(fields).encode()
    return post(port, path, body, "application/x-www-form-urlencoded")


def follow_up_body(code: str, message: str) -> tuple[bytes, str]:
    body, ctype = multipart(message)
    boundary = ctype.split("=", 1)[1]
    first = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="codename"\r\n\r\n{code}\r\n'
    ).encode()
    return first + body, ctype


def first_run(audit: Audit, server: Server) -> None:
    port = server.port
    with audit.traffic_window(server):
        # First submissions, seconds apart: none may be datable or ordered afterwards.
        for index in range(FIRST_SUBMISSIONS):
            if index:
                time.sleep(SPACING)
            marker = audit.marker()
            body, ctype = multipart(
                f"{marker} report {index}", [(f"{marker}.jpg", os.urandom(3000))]
            )
            before = time.time_ns()
            response = post(port, "/submit", body, ctype)
            audit.arrivals.append((before, time.time_ns()))
            audit.note("first submission", response)
            assert response.status_code == 200 and response.receipt, response.body[:300]
            audit.receipts.append(response.receipt)
            match = CODENAME_RE.search(response.body)
            assert match, "the receipt page shows no codename"
            audit.codenames.append(match.group(1).decode())
        # Follow-ups from two of those sources.
        for code in audit.codenames[:2]:
            body, ctype = follow_up_body(code, f"{audit.marker()} more")
            response = post(port, "/follow-up", body, ctype)
            audit.note("follow-up", response)
            assert response.status_code == 200 and response.receipt
            audit.receipts.append(response.receipt)
        # Refused: too large (declared), too many files, broken framing, no content.
        marker = audit.marker()
        big, ctype = multipart(marker, [(marker, b"x" * 300 * 1024)])
        audit.note("refused: too large", exchange(port, request_head(ctype, len(big)) + big))
        many, ctype = multipart(marker, [(f"{marker}{i}", b"y") for i in range(3)])
        audit.note("refused: too many files", post(port, "/submit", many, ctype))
        broken, ctype = multipart(marker, [(marker, b"z" * 100)])
        audit.note(
            "refused: broken framing",
            exchange(
                port, request_head(ctype, len(broken) - 40) + broken[:-40], shutdown_write=True
            ),
        )
        empty, ctype = multipart("")
        audit.note("refused: empty", post(port, "/submit", empty, ctype))
        # Cut: the client goes away in the middle of a file.
        body, ctype = multipart(audit.marker(), [(audit.marker(), os.urandom(100 * 1024))])
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(request_head(ctype, len(body)) + body[: len(body) // 2])
            time.sleep(0.3)
        audit.note("cut upload", None)
        # Killed: every worker dies while an upload trickles in.
        kill_during_upload(audit, server)
        # A codename flood: bounded, concurrent, valid and invalid codenames.
        flood(audit, port)


def kill_during_upload(audit: Audit, server: Server) -> None:
    body, ctype = multipart(audit.marker(), [(audit.marker(), os.urandom(120 * 1024))])
    payload = request_head(ctype, len(body)) + body
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        sock.sendall(payload[: len(payload) // 2])
        time.sleep(0.3)
        workers = [pid for pid in child_pids(server.process.pid) if _is_worker(pid)]
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            sock.sendall(payload[len(payload) // 2 :])
    audit.note("killed upload", None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if (
                exchange(
                    server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                ).status_code
                == 200
            ):
                return
        time.sleep(0.2)
    pytest.fail("the workers did not come back after being killed")


def _is_worker(pid: int) -> bool:
    try:
        return b"tor" not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False


def flood(audit: Audit, port: int, requests: int = 24, threads: int = 8) -> None:
    codes = [codename.new_codename() for _ in range(requests // 2)]
    codes += [secrets.token_hex(8) for _ in range(requests - len(codes))]
    lock = threading.Lock()

    def send(code: str) -> None:
        response = None
        with contextlib.suppress(OSError, Exception):
            response = form(port, "/replies", {"codename": code})
        with lock:
            audit.note("codename flood", response)

    pending = list(codes)
    workers = []
    for _ in range(threads):

        def run() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    code = pending.pop()
                send(code)

        worker = threading.Thread(target=run)
        worker.start()
        workers.append(worker)
    for worker in workers:
        worker.join(timeout=60)


def copy_reply(audit: Audit, code: str, text: str, *, foreign: bool) -> Path:
    """What the operator does: a reply made offline, copied into the replies folder
    (as the service's user, or as another user with mode 644 like a root `cp`)."""
    salt = codename.load_installation_salt(audit.state)
    keys = codename.derive(code, salt, KDF)
    sealed = replies.seal_reply(text, keys.reply_public_key, utc_day(), replies.new_reference())
    data = replies.sign_reply(sealed, keys.mailbox_id, audit.signing_key)
    path = audit.replies / replies.reply_file_name(keys.mailbox_id)
    path.write_bytes(data)
    if foreign:
        os.chown(path, 65534, 65534)
        path.chmod(0o644)
    return path


def second_run(audit: Audit, server: Server, late_foreign: Path) -> None:
    port = server.port
    code = audit.codenames[0]
    late_atime = os.lstat(late_foreign).st_atime_ns
    with audit.traffic_window(server):
        page = form(port, "/replies", {"codename": code})
        audit.note("replies read", page)
        assert page.status_code == 200
        shown = re.findall(rb'name="reply" value="([0-9a-f]{32})"', page.body)
        # The reply copied in as another user before this start was adopted by the
        # start-up sweep. The one copied in since is read only if that needs no access
        # time (O_NOATIME: the owner, or root); otherwise the next sweep adopts it.
        assert len(shown) == (3 if os.geteuid() == 0 else 2), page.body[:500]
        assert os.lstat(late_foreign).st_atime_ns == late_atime, "a visit set an access time"
        deleted = form(port, "/replies/delete", {"codename": code, "reply": shown[0].decode()})
        audit.note("reply deleted", deleted)
        assert deleted.status_code == 200
        # The disk is "full" (a reserve larger than any disk): every upload is refused.
        for _ in range(3):
            body, ctype = multipart(audit.marker(), [(audit.marker(), os.urandom(2000))])
            response = exchange_while_sending(port, request_head(ctype, len(body)) + body)
            audit.note("refused: below the reserve", response)
            assert response.status_code == 507


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[Audit]:
    # tor's control socket path must stay short.
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"sz-{secrets.token_hex(4)}"
    root.mkdir(mode=0o700)
    try:
        yield Audit(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_seized_server_gives_away_only_counts_sizes_days_and_the_address(audit: Audit) -> None:
    started = time.monotonic()
    shm_before = set(os.listdir(SHM)) if SHM.is_dir() else set()
    run_started = time.time_ns()
    server = Server(audit.root, audit.env(), run=1)
    try:
        server.wait_ready()
        pool = audit.spool / POOL_DIR
        audit.pool_inodes = {os.lstat(pool / name).st_ino for name in os.listdir(pool)}
        audit.pool_made_before = time.time_ns()
        first_run(audit, server)
    finally:
        server.stop()
    audit.runs.append((run_started, time.time_ns()))
    assert server.process.returncode == 0, server.output().decode(errors="replace")

    # Between the runs the operator copies replies in; the second run's start adopts
    # the one copied as another user.
    copy_reply(audit, audit.codenames[0], f"{audit.marker()} reply one", foreign=False)
    copy_reply(audit, audit.codenames[0], f"{audit.marker()} reply two", foreign=True)
    copy_reply(audit, audit.codenames[1], f"{audit.marker()} reply three", foreign=False)
    run_started = time.time_ns()
    server = Server(audit.root, audit.env(SEALDROP_RESERVE_BYTES="1024 TiB"), run=2)
    try:
        server.wait_ready()
        late = copy_reply(audit, audit.codenames[0], f"{audit.marker()} reply four", foreign=True)
        second_run(audit, server, late)
    finally:
        server.stop()
    audit.runs.append((run_started, time.time_ns()))
    assert server.process.returncode == 0, server.output().decode(errors="replace")
    onion = server.onion

    shm_after = set(os.listdir(SHM)) if SHM.is_dir() else set()
    items = inventory(
        audit.root, [audit.spool, audit.replies, audit.state, audit.tmp, audit.root / "output"]
    )
    findings = check(audit, items, onion, sorted(shm_after - shm_before))
    write_results(
        {
            "seconds": round(time.monotonic() - started, 1),
            "submissions": len(audit.receipts),
            "arrivals": audit.arrivals,
            "runs": audit.runs,
            "traffic": audit.traffic,
            "statuses": audit.statuses,
            "items": [asdict(item) for item in items],
            "findings": findings,
            "tor_log": (audit.state / "tor" / "tor.log").read_text(errors="replace"),
            "output": server.output().decode(errors="replace"),
        }
    )


_WRITTEN_TIME = re.compile(
    r"(?P<iso>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?)"
    r"|(?P<tor>(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d\d \d\d:\d\d:\d\d\.\d{3})"
)


def written_times(text: str) -> list[int]:
    """Every time of day written in `text` (ISO, gunicorn's or tor's form), in ns UTC."""
    found = []
    year = time.gmtime().tm_year
    for match in _WRITTEN_TIME.finditer(text):
        if match.group("iso"):
            value = datetime.fromisoformat(match.group("iso").replace(" ", "T"))
        else:
            value = datetime.strptime(f"{year} {match.group('tor')}", "%Y %b %d %H:%M:%S.%f")
        found.append(int(value.replace(tzinfo=UTC).timestamp() * 10**9))
    return found


def pairs_in_arrival_order(values: list[int]) -> list[int]:
    """[pairs whose values rise with arrival, pairs that fall, ties]: a time or inode
    that gave the order would put every pair in the first or the second count."""
    rising = falling = ties = 0
    for i, earlier in enumerate(values):
        for later in values[i + 1 :]:
            if later > earlier:
                rising += 1
            elif later < earlier:
                falling += 1
            else:
                ties += 1
    return [rising, falling, ties]


def check(audit: Audit, items: list[Item], onion: str, new_shm: list[str]) -> dict[str, object]:
    by_kind: dict[str, list[Item]] = {}
    for item in items:
        by_kind.setdefault(item.kind, []).append(item)
    assert "unexplained" not in by_kind, [i.path for i in by_kind["unexplained"]]

    # Every acknowledged submission is there and opens (a cut one may be kept, partial).
    sealed = by_kind["submission"]
    assert len(sealed) >= len(audit.receipts)
    receipt_of = {
        item.path: open_sealed(audit.root / item.path, audit.key).receipt for item in sealed
    }
    assert set(audit.receipts) <= set(receipt_of.values())
    # The first submissions in arrival order, as a seizure sees them.
    first = [
        next(item for item in sealed if receipt_of[item.path] == receipt)
        for receipt in audit.receipts[:FIRST_SUBMISSIONS]
    ]

    # No arrival time, no arrival order: every spool file came from the pool made at
    # start-up, before the first upload (birth time and inode say nothing of arrival),
    # its access and modification times are midnight, and its change time is the last
    # sweep's, after all traffic.
    last_traffic = audit.traffic[-1][1]
    for item in sealed:
        assert item.inode in audit.pool_inodes, f"{item.path} was not taken from the pool"
        assert item.btime is None or item.btime < audit.pool_made_before, item.path
        assert is_midnight(item.atime) and is_midnight(item.mtime), item.path
        assert item.ctime > last_traffic, f"{item.path} keeps a change time from the traffic"
    swept = [
        i.ctime
        for i in items
        if i.kind in {"submission", "reply", "spool folder", "replies folder"}
    ]
    assert max(swept) - min(swept) < 2 * 10**9, "the sweep's change times are spread out"

    # No line of output while the traffic ran.
    assert audit.during_traffic == [""] * len(audit.traffic), audit.during_traffic

    # No time at all from inside the traffic, anywhere.
    inside = [
        (item.path, name, utc(value))
        for item in items
        for name, value in item.times().items()
        if any(start <= value <= end for start, end in audit.traffic)
    ]
    assert inside == [], inside

    # Folders, replies and counters: day-level times only.
    for item in by_kind["reply"] + by_kind["replies folder"] + by_kind["spool folder"]:
        assert is_midnight(item.mtime) and is_midnight(item.atime), item.path
    counts = read_counts(audit.state)
    # Every worker was killed once (kill_during_upload).
    assert counts == {utc_day(): {REFUSED_FULL: 3, WORKER_DIED: WORKERS}}, counts

    output = (audit.root / "output" / "stdout").read_bytes() + (
        audit.root / "output" / "stderr"
    ).read_bytes()

    # No plaintext, no codename anywhere: files, output, new shared memory.
    roots = [audit.spool, audit.replies, audit.state, audit.tmp, audit.root / "output"]
    roots += [SHM / name for name in new_shm]
    assert find_canaries(roots, audit.canaries) == []
    assert find_canaries(roots, audit.codenames) == []
    assert found_in(output, audit.codenames) == []

    # No time written inside any file or the output falls inside the traffic either.
    texts = [
        (item.path, (audit.root / item.path).read_bytes())
        for item in items
        if item.content in ("text", "json")
    ]
    written = [
        (where, stamp)
        for where, data in [*texts, ("output", output)]
        for stamp in written_times(data.decode(errors="replace"))
    ]
    assert written, "no written time found at all: the scan is broken"  # tor's start-up lines
    inside_text = [
        (where, utc(stamp))
        for where, stamp in written
        if any(start <= stamp <= end for start, end in audit.traffic)
    ]
    assert inside_text == [], inside_text

    # tor's log: scrubbed, no heartbeat, and after its first lines only the day.
    log = (audit.state / "tor" / "tor.log").read_text(errors="replace").splitlines()
    assert not any("Heartbeat" in line or "INTRODUCE2" in line for line in log)
    stamps = [line[:19] for line in log if re.match(r"\w{3} \d\d \d\d:\d\d:\d\d\.\d{3}", line)]
    first_day = next((n for n, stamp in enumerate(stamps) if stamp.endswith("00:00:00.000")), None)
    assert first_day is not None, "tor's log times were not rounded to the day"
    assert all(stamp.endswith("00:00:00.000") for stamp in stamps[first_day:])

    return {
        "arrival_order": {
            name: pairs_in_arrival_order([getattr(item, name) or 0 for item in first])
            for name in ("inode", "btime", "ctime", "atime", "mtime")
        },
        "onion": onion,
        "written_times": len(written),
        "sealed": len(sealed),
        "acknowledged": len(audit.receipts),
        "output_lines": output.decode(errors="replace").splitlines(),
        "new_shared_memory": new_shm,
        "counts": counts,
    }


@pytest.mark.slow
def test_tor_writes_nothing_when_sources_visit_through_tor(
    audit: Audit, tor_network: TorNetwork
) -> None:
    """Real visits through the private Tor network: introductions, rendezvous, streams.
    tor's log must not grow while sources visit, and must say nothing finer than the day
    after its start-up lines."""
    audit._tor_wrapper(
        [("TestingTorNetwork", "1")]
        + [("DirAuthority", line) for line in tor_network.dir_authority_lines]
    )
    server = Server(audit.root, audit.env(), run=1)
    log = audit.state / "tor" / "tor.log"
    try:
        server.wait_ready(timeout=90)
        server.wait_for(rb"^sealdrop serve: onion service published", timeout=120)
        time.sleep(1.0)
        before = log.read_text(errors="replace")
        host = f"{server.onion}.onion"
        marker = audit.marker()
        body, ctype = multipart(f"{marker} through tor", [(f"{marker}.txt", b"seen at the gate")])
        requests = [
            f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode(),
            request_head(ctype, len(body)).replace(HOST.encode(), host.encode()) + body,
            f"GET /come-back HTTP/1.0\r\nHost: {host}\r\n\r\n".encode(),
        ]
        for raw in requests:
            answer = http_request(tor_network.socks_port, host, raw, deadline=60)
            assert answer.split(b"\r\n", 1)[0].endswith(b"200 OK"), answer[:200]
        time.sleep(1.0)
        during = log.read_text(errors="replace")[len(before) :]
    finally:
        server.stop()
    assert during == "", f"tor logged while sources visited:\n{during}"
    lines = log.read_text(errors="replace").splitlines()
    assert not any("Heartbeat" in line for line in lines)
    stamps = [line[:19] for line in lines if re.match(r"\w{3} \d\d \d\d:\d\d:\d\d\.\d{3}", line)]
    first_day = next(n for n, stamp in enumerate(stamps) if stamp.endswith("00:00:00.000"))
    assert all(stamp.endswith("00:00:00.000") for stamp in stamps[first_day:])
    assert find_canaries([audit.state, audit.tmp, audit.root / "output"], [marker]) == []


def test_a_server_seized_while_running_shows_only_what_came_since_the_last_sweep(
    audit: Audit,
) -> None:
    """The exposure window: power cut (SIGKILL of everything), no sweep at stop."""
    interval = 2
    server = Server(audit.root, audit.env(SEALDROP_SWEEP_INTERVAL_SECONDS=str(interval)), run=1)
    try:
        server.wait_ready()
        for index in range(3):
            body, ctype = multipart(f"{audit.marker()} older {index}")
            assert post(server.port, "/submit", body, ctype).status_code == 200
        older_end = time.time_ns()
        older = sorted(audit.spool.glob("*.sealed"))
        time.sleep(interval * 2 + 0.5)  # at least one sweep runs in between
        body, ctype = multipart(f"{audit.marker()} newest")
        before = time.time_ns()
        assert post(server.port, "/submit", body, ctype).status_code == 200
        after = time.time_ns()
        [newest] = set(audit.spool.glob("*.sealed")) - set(older)
    finally:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
    items = {item.path: item for item in inventory(audit.root, [audit.spool])}
    swept = [items[path.relative_to(audit.root).as_posix()].ctime for path in older]
    # The older files' change times are a sweep's, after all three arrived, and shared.
    assert min(swept) > older_end and max(swept) - min(swept) < 10**9
    # Only the upload since the last sweep keeps its moment: the documented window.
    kept = items[newest.relative_to(audit.root).as_posix()].ctime
    assert before - 20_000_000 <= kept <= after
