"""What a codename entry costs: Argon2id at the default cost, and the real server's rate.

1. `derive`: codename.derive at the configured cost (default: the service's default,
   64 MiB x 3 passes), in this process, best and median of --repeat runs.
2. `server`: `sealdrop serve --local-only` (2 gunicorn workers, default settings but
   for the folders) takes codename entries (POST /replies, each a fresh valid codename)
   from C clients at once, for --seconds at each C in --clients. For each C: entries
   answered per second, and how many were 429 (the derivation queue full, or an entry
   waited codename_wait_seconds: web/derivations.py).

    .venv/bin/python bench/codename_bench.py            # default cost, C = 1 2 4 8 16
    .venv/bin/python bench/codename_bench.py --quick    # 3 s per level, C = 1 4 16

A measurement, not a test: prints a table and one JSON line last.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

from nacl.public import PrivateKey

from sealdrop import codename
from sealdrop.keys import KdfCost, encode_public_key
from sealdrop.settings import MiB


def bench_derive(cost: KdfCost, repeat: int) -> dict[str, float]:
    salt = os.urandom(codename.SALT_BYTES)
    times = []
    for _ in range(repeat):
        text = codename.new_codename()
        started = time.perf_counter()
        codename.derive(text, salt, cost)
        times.append(time.perf_counter() - started)
    return {"best_s": min(times), "median_s": statistics.median(times)}


def start_server(folder: Path, cost: KdfCost, slots: int) -> tuple[subprocess.Popen[bytes], int]:
    key = PrivateKey.generate()
    for name in ("spool", "state", "replies"):
        (folder / name).mkdir(mode=0o700)
    (folder / "reviewer.pub").write_text(encode_public_key(key.public_key) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP_")}
    env.update(
        SEALDROP_STATE_DIR=str(folder / "state"),
        SEALDROP_REPLIES_DIR=str(folder / "replies"),
        SEALDROP_RESERVE_BYTES="0",
        SEALDROP_CODENAME_KDF_MEMORY=str(cost.memlimit),
        SEALDROP_CODENAME_KDF_PASSES=str(cost.opslimit),
        SEALDROP_CODENAME_MAX_CONCURRENT=str(slots),
    )
    command = [sys.executable, "-m", "sealdrop", "serve", "--local-only"]
    command += ["--spool", str(folder / "spool"), "--public-key", str(folder / "reviewer.pub")]
    command += ["--listen", "127.0.0.1:0"]
    out = (folder / "server.out").open("wb")
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(rb"http://127\.0\.0\.1:(\d+)/", (folder / "server.out").read_bytes())
        if found:
            return process, int(found.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    sys.exit("the server did not start: " + (folder / "server.out").read_text())


def load(port: int, clients: int, seconds: float) -> dict[str, float]:
    counts = {"ok": 0, "busy": 0, "other": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop:
            body = urlencode({"codename": codename.new_codename()})
            connection.request(
                "POST", "/replies", body, {"Content-Type": "application/x-www-form-urlencoded"}
            )
            response = connection.getresponse()
            response.read()
            key = {200: "ok", 429: "busy"}.get(response.status, "other")
            with lock:
                counts[key] += 1
        connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {
        "clients": clients,
        "entries_per_s": counts["ok"] / elapsed,
        "busy_429_per_s": counts["busy"] / elapsed,
        "busy_share": counts["busy"] / max(1, sum(counts.values())),
        "other": counts["other"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--memory", type=int, default=codename.DEFAULT_COST.memlimit)
    parser.add_argument("--passes", type=int, default=codename.DEFAULT_COST.opslimit)
    parser.add_argument("--slots", type=int, default=2, help="codename_max_concurrent")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.clients, args.repeat = 3.0, [1, 4, 16], 3
    cost = KdfCost(args.passes, args.memory)
    result: dict[str, object] = {
        "cost": {"passes": cost.opslimit, "memory_mib": cost.memlimit / MiB},
        "cpus": os.cpu_count(),
        "slots_per_worker": args.slots,
    }
    derive = bench_derive(cost, args.repeat)
    result["derive"] = derive
    print(
        f"derive at {cost.memlimit // MiB} MiB x {cost.opslimit} passes: "
        f"best {derive['best_s']:.3f} s, median {derive['median_s']:.3f} s"
    )
    with tempfile.TemporaryDirectory(prefix="sealdrop-bench-") as folder:
        process, port = start_server(Path(folder), cost, args.slots)
        try:
            levels = []
            print(f"{'clients':>7} {'entries/s':>10} {'429/s':>8} {'429 share':>9}")
            for clients in args.clients:
                level = load(port, clients, args.seconds)
                levels.append(level)
                print(
                    f"{clients:>7} {level['entries_per_s']:>10.2f} "
                    f"{level['busy_429_per_s']:>8.2f} {level['busy_share']:>9.1%}"
                )
        finally:
            process.terminate()
            process.wait(timeout=30)
    result["server"] = levels
    clean = [lv for lv in levels if lv["busy_share"] == 0]
    result["sustained_entries_per_s_without_429"] = max(
        (float(lv["entries_per_s"]) for lv in clean), default=0.0
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
