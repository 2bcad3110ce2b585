"""Upload throughput of the real server over loopback, against a sink and OnionShare.

Three servers are started in one run, one after the other, each alone on the machine:

- ``sealdrop``: ``python -m sealdrop serve --local-only`` (the real gunicorn config),
  a fresh reviewer key and spool;
- ``sink``: `bench/sink_app.py`, a Flask app under the same gunicorn config that reads
  the body in 1 MiB pieces and discards it: the ceiling for any app on this stack;
- ``onionshare``: ``onionshare-cli --local-only --receive --public`` (from PyPI, in its
  own venv; see bench/README.md), which writes what it receives to a folder. It refuses
  bodies of 1 GiB or more, so it gets 1000 MiB when the size is 1 GiB or more.

Each gets one large ``curl -F`` upload (MB/s), with the server's CPU seconds (utime +
stime of the master and workers, from /proc/PID/stat, over the upload) and peak RSS
(VmHWM of each process, since its start). Then 50 concurrent clients each send a 1 MB
submission (``--rounds`` times): submissions per second, p50/p99 latency.

    .venv/bin/python bench/upload_bench.py            # 1 GiB
    .venv/bin/python bench/upload_bench.py --quick    # 64 MiB, one round

A measurement, not a test: a table, the ratios against the targets, one JSON line last.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

MIB = 1024 * 1024
ONIONSHARE_MAX = 1000 * MIB  # OnionShare refuses a body of 1 GiB or more.
CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve().parent
ONIONSHARE_CANDIDATES = [
    HERE / ".venv-onionshare" / "bin" / "onionshare-cli",
    Path("/tmp/venv-onionshare/bin/onionshare-cli"),
]
RSS_LIMIT_MIB = 48
# (name, numerator, denominator, target): MB/s over MB/s.
TARGETS = [
    ("sealdrop / onionshare", "sealdrop", "onionshare", 3.0),
    ("sealdrop / sink", "sealdrop", "sink", 0.35),
]
START_TIMEOUT = 60.0


@dataclass
class Upload:
    bytes_sent: int
    seconds: float
    status: int
    cpu_seconds: float

    @property
    def mb_s(self) -> float:
        return self.bytes_sent / self.seconds / 1e6


@dataclass
class Burst:
    clients: int
    submissions: int
    failures: int
    seconds: float
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.submissions / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Target:
    name: str
    uploads: list[Upload] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)  # each process's VmHWM, large uploads
    rss_burst_mib: list[float] = field(default_factory=list)  # the same after the burst
    burst: Burst | None = None

    def best(self) -> Upload:
        return max(self.uploads, key=lambda upload: upload.mb_s)


# --- processes ---------------------------------------------------------------------------


def family(pid: int) -> list[int]:
    """`pid` and its children (gunicorn's workers)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """A server process started for the benchmark; its URL read from its output."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, pattern: str) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = re.search(pattern, log.read_text(errors="replace"))
            if match:
                self.url = match.group(0).rstrip("/")
                self.port = int(self.url.rsplit(":", 1)[1])
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{command[0]} did not start; its output:\n{log.read_text()}")

    def pids(self) -> list[int]:
        return family(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- clients -----------------------------------------------------------------------------


def curl_upload(server: Server, path: str, fields: list[str]) -> tuple[int, float, int]:
    """``curl -F`` each field; (status, seconds, bytes uploaded)."""
    command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_upload}"]
    for item in fields:
        command += ["-F", item]
    result = subprocess.run(
        [*command, server.url + path], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"curl failed: {result.stderr.strip()}")
    status, seconds, size = result.stdout.split()
    return int(status), float(seconds), int(float(size))


def multipart(fields: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    boundary = "----sealdropBench7f3a9c"
    pieces: list[bytes] = []
    for name, filename, content in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"\r\nContent-Type: application/octet-stream'
        pieces += [f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode(), content]
        pieces.append(b"\r\n")
    pieces.append(f"--{boundary}--\r\n".encode())
    return b"".join(pieces), f"multipart/form-data; boundary={boundary}"


def burst(
    server: Server, path: str, body: bytes, content_type: str, clients: int, rounds: int
) -> Burst:
    """`clients` threads, each sending `rounds` submissions one after the other."""
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    start_line = threading.Barrier(clients + 1)

    def client() -> None:
        nonlocal failures
        start_line.wait()
        for _ in range(rounds):
            began = time.perf_counter()
            ok = False
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
            try:
                connection.request("POST", path, body=body, headers={"Content-Type": content_type})
                response = connection.getresponse()
                response.read()
                ok = response.status in (200, 302)
            except OSError:
                ok = False
            finally:
                connection.close()
            took = time.perf_counter() - began
            with lock:
                if ok:
                    latencies.append(took)
                else:
                    failures += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start_line.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    return Burst(clients, len(latencies), failures, seconds, latencies)


# --- the run -----------------------------------------------------------------------------


def make_input(path: Path, size: int) -> None:
    """`size` bytes that no layer could compress: a random MiB with a counter in front."""
    block = bytearray(os.urandom(MIB))
    with path.open("wb") as out:
        left, index = size, 0
        while left:
            block[:8] = index.to_bytes(8, "little")
            piece = bytes(block[: min(MIB, left)])
            out.write(piece)
            left -= len(piece)
            index += 1


def find_onionshare(given: str | None) -> Path | None:
    if given:
        return Path(given)
    on_path = shutil.which("onionshare-cli")
    for candidate in [*ONIONSHARE_CANDIDATES, *([Path(on_path)] if on_path else [])]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def clear(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def measure(
    target: Target,
    server: Server,
    path: str,
    fields: list[str],
    expected: int,
    repeat: int,
    burst_body: tuple[bytes, str],
    clients: int,
    rounds: int,
    after_each: Iterator[None] | None,
) -> None:
    for _ in range(repeat):
        os.sync()
        pids = server.pids()
        before = cpu_seconds(pids)
        status, seconds, sent = curl_upload(server, path, fields)
        used = cpu_seconds(pids) - before
        if status not in (200, 302) or sent < expected:
            raise RuntimeError(f"{target.name}: status {status}, {sent} bytes sent")
        target.uploads.append(Upload(sent, seconds, status, used))
        if after_each is not None:
            next(after_each)
    target.rss_mib = [peak_rss_mib(pid) for pid in server.pids()]
    target.burst = burst(server, path, burst_body[0], burst_body[1], clients, rounds)
    target.rss_burst_mib = [peak_rss_mib(pid) for pid in server.pids()]


def run(args: argparse.Namespace) -> dict[str, Target]:
    size: int = args.size
    results: dict[str, Target] = {}
    work = Path(tempfile.mkdtemp(prefix="upload-bench-", dir=args.dir))
    try:
        source = work / "input.bin"
        make_input(source, size)
        onion_size = min(size, ONIONSHARE_MAX)
        onion_source = source
        if onion_size < size:
            onion_source = work / "input-onionshare.bin"
            with source.open("rb") as whole, onion_source.open("wb") as part:
                shutil.copyfileobj(whole, part)
                part.truncate(onion_size)
        burst_file = os.urandom(1_000_000)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP_")}

        # The sink: same gunicorn configuration, no work.
        sink = Server(
            [sys.executable, str(HERE / "sink_app.py"), "--max-body-bytes", str(size + 64 * MIB)],
            env,
            work / "sink.log",
            r"http://127\.0\.0\.1:\d+/",
        )
        try:
            target = results.setdefault("sink", Target("sink"))
            body = multipart([("message", None, b"bench"), ("files", "f.bin", burst_file)])
            fields = ["message=bench", f"files=@{source};type=application/octet-stream"]
            measure(
                target,
                sink,
                "/submit",
                fields,
                size,
                args.repeat,
                body,
                args.clients,
                args.rounds,
                None,
            )
        finally:
            sink.stop()

        # sealdrop itself.
        spool, key = work / "spool", work / "reviewer.pub"
        spool.mkdir(mode=0o700)
        from nacl.public import PrivateKey

        from sealdrop.keys import encode_public_key

        key.write_text(encode_public_key(PrivateKey.generate().public_key) + "\n")
        sealdrop_env = {
            **env,
            "SEALDROP_MAX_BODY_BYTES": str(max(2 * 1024**3, size + 64 * MIB)),
            "SEALDROP_RESERVE_BYTES": "0",
        }
        command = [
            sys.executable,
            "-m",
            "sealdrop",
            "serve",
            "--local-only",
            "--spool",
            str(spool),
            "--public-key",
            str(key),
            "--listen",
            "127.0.0.1:0",
        ]
        server = Server(command, sealdrop_env, work / "sealdrop.log", r"http://127\.0\.0\.1:\d+/")

        def clear_spool() -> Iterator[None]:
            while True:
                done = [p for p in spool.iterdir() if p.name.endswith(".sealed")]
                if len(done) != 1:
                    raise RuntimeError(f"sealdrop: expected one sealed file, found {done}")
                clear(spool)
                yield

        try:
            target = results.setdefault("sealdrop", Target("sealdrop"))
            body = multipart([("message", None, b"bench"), ("files", "f.bin", burst_file)])
            fields = ["message=bench", f"files=@{source};type=application/octet-stream"]
            measure(
                target,
                server,
                "/submit",
                fields,
                size,
                args.repeat,
                body,
                args.clients,
                args.rounds,
                clear_spool(),
            )
            sealed = len(list(spool.glob("*.sealed")))
            assert target.burst is not None
            if sealed != target.burst.submissions:
                raise RuntimeError(
                    f"sealdrop: {sealed} sealed files for "
                    f"{target.burst.submissions} acknowledged submissions"
                )
            clear(spool)
        finally:
            server.stop()

        # OnionShare's receive mode.
        onionshare = find_onionshare(args.onionshare)
        if onionshare is None:
            print(
                "onionshare-cli not found (see bench/README.md): its row is left out",
                file=sys.stderr,
            )
        else:
            received = work / "onionshare-data"
            received.mkdir()
            command = [
                str(onionshare),
                "--local-only",
                "--receive",
                "--public",
                "--data-dir",
                str(received),
            ]
            server = Server(command, env, work / "onionshare.log", r"http://127\.0\.0\.1:\d+")

            def clear_received() -> Iterator[None]:
                while True:
                    clear(received)
                    yield

            try:
                target = results.setdefault("onionshare", Target("onionshare"))
                body = multipart([("file[]", "f.bin", burst_file), ("text", None, b"")])
                fields = [f"file[]=@{onion_source};type=application/octet-stream", "text="]
                measure(
                    target,
                    server,
                    "/upload",
                    fields,
                    onion_size,
                    args.repeat,
                    body,
                    args.clients,
                    args.rounds,
                    clear_received(),
                )
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def report(results: dict[str, Target], args: argparse.Namespace) -> None:
    print(
        f"\nUpload over loopback, curl -F, best of {args.repeat}; "
        f"{args.clients} clients x {args.rounds} x 1 MB"
    )
    header = (
        f"{'server':<11} {'size MiB':>9} {'MB/s':>7} {'CPU s':>6} {'MB/CPU s':>9} "
        f"{'RSS max':>8} {'RSS sum':>8} {'procs':>5} {'subm/s':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'fail':>4} {'RSS burst':>9}"
    )
    print(header)
    print("-" * len(header))
    for target in results.values():
        best = target.best()
        burst_ = target.burst
        assert burst_ is not None
        print(
            f"{target.name:<11} {best.bytes_sent / MIB:>9.0f} {best.mb_s:>7.0f} "
            f"{best.cpu_seconds:>6.2f} {best.bytes_sent / 1e6 / max(best.cpu_seconds, 1e-9):>9.0f} "
            f"{max(target.rss_mib):>8.1f} {sum(target.rss_mib):>8.1f} {len(target.rss_mib):>5} "
            f"{burst_.per_second:>7.1f} {burst_.percentile(0.5) * 1000:>7.0f} "
            f"{burst_.percentile(0.99) * 1000:>7.0f} {burst_.failures:>4} "
            f"{max(target.rss_burst_mib):>9.1f}"
        )
    print(
        "\nRSS: peak (VmHWM) per process in MiB after the large uploads (max = the largest\n"
        "process, sum = all of them); RSS burst: the largest process after the burst as well."
    )
    print("\nTargets:")
    ratios: dict[str, float] = {}
    for name, top, bottom, goal in TARGETS:
        if top in results and bottom in results:
            ratio = results[top].best().mb_s / results[bottom].best().mb_s
            ratios[name] = ratio
            print(
                f"  {name:<24} {ratio:6.2f}  "
                f"(target >= {goal}: {'met' if ratio >= goal else 'MISSED'})"
            )
        else:
            print(f"  {name:<24}    n/a  ({bottom} not measured)")
    if "sealdrop" in results:
        rss = max(results["sealdrop"].rss_mib)
        print(
            f"  {'sealdrop RSS, largest':<24} {rss:6.1f}  (target <= {RSS_LIMIT_MIB} MiB: "
            f"{'met' if rss <= RSS_LIMIT_MIB else 'MISSED'})"
        )
    line = {
        "size": args.size,
        "repeat": args.repeat,
        "clients": args.clients,
        "rounds": args.rounds,
        "ratios": ratios,
        "results": {
            name: {
                "uploads": [asdict(u) | {"mb_s": u.mb_s} for u in target.uploads],
                "rss_mib": target.rss_mib,
                "rss_burst_mib": target.rss_burst_mib,
                "burst": None
                if target.burst is None
                else {
                    "submissions": target.burst.submissions,
                    "failures": target.burst.failures,
                    "seconds": target.burst.seconds,
                    "per_second": target.burst.per_second,
                    "p50": target.burst.percentile(0.5),
                    "p99": target.burst.percentile(0.99),
                },
            }
            for name, target in results.items()
        },
    }
    print(json.dumps(line))


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Upload throughput of sealdrop serve over loopback."
    )
    parser.add_argument(
        "--size", type=int, default=1024 * MIB, help="bytes of the large upload (default 1 GiB)"
    )
    parser.add_argument("--quick", action="store_true", help="64 MiB, one round each")
    parser.add_argument("--repeat", type=int, default=2, help="large uploads per server; best kept")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4, help="1 MB submissions per client")
    parser.add_argument("--onionshare", help="path of onionshare-cli (default: looked for)")
    parser.add_argument("--dir", help="where the temporary folder goes (default $TMPDIR)")
    args = parser.parse_args()
    if args.quick:
        args.size, args.repeat, args.rounds = 64 * MIB, 1, 1
    if shutil.which("curl") is None:
        print("curl is needed (apt-get install curl)", file=sys.stderr)
        return 2
    report(run(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
