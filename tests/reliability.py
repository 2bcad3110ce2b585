"""Shared helpers for the reliability tests: the real gunicorn server, a raw HTTP client,
RSS sampling and the JSON results that scripts/reliability_report renders.

The server runs in its own process group (so a test can SIGKILL the master and then
every orphaned worker), on 127.0.0.1 only, with its spool, log and temporary folder
inside one service folder the test owns: everything the service could write is there
to be scanned afterwards.

The server is the real command, ``sealdrop serve --local-only``, with its settings in
``SEALDROP_*`` variables: the production gunicorn configuration, unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self

from nacl.public import PrivateKey

from sealdrop.keys import encode_public_key
from sealdrop.tests.conftest import open_submission
from sealdrop.tests.procs import child_pids
from sealdrop.tests.serving import sealdrop_command, serve_env

RESULTS_ENV = "SEALDROP_RELIABILITY_OUT"
HOST = "127.0.0.1"
RECEIPT_RE = re.compile(rb'<p class="receipt-number"[^>]*>(\d{4}-\d{4}-\d{4}-\d{4})</p>')

# --- results ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    """One row of docs/RELIABILITY.md. Counts are what the test did and saw, not targets."""

    test: str
    load: str = ""
    faults: str = ""
    bad_inputs: int = 0
    acknowledged: int = 0
    stored: int = 0
    opened: int = 0
    lost: int = 0
    peak_rss_mib: float | None = None
    seconds: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)
    _started: float = dataclasses.field(default_factory=time.monotonic, repr=False)

    def __repr__(self) -> str:
        return f"Result({self.test!r})"

    def write(self) -> None:
        """Write this row as JSON into $SEALDROP_RELIABILITY_OUT, if set."""
        self.seconds = round(time.monotonic() - self._started, 1)
        out = os.environ.get(RESULTS_ENV)
        if not out:
            return
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in dataclasses.asdict(self).items() if not k.startswith("_")}
        (folder / f"{self.test}.json").write_text(json.dumps(data, indent=1) + "\n")


# --- HTTP over a raw socket -------------------------------------------------------------


@dataclasses.dataclass
class HttpResponse:
    status_code: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def receipt(self) -> str | None:
        match = RECEIPT_RE.search(self.body)
        return match.group(1).decode("ascii") if self.status_code == 200 and match else None


class NoResponse(Exception):
    """The server closed the connection or timed out before a whole response arrived."""


def connect(port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket, deadline: float) -> HttpResponse:
    """Read one response from `sock` (sent with Connection: close) until `deadline`."""
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NoResponse("timed out")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise NoResponse("timed out") from None
        except OSError as err:
            if data:
                break
            raise NoResponse(f"connection failed: {err}") from None
        if not chunk:
            break
        data += chunk
        parsed = _parse(bytes(data))
        if parsed is not None:
            return parsed
    parsed = _parse(bytes(data), complete=True)
    if parsed is None:
        raise NoResponse(f"incomplete response ({len(data)} bytes)")
    return parsed


def _parse(data: bytes, complete: bool = False) -> HttpResponse | None:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise NoResponse(f"not an HTTP response: {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    response = HttpResponse(int(parts[1]), headers, body)
    length = response.header("Content-Length")
    if length is not None and length.isdigit():
        if len(body) >= int(length):
            response.body = body[: int(length)]
            return response
        return None
    return response if complete else None


def request_head(
    content_type: str | None, content_length: int | None, *, chunked: bool = False
) -> bytes:
    lines = ["POST /submit HTTP/1.1", f"Host: {HOST}", "Connection: close"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def exchange(
    port: int,
    payload: bytes,
    *,
    timeout: float = 20.0,
    pace: tuple[int, float] | None = None,
    shutdown_write: bool = False,
) -> HttpResponse:
    """Send `payload` (a whole raw request) and read the answer within `timeout` seconds.

    `pace` = (piece size, pause) trickles the bytes. A reset while sending is ignored:
    the server may answer early (a 413 before the body) and close; the answer is read.
    """
    deadline = time.monotonic() + timeout
    with connect(port, timeout) as sock:
        try:
            if pace is None:
                sock.sendall(payload)
            else:
                size, pause = pace
                for start in range(0, len(payload), size):
                    sock.sendall(payload[start : start + size])
                    time.sleep(pause)
            if shutdown_write:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # answered early and closed; the answer may still be readable
        return read_response(sock, deadline)


def exchange_while_sending(port: int, payload: bytes, timeout: float = 30.0) -> HttpResponse:
    """Send `payload` from a thread while reading, so an early answer (a refusal in the
    middle of a large body) is read as soon as it comes, before the server closes."""
    deadline = time.monotonic() + timeout
    with connect(port, timeout) as sock:

        def sender() -> None:
            with contextlib.suppress(OSError):
                sock.sendall(payload)

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        try:
            return read_response(sock, deadline)
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            thread.join(timeout=5)


def get(port: int, path: str = "/", timeout: float = 10.0) -> HttpResponse:
    payload = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    return exchange(port, payload, timeout=timeout)


def post_multipart(
    port: int, body: bytes, content_type: str, timeout: float = 30.0
) -> HttpResponse:
    return exchange(port, request_head(content_type, len(body)) + body, timeout=timeout)


# --- responses must never reveal anything -----------------------------------------------

_REVEALING = [
    re.compile(rb"Traceback|File \"|line \d+, in ", re.I),
    re.compile(rb"(/work/|/tmp/|/home/|/usr/|/var/|/root/|site-packages|\.py\b)"),
    re.compile(rb"gunicorn|werkzeug|flask|python|jinja|pynacl|sealdrop/\d", re.I),
]


def revealing(response: HttpResponse) -> list[str]:
    """What in a response's headers or body names a path, a stack trace or a version."""
    found = []
    texts = [response.body] + [f"{k}: {v}".encode("latin-1") for k, v in response.headers]
    versions = _version_strings()
    for text in texts:
        for pattern in _REVEALING:
            match = pattern.search(text)
            if match:
                found.append(match.group(0).decode("latin-1"))
        for version in versions:
            if version in text:
                found.append(version.decode())
    return found


def _version_strings() -> list[bytes]:
    from importlib.metadata import version

    import sealdrop

    values = {sealdrop.__version__, f"{sys.version_info.major}.{sys.version_info.minor}."}
    for package in ("flask", "werkzeug", "gunicorn", "pynacl", "jinja2"):
        values.add(version(package))
    return [v.encode() for v in values]


# --- the real server ----------------------------------------------------------------------


@dataclasses.dataclass
class Service:
    """A service folder: spool, temporary folder and log, all under `root` (the spool
    may be elsewhere, on a small file system of its own)."""

    root: Path
    key: PrivateKey
    spool: Path

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def public_key_file(self) -> Path:
        return self.root / "reviewer.pub"

    @classmethod
    def create(cls, root: Path, spool: Path | None = None) -> Service:
        root.mkdir(parents=True, exist_ok=True)
        service = cls(root, PrivateKey.generate(), spool or root / "spool")
        service.spool.mkdir(mode=0o700, exist_ok=True)
        os.chmod(service.spool, 0o700)
        service.tmp.mkdir(mode=0o700, exist_ok=True)
        service.public_key_file.write_text(encode_public_key(service.key.public_key) + "\n")
        return service

    def codename_settings(self) -> dict[str, str]:
        """Codenames and replies on: the state and replies folders, made under `root`,
        as settings for `running`."""
        state, replies = self.root / "state", self.root / "replies"
        for folder in (state, replies):
            folder.mkdir(mode=0o700, exist_ok=True)
        return {"SEALDROP_STATE_DIR": str(state), "SEALDROP_REPLIES_DIR": str(replies)}

    def spool_names(self) -> list[str]:
        """The spool's names, without the pool of empty files the server keeps there."""
        from sealdrop.spool_names import POOL_DIR

        return sorted(p.name for p in self.spool.iterdir() if p.name != POOL_DIR)

    def sealed(self) -> list[Path]:
        return sorted(p for p in self.spool.iterdir() if p.name.endswith(".sealed"))

    def parts(self) -> list[Path]:
        return sorted(p for p in self.spool.iterdir() if p.name.endswith(".part"))


class ServerFailed(Exception):
    """The server did not start (or died); its log is in the message."""


class RealServer:
    """gunicorn serving sealdrop on a free loopback port, in its own process group."""

    def __init__(self, service: Service, settings: Mapping[str, str] | None = None) -> None:
        from sealdrop.connections import WORKERS

        self.service = service
        self.workers = WORKERS
        self.port = 0
        env = serve_env(
            {
                "SEALDROP_SPOOL_DIR": str(service.spool),
                "SEALDROP_PUBLIC_KEY_FILE": str(service.public_key_file),
                # Port 0: the system picks a free one; serve prints the URL it bound.
                "SEALDROP_LISTEN": f"{HOST}:0",
                "TMPDIR": str(service.tmp),
                **(settings or {}),
            }
        )
        self._log_start = service.log.stat().st_size if service.log.exists() else 0
        with service.log.open("ab") as log:
            self.process = subprocess.Popen(
                sealdrop_command("serve", "--local-only"),
                env=env,
                cwd=service.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def __enter__(self) -> RealServer:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"server exited {self.process.returncode}:\n{self.log_text()}")
            if not self.port:
                self.port = self._bound_port()
                continue
            with contextlib.suppress(NoResponse, OSError):
                if get(self.port, timeout=2).status_code == 200 and (
                    len(self.worker_pids()) >= self.workers
                ):
                    return
            time.sleep(0.05)
        self.kill_group()
        raise ServerFailed(f"server not ready in {timeout} s:\n{self.log_text()}")

    def _bound_port(self) -> int:
        with self.service.log.open("rb") as log:
            log.seek(self._log_start)
            match = re.search(rb"http://127\.0\.0\.1:(\d+)/", log.read())
        if match is None:
            time.sleep(0.05)
            return 0
        return int(match.group(1))

    def log_text(self) -> str:
        return self.service.log.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        return child_pids(self.pid)

    def group_pids(self) -> list[int]:
        """Every live process of the server's group (the master's orphans included)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == self.pid and fields[0] != "Z":
                pids.append(int(entry.name))
        return pids

    def rss_bytes(self) -> int:
        """Resident memory of the master and its workers, from /proc."""
        return sum(rss_of(pid) for pid in [self.pid, *self.worker_pids()])

    def memory_bytes(self) -> int:
        """The memory the master and its workers take together: their proportional set
        sizes (PSS), so a page a worker still shares with the master counts once.

        Summed RSS counts it once per process: a worker forked to replace a retiring
        one (recycle_after_requests) added a whole worker's RSS, though it costs only
        the pages it has written to since (docs/PERFORMANCE.md, "Worker recycling's
        memory")."""
        return sum(pss_of(pid) for pid in [self.pid, *self.worker_pids()])

    def kill_worker(self) -> int | None:
        workers = self.worker_pids()
        if not workers:
            return None
        victim = secrets.choice(workers)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        return victim

    def kill_master(self) -> None:
        """SIGKILL the master, then (like a crashed machine) every worker it left behind."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait()
        self.kill_group()

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 10
        while self.group_pids() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), then make sure nothing of the group is left."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self.kill_group()


def rss_of(pid: int) -> int:
    return _proc_kib(f"/proc/{pid}/status", "VmRSS:")


def pss_of(pid: int) -> int:
    return _proc_kib(f"/proc/{pid}/smaps_rollup", "Pss:")


def _proc_kib(path: str, field: str) -> int:
    """A ``FIELD: N kB`` line of a /proc file, in bytes (0 once the process is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler:
    """Calls `sample` every `interval` seconds in a thread while in a `with` block."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)


class RssSampler(Sampler):
    """A server's RSS (`samples`), PSS (`pss_samples`, RealServer.memory_bytes) and
    the most workers it had at once, every `interval` seconds while in a `with` block."""

    def __init__(self, server: RealServer, interval: float = 0.2) -> None:
        super().__init__(interval)
        self._server = server
        self.samples: list[tuple[float, int]] = []
        self.pss_samples: list[tuple[float, int]] = []
        self.most_workers = 0

    def sample(self) -> None:
        at = time.monotonic() - self.started
        self.samples.append((at, self._server.rss_bytes()))
        self.pss_samples.append((at, self._server.memory_bytes()))
        self.most_workers = max(self.most_workers, len(self._server.worker_pids()))

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    @property
    def pss_peak(self) -> int:
        return max((pss for _, pss in self.pss_samples), default=0)


def mib(size: float) -> float:
    return round(size / (1024 * 1024), 1)


# --- opening what the server stored ---------------------------------------------------------


@dataclasses.dataclass
class Opened:
    receipt: str
    message: str
    files: list[tuple[str, bytes]]
    # The upload was cut off (records.UploadCut): the file holds what arrived.
    cut: Any = None


def open_sealed(path: Path, key: PrivateKey) -> Opened:
    """Decrypt and check one spool file completely (raises SpoolFileError if bad)."""
    opened = open_submission(path, key)
    files = [(name, data) for name, _, data in opened.files]
    return Opened(opened.receipt, opened.message, files, opened.cut)


def multipart(
    message: str, files: Iterable[tuple[str, bytes]] = (), boundary: str | None = None
) -> tuple[bytes, str]:
    """(body, content type) for the form: a message and files, like a browser sends."""
    boundary = boundary or "----sealdropRel" + secrets.token_hex(8)
    pieces = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="message"\r\n\r\n'.encode(),
        message.encode(),
        b"\r\n",
    ]
    for name, data in files:
        pieces += [
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode(),
            data,
            b"\r\n",
        ]
    pieces.append(f"--{boundary}--\r\n".encode())
    return b"".join(pieces), f"multipart/form-data; boundary={boundary}"


@contextlib.contextmanager
def running(service: Service, settings: Mapping[str, str] | None = None) -> Iterator[RealServer]:
    server = RealServer(service, settings)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
