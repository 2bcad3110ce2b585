"""Throughput and peak memory of sealing and opening one large submission.

Every figure is measured in its own subprocess (so each has its own peak RSS,
read back with os.wait4) and compared with baselines measured in the same run,
because the machines this runs on are noisy: a bare secretstream push/pull loop
with no I/O (the ceiling of the cipher through PyNaCl), bare SHA-256, and
Debian's `age` encrypting and decrypting the same bytes to a file. Sealing to
one reviewer key and to sixteen (the most a file holds) run side by side, and
so do opening with the key in the first and in the last of sixteen stanzas.

    .venv/bin/python bench/crypto_bench.py            # 1 GiB
    .venv/bin/python bench/crypto_bench.py --quick    # 64 MiB

This is a measurement, not a test: it prints a table, the ratios against the
targets, and one JSON line last. See bench/README.md and docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nacl.public import PublicKey

MIB = 1024 * 1024
PIECE = MIB  # what the web layer hands the spool at a time
PASSPHRASE = "benchmark passphrase, not a secret"
DAY = "2026-01-01"

# (ratio name, numerator, denominator, target): MB/s over MB/s, higher is better.
TARGETS = [
    ("seal / bare push", "seal", "push", 0.8),
    ("open (sealdrop open) / age -d", "sealdrop-open", "age-decrypt", 1.0),
    ("open (library) / age -d", "open", "age-decrypt", 1.0),
]
INFO_RATIOS = [
    ("seal (library) / bare push", "seal-lib", "push"),
    ("push+sha256 / bare push", "push+sha256", "push"),
    ("pull+sha256 / bare pull", "pull+sha256", "pull"),
    ("open (library) / bare pull", "open", "pull"),
    ("seal / age encrypt", "seal", "age-encrypt"),
    ("seal, 16 keys / seal, 1 key", "seal-16", "seal"),
    ("open, key last of 16 / open, 1 key", "open-16", "open"),
]
TEAM_KEYS = 16
RSS_LIMIT_MIB = 64
GNU_TIME = os.path.exists("/usr/bin/time")


@dataclass
class Result:
    name: str
    seconds: list[float]
    peak_rss_kib: int
    size: int
    note: str = ""

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def mb_s(self) -> float:
        return self.size / self.best / 1e6


# --- children: each runs one measurement and prints {"seconds": ...} ----------------


def _chunks_in_memory(size: int) -> tuple[list[bytes], int]:
    block = os.urandom(PIECE)
    chunks = [block[i : i + 64 * 1024] for i in range(0, PIECE, 64 * 1024)]
    return chunks, size // len(chunks[0])


def child_push(args: argparse.Namespace, with_sha: bool = False) -> dict[str, float]:
    from nacl import bindings as b

    chunks, count = _chunks_in_memory(args.size)
    state = b.crypto_secretstream_xchacha20poly1305_state()
    b.crypto_secretstream_xchacha20poly1305_init_push(
        state, b.crypto_secretstream_xchacha20poly1305_keygen()
    )
    ad = os.urandom(113)
    push = b.crypto_secretstream_xchacha20poly1305_push
    digest = hashlib.sha256()
    per_piece = len(chunks)
    start = time.perf_counter()
    for i in range(count):
        chunk = chunks[i % per_piece]
        if with_sha:
            digest.update(chunk)
        push(state, chunk, ad, 0)
    return {"seconds": time.perf_counter() - start}


def child_pull(args: argparse.Namespace, with_sha: bool = False) -> dict[str, float]:
    from nacl import bindings as b

    chunks, count = _chunks_in_memory(args.size)
    key = b.crypto_secretstream_xchacha20poly1305_keygen()
    push_state = b.crypto_secretstream_xchacha20poly1305_state()
    header = b.crypto_secretstream_xchacha20poly1305_init_push(push_state, key)
    pull_state = b.crypto_secretstream_xchacha20poly1305_state()
    b.crypto_secretstream_xchacha20poly1305_init_pull(pull_state, header, key)
    ad = os.urandom(113)
    pull = b.crypto_secretstream_xchacha20poly1305_pull
    digest = hashlib.sha256()
    elapsed = 0.0
    done = 0
    # Ciphertexts can be pulled only once and in order: make them in batches, time the pulls.
    while done < count:
        batch = [
            b.crypto_secretstream_xchacha20poly1305_push(push_state, chunks[i % 16], ad, 0)
            for i in range(done, min(count, done + 64))
        ]
        start = time.perf_counter()
        for ciphertext in batch:
            plaintext, _ = pull(pull_state, ciphertext, ad)
            if with_sha:
                digest.update(plaintext)
        elapsed += time.perf_counter() - start
        done += len(batch)
    return {"seconds": elapsed}


def child_sha256(args: argparse.Namespace) -> dict[str, float]:
    block = os.urandom(PIECE)
    digest = hashlib.sha256()
    start = time.perf_counter()
    for _ in range(args.size // PIECE):
        digest.update(block)
    return {"seconds": time.perf_counter() - start}


def _read_pieces(path: Path) -> Callable[[], bytes]:
    handle = open(path, "rb", buffering=0)  # closed when the child exits
    return lambda: handle.read(PIECE)


def _recipients(work: Path, count: int) -> list[PublicKey]:
    """The reviewer's key, last among `count`: the reader tries every stanza before it."""
    from nacl.public import PrivateKey

    from sealdrop.keys import load_public_key

    reviewer = load_public_key(work / "keys" / "reviewer.pub")
    return [PrivateKey.generate().public_key for _ in range(count - 1)] + [reviewer]


def _header_seconds(recipients: list[PublicKey], rounds: int = 200) -> float:
    """Seconds to make one version 3 header (one crypto_box_seal per key), best of rounds."""
    from sealdrop.crypto import RECIPIENTS_VERSION, PayloadSealer

    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        PayloadSealer(recipients, version=RECIPIENTS_VERSION)
        best = min(best, time.perf_counter() - start)
    return best


def child_seal(args: argparse.Namespace, keys: int = 1) -> dict[str, float]:
    """The server's path: Spool.begin, message, one attachment in 1 MiB pieces, commit."""
    from sealdrop.storage import Spool

    spool_dir = Path(args.work) / ("spool" if keys == 1 else f"spool-{keys}")
    recipients = _recipients(Path(args.work), keys)
    header = _header_seconds(recipients)
    read = _read_pieces(Path(args.input))
    start = time.perf_counter()
    submission = Spool(spool_dir, recipients).begin()
    submission.add_message("benchmark")
    submission.begin_attachment("data.bin", "application/octet-stream")
    while piece := read():
        submission.write(piece)
    submission.end_attachment()
    before_commit = time.perf_counter()
    submission.commit()
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "commit_seconds": end - before_commit,
        "header_ms": header * 1e3,
    }


def child_seal_lib(args: argparse.Namespace) -> dict[str, float]:
    """PayloadSealer + PayloadWriter to a file with os.write: no spool bookkeeping, no fsync."""
    from sealdrop.crypto import PayloadSealer
    from sealdrop.keys import load_public_key
    from sealdrop.records import PayloadWriter

    recipient = load_public_key(Path(args.work) / "keys" / "reviewer.pub")
    read = _read_pieces(Path(args.input))
    out = os.open(Path(args.work) / "lib.sealed", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    start = time.perf_counter()
    sealer = PayloadSealer(recipient)

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(out, view) :]

    write(sealer.header)
    writer = PayloadWriter(lambda data: write(sealer.update(data)), DAY, "0000-0000")
    writer.message("benchmark")
    writer.begin_attachment("data.bin", "application/octet-stream")
    while piece := read():
        writer.attachment_data(piece)
    writer.end_attachment()
    writer.close()
    write(sealer.finalize())
    os.close(out)
    return {"seconds": time.perf_counter() - start}


def child_open(args: argparse.Namespace, keys: int = 1) -> dict[str, float]:
    """open_payload + read_payload, the attachment's bytes written to a file."""
    from sealdrop.crypto import open_payload
    from sealdrop.keys import load_secret_key
    from sealdrop.records import AttachmentBytes, PayloadEnd, read_payload

    key = load_secret_key(Path(args.work) / "keys" / "reviewer.key", PASSPHRASE)
    out = os.open(Path(args.work) / "opened.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    start = time.perf_counter()
    ended = False
    spool = Path(args.work) / ("spool" if keys == 1 else f"spool-{keys}")
    with open(_only_spool_file(spool), "rb") as source:
        payload = open_payload(source, key)
        for event in read_payload(payload, payload.version):
            if isinstance(event, AttachmentBytes):
                view = memoryview(event.data)
                while view:
                    view = view[os.write(out, view) :]
            elif isinstance(event, PayloadEnd):
                ended = True
    os.close(out)
    elapsed = time.perf_counter() - start
    if not ended:
        raise SystemExit("the payload did not end with PayloadEnd")
    return {"seconds": elapsed}


def _only_spool_file(spool: Path) -> Path:
    (path,) = (p for p in spool.iterdir() if p.name.endswith(".sealed"))
    return path


CHILDREN: dict[str, Callable[[argparse.Namespace], dict[str, float]]] = {
    "push": child_push,
    "push+sha256": lambda a: child_push(a, with_sha=True),
    "pull": child_pull,
    "pull+sha256": lambda a: child_pull(a, with_sha=True),
    "sha256": child_sha256,
    "seal": child_seal,
    "seal-16": lambda a: child_seal(a, keys=TEAM_KEYS),
    "seal-lib": child_seal_lib,
    "open": child_open,
    "open-16": lambda a: child_open(a, keys=TEAM_KEYS),
}


# --- the parent: prepare files, run each measurement in a subprocess ----------------


def run_process(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run `argv`; return its wall time, its own peak RSS in KiB, and its stdout.

    The peak comes from GNU time when installed: a child forked from this process
    would otherwise inherit this process's peak as its floor (Linux keeps the high
    water mark across exec), which hides how little `age` uses.
    """
    with tempfile.TemporaryDirectory() as scratch:
        rss_file = Path(scratch) / "rss"
        timed = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file)] if GNU_TIME else []
        with open(Path(scratch) / "out", "w+b") as out:
            start = time.perf_counter()
            process = subprocess.Popen(timed + argv, stdout=out, stderr=subprocess.PIPE, env=env)
            assert process.stderr is not None
            errors = process.stderr.read()
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - start
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                raise SystemExit(f"{argv[:4]} failed ({process.returncode}): {errors.decode()}")
            out.seek(0)
            stdout = out.read().decode()
        rss = int(rss_file.read_text().split()[-1]) if GNU_TIME else usage.ru_maxrss
        return wall, rss, stdout


def generate_input(path: Path, size: int) -> None:
    block = bytearray(os.urandom(PIECE))
    with open(path, "wb") as handle:
        for index in range(-(-size // PIECE)):
            block[:8] = struct.pack(">Q", index)  # no two pieces alike
            handle.write(block[: min(PIECE, size - index * PIECE)])


def make_keys(work: Path) -> str | None:
    """Make the sealdrop key pair (cheap KDF cost) and, if age is here, an age key."""
    from sealdrop.keys import KdfCost, write_key_pair

    (work / "keys").mkdir(mode=0o700)
    write_key_pair(work / "keys", PASSPHRASE, KdfCost.MIN)
    if not shutil.which("age") or not shutil.which("age-keygen"):
        return None
    subprocess.run(
        ["age-keygen", "-o", str(work / "keys" / "age.key")], check=True, capture_output=True
    )
    match = re.search(r"public key: (age1\w+)", (work / "keys" / "age.key").read_text())
    assert match is not None
    return match.group(1)


class Bench:
    def __init__(self, work: Path, size: int, repeat: int) -> None:
        self.work = work
        self.size = size
        self.repeat = repeat
        self.input = work / "input.bin"
        self.results: dict[str, Result] = {}
        self.extra: dict[str, list[float]] = {}

    def record(self, name: str, seconds: float, rss: int, note: str = "") -> None:
        if name in self.results:
            self.results[name].seconds.append(seconds)
            self.results[name].peak_rss_kib = max(self.results[name].peak_rss_kib, rss)
        else:
            self.results[name] = Result(name, [seconds], rss, self.size, note)

    def child(self, mode: str) -> None:
        argv = [sys.executable, __file__, "--child", mode, "--size", str(self.size)]
        argv += ["--work", str(self.work), "--input", str(self.input)]
        _, rss, out = run_process(argv)
        report = json.loads(out.strip().splitlines()[-1])
        self.record(mode, report.pop("seconds"), rss)
        for key, value in report.items():
            self.extra.setdefault(f"{mode}.{key}", []).append(value)

    def command(self, name: str, argv: list[str], note: str, **env: str) -> None:
        wall, rss, _ = run_process(argv, env={**os.environ, **env} if env else None)
        self.record(name, wall, rss, note)

    def settle(self) -> None:
        # Flush the last step's dirty pages so its writeback does not slow the next step.
        os.sync()

    def one_round(self, recipient: str | None) -> None:
        for mode in ("push", "pull", "sha256", "push+sha256", "pull+sha256"):
            self.child(mode)
        spool = self.work / "spool"
        team_spool = self.work / f"spool-{TEAM_KEYS}"
        for folder in (spool, team_spool):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700)
        self.settle()
        # One key and sixteen, back to back, twice in turn: the ratio is what matters.
        for mode in ("seal", "seal-16"):
            self.child(mode)
            self.settle()
        self.child("seal-lib")
        (self.work / "lib.sealed").unlink()
        self.settle()
        for mode in ("open", "open-16"):
            self.child(mode)
            (self.work / "opened.bin").unlink()
            self.settle()
        opened = self.work / "opened"
        self.command(
            "sealdrop-open",
            [sys.executable, "-m", "sealdrop", "open", str(spool), "--key"]
            + [str(self.work / "keys" / "reviewer.key"), "--out", str(opened)],
            "whole process: start-up, KDF (min cost), fsync",
            SEALDROP_PASSPHRASE=PASSPHRASE,
        )
        shutil.rmtree(opened)
        self.settle()
        if recipient is None:
            return
        aged = self.work / "input.age"
        self.command(
            "age-encrypt",
            ["age", "-r", recipient, "-o", str(aged), str(self.input)],
            "whole process",
        )
        self.settle()
        self.command(
            "age-decrypt",
            ["age", "-d", "-i", str(self.work / "keys" / "age.key")]
            + ["-o", str(self.work / "age.out"), str(aged)],
            "whole process",
        )
        aged.unlink()
        (self.work / "age.out").unlink()
        self.settle()


def ratios(results: dict[str, Result]) -> dict[str, float]:
    found = {}
    pairs = [(n, t, b) for n, t, b, _ in TARGETS] + INFO_RATIOS
    for name, top, bottom in pairs:
        if top in results and bottom in results:
            found[name] = results[top].mb_s / results[bottom].mb_s
    return found


def print_report(bench: Bench, age_version: str | None) -> None:
    results = bench.results
    print(f"\nsize {bench.size / MIB:.0f} MiB, best of {bench.repeat}, {os.cpu_count()} CPUs")
    print(f"age: {age_version or 'not installed (apt-get install age)'}\n")
    print(f"{'measurement':<16} {'MB/s':>8} {'best s':>8} {'median s':>9} {'peak RSS':>10}  note")
    for result in results.values():
        print(
            f"{result.name:<16} {result.mb_s:>8.0f} {result.best:>8.3f} "
            f"{statistics.median(result.seconds):>9.3f} "
            f"{result.peak_rss_kib / 1024:>7.1f} MiB  {result.note}"
        )
    for key, values in bench.extra.items():
        unit = "ms" if key.endswith("_ms") else "s"
        print(f"  {key}: best {min(values):.3f} {unit}")
    found = ratios(results)
    print()
    for name, _, _, target in TARGETS:
        if name in found:
            verdict = "met" if found[name] >= target else "MISSED"
            print(f"{name:<34} {found[name]:5.2f}x  (target >= {target}x: {verdict})")
    for name, _, _ in INFO_RATIOS:
        if name in found:
            print(f"{name:<34} {found[name]:5.2f}x")
    sealdrop_rss = {
        n: r.peak_rss_kib / 1024
        for n, r in results.items()
        if n in ("seal", "seal-16", "seal-lib", "open", "open-16", "sealdrop-open")
    }
    worst = max(sealdrop_rss.values())
    verdict = "met" if worst < RSS_LIMIT_MIB else "MISSED"
    print(f"{'peak RSS of sealdrop paths':<34} {worst:5.1f} MiB (target < 64 MiB: {verdict})")
    print(
        json.dumps(
            {
                "bench": "crypto",
                "size": bench.size,
                "repeat": bench.repeat,
                "cpus": os.cpu_count(),
                "age": age_version,
                "results": {
                    n: {
                        "mb_s": round(r.mb_s, 1),
                        "seconds": [round(s, 4) for s in r.seconds],
                        "peak_rss_mib": round(r.peak_rss_kib / 1024, 1),
                    }
                    for n, r in results.items()
                },
                "extra": {k: [round(v, 4) for v in vs] for k, vs in bench.extra.items()},
                "ratios": {k: round(v, 3) for k, v in found.items()},
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024 * MIB, help="bytes (default 1 GiB)")
    parser.add_argument("--quick", action="store_true", help="64 MiB instead")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best is kept")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the temporary files go (default: $TMPDIR)"
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.size = 64 * MIB
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0
    if args.size < PIECE or args.size % PIECE:
        parser.error("--size must be a whole number of MiB")

    age_version = None
    if shutil.which("age"):
        age_version = subprocess.run(
            ["age", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="sealdrop-bench-", dir=args.dir))
    try:
        bench = Bench(work, args.size, args.repeat)
        recipient = make_keys(work)
        generate_input(bench.input, args.size)
        bench.settle()
        for round_ in range(args.repeat):
            print(f"round {round_ + 1}/{args.repeat}...", file=sys.stderr)
            bench.one_round(recipient)
        print_report(bench, age_version)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
