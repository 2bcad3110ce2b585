"""Upload throughput of the real server over loopback, against a sink and OnionShare.

Four servers are measured in one run:

- ``sealdrop``: ``python -m sealdrop serve --local-only`` (the real gunicorn config) of
  the checkout this script is in, a fresh reviewer key and spool;
- ``previous``: the same command from ``--baseline-ref`` (default ``adbedb2``, the last
  commit before the event-loop workers), checked out in a temporary ``git worktree`` and
  run with this venv (bench/checkouts.py). It runs at the same time as ``sealdrop`` and
  the two take turns, round by round (this, previous; then previous, this; ...), so the
  machine's noise falls on both alike: issue 13 wants the upload throughput and the
  peak RSS within 10 % of it in the same run;
- ``sink``: `bench/sink_app.py`, a Flask app under the same gunicorn config that reads
  the body in 1 MiB pieces and discards it: the ceiling for any app on this stack;
- ``onionshare``: ``onionshare-cli --local-only --receive --public`` (from PyPI, in its
  own venv; see bench/README.md), which writes what it receives to a folder. It refuses
  bodies of 1 GiB or more, so it gets 1000 MiB when the size is 1 GiB or more.

The sink and OnionShare run alone, one after the other, before and after the pair.
Each server gets ``--repeat`` large ``curl -F`` uploads (MB/s, best kept), with the
server's CPU seconds (utime + stime of the master and workers, from /proc/PID/stat,
over the upload) and peak RSS (VmHWM of each process over the large uploads: reset
before the first, read after the last; a worker's start-up is not an upload's).
Then ``--repeat`` bursts (best kept): 50 concurrent clients each send ``--rounds``
1 MB submissions: submissions per second, p50/p99 latency.

    .venv/bin/python bench/upload_bench.py            # 1 GiB
    .venv/bin/python bench/upload_bench.py --quick    # 64 MiB, one round

A measurement, not a test: a table, the ratios against the targets and against
``previous`` (PASS/FAIL for issue 13), one JSON line last.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sealdrop.bench.checkouts import (
    DEFAULT_BASELINE_REF,
    REPO,
    WrongCheckout,
    baseline_checkout,
    check_import,
    sealdrop_env,
    without_settings,
)
from sealdrop.bench.harness import CONTENT_TYPE, find_onionshare, loadavg, multipart

MIB = 1024 * 1024
ONIONSHARE_MAX = 1000 * MIB  # OnionShare refuses a body of 1 GiB or more.
CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve().parent
RSS_LIMIT_MIB = 48
# (name, numerator, denominator, target): MB/s over MB/s.
TARGETS = [
    ("sealdrop / onionshare", "sealdrop", "onionshare", 3.0),
    ("sealdrop / sink", "sealdrop", "sink", 0.35),
]
# Issue 13: against the previous worker setup, in the same run, throughput may lose and
# peak RSS may gain at most 10 %.
PREVIOUS_SLACK = 0.10
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
    rss_burst_mib: list[float] = field(default_factory=list)  # the same after the bursts
    bursts: list[Burst] = field(default_factory=list)

    def best(self) -> Upload:
        return max(self.uploads, key=lambda upload: upload.mb_s)

    def best_burst(self) -> Burst:
        return max(self.bursts, key=lambda burst: burst.per_second)


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


def reset_peak_rss(pid: int) -> None:
    """Start the process's VmHWM afresh (Linux: 5 written to /proc/PID/clear_refs), so
    that the peak read after the large uploads is theirs, not start-up's: a worker that
    builds its app itself (sealdrop, whose master holds none) has its start-up peak
    in its own VmHWM, a worker forked from a master that built the app (previous) in
    the master's."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """A server process started for the benchmark; its URL read from its output."""

    def __init__(
        self, command: list[str], env: dict[str, str], log: Path, pattern: str, cwd: Path
    ) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
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


def burst(server: Server, path: str, body: bytes, clients: int, rounds: int) -> Burst:
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
                connection.request("POST", path, body=body, headers={"Content-Type": CONTENT_TYPE})
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


def clear(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@dataclass
class Measured:
    """One server under measurement and what it is sent."""

    target: Target
    server: Server
    path: str
    fields: list[str]  # the large upload, as `curl -F` arguments
    expected: int  # bytes the large upload must send
    burst_body: bytes
    # Checks what the server stored for `n` acknowledged submissions, then removes it.
    stored: Callable[[int], None] = lambda n: None


def turns(measured: Sequence[Measured], round_: int) -> Sequence[Measured]:
    """Whose turn first in `round_`: the order flips each round, so neither of two
    servers measured together always comes right after the other's disk writes."""
    return measured if round_ % 2 == 0 else list(reversed(measured))


def measure(measured: Sequence[Measured], args: argparse.Namespace) -> None:
    """`--repeat` rounds of one large upload to each server in turn, the peak RSS of
    each, then `--repeat` rounds of one burst each in turn. The bursts come last: they
    make the workers recycle, which would lose the large uploads' peaks."""
    for one in measured:
        for pid in one.server.pids():
            reset_peak_rss(pid)
    for round_ in range(args.repeat):
        for one in turns(measured, round_):
            os.sync()
            pids = one.server.pids()
            before = cpu_seconds(pids)
            status, seconds, sent = curl_upload(one.server, one.path, one.fields)
            used = cpu_seconds(pids) - before
            if status not in (200, 302) or sent < one.expected:
                raise RuntimeError(f"{one.target.name}: status {status}, {sent} bytes sent")
            one.target.uploads.append(Upload(sent, seconds, status, used))
            one.stored(1)
    for one in measured:
        one.target.rss_mib = [peak_rss_mib(pid) for pid in one.server.pids()]
    for round_ in range(args.repeat):
        for one in turns(measured, round_):
            os.sync()
            result = burst(one.server, one.path, one.burst_body, args.clients, args.rounds)
            one.target.bursts.append(result)
            one.stored(result.submissions)
    for one in measured:
        one.target.rss_burst_mib = [peak_rss_mib(pid) for pid in one.server.pids()]


def sealdrop_server(
    name: str, checkout: Path, work: Path, key: Path, source: Path, size: int
) -> tuple[Server, Measured]:
    """`sealdrop serve --local-only` of `checkout`, run with this venv (bench/checkouts.py)."""
    root = work / name
    spool = root / "spool"
    spool.mkdir(parents=True, mode=0o700)
    env = sealdrop_env(checkout, root / "pythonpath")
    env["SEALDROP_MAX_BODY_BYTES"] = str(max(2 * 1024**3, size + 64 * MIB))
    env["SEALDROP_RESERVE_BYTES"] = "0"
    check_import(env, checkout, root)
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
    server = Server(command, env, root / "server.log", r"http://127\.0\.0\.1:\d+/", root)

    def stored(acknowledged: int) -> None:
        sealed = [p for p in spool.iterdir() if p.name.endswith(".sealed")]
        if len(sealed) != acknowledged:
            raise RuntimeError(
                f"{name}: {len(sealed)} sealed files for {acknowledged} acknowledged submissions"
            )
        clear(spool)

    body = multipart([("message", None, b"bench"), ("files", "f.bin", os.urandom(1_000_000))])
    fields = ["message=bench", f"files=@{source};type=application/octet-stream"]
    target = Target(name)
    return server, Measured(target, server, "/submit", fields, size, body, stored)


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
        env = without_settings()

        # The sink: same gunicorn configuration, no work.
        sink = Server(
            [sys.executable, str(HERE / "sink_app.py"), "--max-body-bytes", str(size + 64 * MIB)],
            env,
            work / "sink.log",
            r"http://127\.0\.0\.1:\d+/",
            work,
        )
        try:
            target = results.setdefault("sink", Target("sink"))
            body = multipart([("message", None, b"bench"), ("files", "f.bin", burst_file)])
            fields = ["message=bench", f"files=@{source};type=application/octet-stream"]
            measure([Measured(target, sink, "/submit", fields, size, body)], args)
        finally:
            sink.stop()

        # sealdrop itself, and the previous version of it, taking turns.
        run_sealdrop(args, work, source, results)

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
            server = Server(command, env, work / "onionshare.log", r"http://127\.0\.0\.1:\d+", work)
            try:
                target = results.setdefault("onionshare", Target("onionshare"))
                body = multipart([("file[]", "f.bin", burst_file), ("text", None, b"")])
                fields = [f"file[]=@{onion_source};type=application/octet-stream", "text="]
                measure(
                    [
                        Measured(
                            target,
                            server,
                            "/upload",
                            fields,
                            onion_size,
                            body,
                            lambda n: clear(received),
                        )
                    ],
                    args,
                )
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def run_sealdrop(
    args: argparse.Namespace, work: Path, source: Path, results: dict[str, Target]
) -> None:
    """`sealdrop` (this checkout) and, unless --no-previous, `previous` (--baseline-ref)
    both started, then measured in turns."""
    from nacl.public import PrivateKey

    from sealdrop.keys import encode_public_key

    key = work / "reviewer.pub"
    key.write_text(encode_public_key(PrivateKey.generate().public_key) + "\n")
    with contextlib.ExitStack() as stack:
        checkouts = {"sealdrop": REPO}
        if args.baseline_ref:
            checkouts["previous"] = stack.enter_context(baseline_checkout(args.baseline_ref, work))
        measured = []
        for name, checkout in checkouts.items():
            server, one = sealdrop_server(name, checkout, work, key, source, args.size)
            stack.callback(server.stop)
            measured.append(one)
            results[name] = one.target
        measure(measured, args)


def against_previous(results: dict[str, Target]) -> list[tuple[str, float, bool]]:
    """Issue 13's bound, sealdrop / previous measured in the same run: (figure, ratio,
    met). Throughput (best of the rounds) may lose, peak RSS may gain, at most 10 %."""
    if "sealdrop" not in results or "previous" not in results:
        return []
    this, previous = results["sealdrop"], results["previous"]
    faster = [
        ("MB/s, large upload", this.best().mb_s / previous.best().mb_s),
        (
            "burst submissions/s",
            this.best_burst().per_second / previous.best_burst().per_second,
        ),
    ]
    smaller = [
        ("peak RSS, largest process", max(this.rss_mib) / max(previous.rss_mib)),
        ("peak RSS, sum", sum(this.rss_mib) / sum(previous.rss_mib)),
    ]
    return [(name, ratio, ratio >= 1 - PREVIOUS_SLACK) for name, ratio in faster] + [
        (name, ratio, ratio <= 1 + PREVIOUS_SLACK) for name, ratio in smaller
    ]


def report(results: dict[str, Target], args: argparse.Namespace, load: tuple[str, str]) -> None:
    print(
        f"\nUpload over loopback, curl -F, best of {args.repeat}; bursts of "
        f"{args.clients} clients x {args.rounds} x 1 MB, best of {args.repeat}; "
        f"load average {load[0]} before, {load[1]} after"
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
        burst_ = target.best_burst()
        print(
            f"{target.name:<11} {best.bytes_sent / MIB:>9.0f} {best.mb_s:>7.0f} "
            f"{best.cpu_seconds:>6.2f} {best.bytes_sent / 1e6 / max(best.cpu_seconds, 1e-9):>9.0f} "
            f"{max(target.rss_mib):>8.1f} {sum(target.rss_mib):>8.1f} {len(target.rss_mib):>5} "
            f"{burst_.per_second:>7.1f} {burst_.percentile(0.5) * 1000:>7.0f} "
            f"{burst_.percentile(0.99) * 1000:>7.0f} {sum(b.failures for b in target.bursts):>4} "
            f"{max(target.rss_burst_mib):>9.1f}"
        )
    print(
        "\nRSS: peak (VmHWM) per process in MiB over the large uploads (max = the largest\n"
        "process, sum = all of them); RSS burst: the largest process after the bursts as well;\n"
        "fail: failed submissions over all bursts. Every round, MB/s (CPU s):"
    )
    for target in results.values():
        rounds = ", ".join(f"{u.mb_s:.0f} ({u.cpu_seconds:.1f})" for u in target.uploads)
        bursts = ", ".join(f"{b.per_second:.1f}" for b in target.bursts)
        print(f"  {target.name:<11} {rounds}; bursts, submissions/s: {bursts}")
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
    previous = against_previous(results)
    if previous:
        print(
            f"\nsealdrop / previous ({args.baseline_ref}), same run, taking turns "
            f"(issue 13: throughput >= {1 - PREVIOUS_SLACK:.2f}, peak RSS <= "
            f"{1 + PREVIOUS_SLACK:.2f}):"
        )
        for name, ratio, met in previous:
            print(f"  {'PASS' if met else 'FAIL'}  {name:<26} {ratio:6.2f}")
    line = {
        "size": args.size,
        "repeat": args.repeat,
        "clients": args.clients,
        "rounds": args.rounds,
        "baseline_ref": args.baseline_ref,
        "loadavg": list(load),
        "ratios": ratios,
        "previous_ratios": {name: ratio for name, ratio, _ in previous},
        "results": {
            name: {
                "uploads": [asdict(u) | {"mb_s": u.mb_s} for u in target.uploads],
                "rss_mib": target.rss_mib,
                "rss_burst_mib": target.rss_burst_mib,
                "bursts": [
                    {
                        "submissions": b.submissions,
                        "failures": b.failures,
                        "seconds": b.seconds,
                        "per_second": b.per_second,
                        "p50": b.percentile(0.5),
                        "p99": b.percentile(0.99),
                    }
                    for b in target.bursts
                ],
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
    parser.add_argument(
        "--repeat", type=int, default=2, help="rounds (large upload, burst) per server; best kept"
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4, help="1 MB submissions per client")
    parser.add_argument(
        "--baseline-ref",
        default=DEFAULT_BASELINE_REF,
        help=f"the git ref measured as `previous` (default {DEFAULT_BASELINE_REF})",
    )
    parser.add_argument(
        "--no-previous",
        dest="baseline_ref",
        action="store_const",
        const="",
        help="leave the `previous` row out",
    )
    parser.add_argument("--onionshare", help="path of onionshare-cli (default: looked for)")
    parser.add_argument("--dir", help="where the temporary folder goes (default $TMPDIR)")
    args = parser.parse_args()
    if args.quick:
        args.size, args.repeat, args.rounds = 64 * MIB, 1, 1
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if shutil.which("curl") is None:
        print("curl is needed (apt-get install curl)", file=sys.stderr)
        return 2
    before = loadavg()
    try:
        results = run(args)
    except WrongCheckout as error:
        print(f"not measured: {error}", file=sys.stderr)
        return 2
    report(results, args, (before, loadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
