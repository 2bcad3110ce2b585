"""The fuzz targets: replay every kept crash input, and fuzz each for 20 s.

Two targets: fuzz/spool_reader.py (the reviewer's reader of spool files) and
fuzz/upload_body.py (the server's upload path, whole and in small reads). The replay
needs nothing but the package. The timed runs need atheris (in the test extra:
`pip install -e '.[test]'`); a crash one finds is written to the target's crash
folder and fails the test, so the input is there to commit and replay from then on.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from sealdrop.tests.reliability import Result

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
FUZZ_SECONDS = 20


@dataclass(frozen=True)
class Target:
    name: str
    crashes: Path
    faults: str

    @property
    def script(self) -> Path:
        return FUZZ / f"{self.name}.py"


SPOOL_READER = Target(
    "spool_reader", FUZZ / "crashes", "raw, fuzzed-payload and damaged spool files"
)
UPLOAD_BODY = Target(
    "upload_body", FUZZ / "upload_crashes", "multipart bodies, whole and in 1-64 byte reads"
)
TARGETS = [SPOOL_READER, UPLOAD_BODY]
# The spool reader's names, kept for the tests below.
CRASHES = SPOOL_READER.crashes
TARGET = SPOOL_READER.script


def load_target(target: Target = SPOOL_READER) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{target.name}_fuzz", target.script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kept_inputs(target: Target = SPOOL_READER) -> list[Path]:
    return sorted(p for p in target.crashes.iterdir() if p.is_file() and p.suffix != ".md")


def replay_inputs() -> list[tuple[Target, str, bytes]]:
    """Every kept crash input, and the seeds, of each target: the replay always runs
    the targets, even before any crash was kept."""
    inputs = []
    for target in TARGETS:
        inputs += [(target, p.name, p.read_bytes()) for p in kept_inputs(target)]
        seeds = load_target(target).seeds()
        inputs += [(target, f"seed-{i}", seed) for i, seed in enumerate(seeds)]
    return inputs


@pytest.mark.parametrize(
    ("target", "name", "data"),
    replay_inputs(),
    ids=[f"{target.name}/{name}" for target, name, _ in replay_inputs()],
)
def test_kept_crash_inputs_and_seeds_are_refused_or_read_cleanly(
    target: Target, name: str, data: bytes
) -> None:
    load_target(target).one_input(data)


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


def test_the_upload_seeds_are_stored_whole_and_split() -> None:
    # The seeds are what make fuzzing reach the builder: they must be accepted forms.
    target = load_target(UPLOAD_BODY)
    for seed in target.seeds():
        boundary, body = target.BOUNDARIES[seed[0] >> 7], seed[1:]
        kind, calls = target.outcome(target.io.BytesIO(body), body, boundary)
        assert kind == "stored" and ("end",) in calls


def test_the_upload_target_fails_when_a_split_changes_the_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = load_target(UPLOAD_BODY)
    seed = next(target.seeds())
    real = target.outcome
    calls = iter(range(2))

    def outcome_that_drifts(*args: object) -> object:
        result = real(*args)
        return result if next(calls) == 0 else ("stored", [])

    monkeypatch.setattr(target, "outcome", outcome_that_drifts)
    with pytest.raises(AssertionError, match="split reads changed the outcome"):
        target.one_input(seed)


@dataclass
class FuzzRun:
    """One target's timed run, started in the background."""

    process: subprocess.Popen[bytes]
    log: Path  # its standard error: libFuzzer's progress and final stats
    before: set[Path]
    result: Result


def start_fuzzing(target: Target, corpus: Path, log: Path) -> FuzzRun:
    corpus.mkdir()
    for index, seed in enumerate(load_target(target).seeds()):
        (corpus / f"seed-{index}").write_bytes(seed)
    before = set(kept_inputs(target))
    result = Result(
        f"fuzz_{target.name}",
        load=f"atheris, {FUZZ_SECONDS} s",
        faults=target.faults,
    )
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                str(target.script),
                f"-max_total_time={FUZZ_SECONDS}",
                "-rss_limit_mb=1024",
                "-timeout=10",
                "-max_len=8192",
                f"-artifact_prefix={target.crashes}/",
                "-print_final_stats=1",
                str(corpus),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    return FuzzRun(process, log, before, result)


@pytest.fixture(scope="module")
def fuzz_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, FuzzRun]]:
    """Every selected target's timed run, all started at once: each is one process
    for a fixed wall time, so side by side they take the time of one (one core each on
    a two-core machine) rather than their sum."""
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed: pip install -e '.[test]' (fuzz run not done)")
    selected = [
        item.callspec.params["target"]
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == "test_fuzzing_finds_no_crash"
    ]
    runs: dict[str, FuzzRun] = {}
    try:
        for target in TARGETS:
            if target in selected:
                folder = tmp_path_factory.mktemp(f"fuzz_{target.name}")
                runs[target.name] = start_fuzzing(target, folder / "corpus", folder / "stderr")
        yield runs
    finally:
        for run in runs.values():
            if run.process.poll() is None:
                run.process.kill()  # only when a test ended before its run did
            run.process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_fuzzing_finds_no_crash(target: Target, fuzz_runs: dict[str, FuzzRun]) -> None:
    run = fuzz_runs[target.name]
    returncode = run.process.wait(timeout=FUZZ_SECONDS + 120)
    stderr = run.log.read_text(errors="replace")
    result = run.result
    stats = [line for line in stderr.splitlines() if line.startswith("stat::")]
    runs = next((line.split()[-1] for line in stats if "number_of_executed_units" in line), "?")
    result.bad_inputs = int(runs) if runs.isdigit() else 0
    kept = len(kept_inputs(target))
    result.notes = [f"{kept} kept crash inputs replayed by the regression test"]
    result.write()
    new = sorted(set(kept_inputs(target)) - run.before)
    assert returncode == 0 and not new, (
        f"the fuzzer found a crash; kept as {[p.name for p in new]} in {target.crashes}: "
        f"commit it with the fix\n{stderr[-3000:]}"
    )
