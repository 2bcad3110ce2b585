"""The spool reader's fuzz target: replay every kept crash input, and fuzz for 20 s.

The replay needs nothing but the package. The timed run needs atheris (in the test
extra: `pip install -e '.[test]'`); a crash it finds is written to fuzz/crashes/ and
fails the test, so the input is there to commit and replay from then on.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from sealdrop.tests.reliability import Result

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
CRASHES = FUZZ / "crashes"
TARGET = FUZZ / "spool_reader.py"
FUZZ_SECONDS = 20


def load_target() -> ModuleType:
    spec = importlib.util.spec_from_file_location("spool_reader_fuzz", TARGET)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kept_inputs() -> list[Path]:
    return sorted(p for p in CRASHES.iterdir() if p.is_file() and p.suffix != ".md")


def replay_inputs() -> list[tuple[str, bytes]]:
    """Every kept crash input, and the seeds: the replay always runs the target, even
    before any crash was kept."""
    inputs = [(p.name, p.read_bytes()) for p in kept_inputs()]
    return inputs + [(f"seed-{i}", seed) for i, seed in enumerate(load_target().seeds())]


@pytest.mark.parametrize(("name", "data"), replay_inputs(), ids=[n for n, _ in replay_inputs()])
def test_kept_crash_inputs_and_seeds_are_refused_or_read_cleanly(name: str, data: bytes) -> None:
    load_target().one_input(data)


def test_seed_inputs_reach_the_end_of_a_valid_payload() -> None:
    # The seeds are what make fuzzing reach the record parser: they must be valid.
    target = load_target()
    seeds = list(target.seeds())
    for seed in seeds[:2] + seeds[3:]:
        assert target.read_spool(target.spool_from(seed), target.TEST_KEY) > 2


def test_the_target_refuses_damage_with_spool_file_errors_only() -> None:
    from sealdrop.crypto import SpoolFileError

    target = load_target()
    spool = target.sealed(target.valid_payload("x", b"y" * 100))
    for cut in range(0, len(spool), 7):
        with pytest.raises(SpoolFileError):
            target.read_spool(spool[:cut], target.TEST_KEY)


@pytest.mark.slow
def test_fuzzing_the_spool_reader_finds_no_crash(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed: pip install -e '.[test]' (fuzz run not done)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, seed in enumerate(load_target().seeds()):
        (corpus / f"seed-{index}").write_bytes(seed)
    before = set(kept_inputs())
    result = Result(
        "fuzz_spool_reader",
        load=f"atheris, {FUZZ_SECONDS} s",
        faults="raw, fuzzed-payload and damaged spool files",
    )
    run = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            f"-max_total_time={FUZZ_SECONDS}",
            "-rss_limit_mb=1024",
            "-timeout=10",
            "-max_len=8192",
            f"-artifact_prefix={CRASHES}/",
            "-print_final_stats=1",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 120,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    stats = [line for line in run.stderr.splitlines() if line.startswith("stat::")]
    runs = next((line.split()[-1] for line in stats if "number_of_executed_units" in line), "?")
    result.bad_inputs = int(runs) if runs.isdigit() else 0
    result.notes = [f"{len(kept_inputs())} kept crash inputs replayed by the regression test"]
    result.write()
    new = sorted(set(kept_inputs()) - before)
    assert run.returncode == 0 and not new, (
        f"the fuzzer found a crash; kept as {[p.name for p in new]} in {CRASHES}: "
        f"commit it with the fix\n{run.stderr[-3000:]}"
    )
