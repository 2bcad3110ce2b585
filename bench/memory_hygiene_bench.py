"""The cost of serve's allocator settings (server/memory.py), against a run without.

`sealdrop serve --local-only` is started alternately with the settings (as always in
production) and without them (SEALDROP_MEMORY_HYGIENE=off skips its restart under
them), three times each, in one run. Each server gets one 64 MiB upload and then 100
small submissions, one after the other, by curl; the server's CPU seconds (utime +
stime of the master and workers, /proc/PID/stat) and the wall time are taken, and
the medians printed with their ratios.

    .venv/bin/python bench/memory_hygiene_bench.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nacl.public import PrivateKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sealdrop.keys import encode_public_key  # noqa: E402
from tests.procs import child_pids  # noqa: E402
from tests.serving import Served, serve_env  # noqa: E402

BIG_MIB = 64
SMALL_COUNT = 100
ROUNDS = 3


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def curl(url: str, *fields: str) -> None:
    form = [part for field in fields for part in ("-F", field)]
    subprocess.run(["curl", "-s", "-o", "/dev/null", *form, url], check=True)


def one_run(hygiene: bool, big: Path, small: Path) -> tuple[float, float, float, float]:
    work = Path(tempfile.mkdtemp(prefix="sealdrop-bench-"))
    (work / "spool").mkdir(mode=0o700)
    public = work / "reviewer.pub"
    public.write_text(encode_public_key(PrivateKey.generate().public_key) + "\n")
    extra = {} if hygiene else {"SEALDROP_MEMORY_HYGIENE": "off"}
    argv = ["--local-only", "--spool", str(work / "spool"), "--public-key", str(public)]
    server = Served([*argv, "--listen", "127.0.0.1:0"], work, env=serve_env(extra))
    try:
        url = server.wait_for_url() + "submit"
        time.sleep(1)
        pids = [server.pid, *child_pids(server.pid)]
        cpu, wall = cpu_seconds(pids), time.monotonic()
        curl(url, "message=x", f"files=@{big}")
        big_wall, big_cpu = time.monotonic() - wall, cpu_seconds(pids) - cpu
        cpu, wall = cpu_seconds(pids), time.monotonic()
        for _ in range(SMALL_COUNT):
            curl(url, "message=hello there", f"files=@{small}")
        return big_wall, big_cpu, time.monotonic() - wall, cpu_seconds(pids) - cpu
    finally:
        server.stop()


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        big, small = Path(folder) / "big.bin", Path(folder) / "small.txt"
        big.write_bytes(os.urandom(BIG_MIB * 1024 * 1024))
        small.write_text("hello " * 200)
        runs: dict[bool, list[tuple[float, float, float, float]]] = {True: [], False: []}
        for _ in range(ROUNDS):
            for hygiene in (False, True):
                runs[hygiene].append(one_run(hygiene, big, small))
    med = {h: [statistics.median(r[i] for r in runs[h]) for i in range(4)] for h in runs}
    for hygiene, label in ((False, "without"), (True, "with")):
        big_wall, big_cpu, small_wall, small_cpu = med[hygiene]
        print(
            f"{label:8} {BIG_MIB} MiB: {BIG_MIB / big_wall:6.1f} MB/s, {big_cpu:.2f} CPU s; "
            f"{SMALL_COUNT} small: {small_wall:.2f} s, {small_cpu:.2f} CPU s"
        )
    ratio = [med[True][i] / med[False][i] for i in range(4)]
    print(
        f"ratios with/without: big time {ratio[0]:.2f}, big CPU {ratio[1]:.2f}, "
        f"small time {ratio[2]:.2f}, small CPU {ratio[3]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
