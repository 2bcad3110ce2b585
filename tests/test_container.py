"""The container image is built from the package's tracked files only (issue 12, item 7).

The reproduction: the Dockerfile copied the whole checkout into a layer, `demo/`
included (the demo onion key, codename salt and passphrase, and plaintext in
`demo/opened/` for an operator who followed `./scripts/run`'s hint), and a later
`rm -rf` did not take it out of that layer. Docker is not needed to check the fix:
`./scripts/run` is run for real in a fresh clone (loopback only), a submission is
sent and opened as its hint says, junk is left around, and `.dockerignore` (by
Docker's matching rules, tests/test_deploy.py) must let in only tracked files of the
package; the Dockerfile's last stage must copy nothing from the build context; and
`scripts/build-image` must send exactly the tracked tree (a stand-in `docker` records
what it gets).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import message_and_files
from .test_deploy import dockerfile_instructions, dockerignore_excludes
from .test_quickstart import make_demo_keys_cheaply

ROOT = Path(__file__).resolve().parent.parent
URL_LINE = re.compile(r"^http://127\.0\.0\.1:(\d+)/$", re.M)
# Left in a checkout by hand or by tools: none may reach a build.
JUNK = (
    "notes.txt",
    "reviewer.key",
    "passphrase.txt",
    "opened/0001/message.txt",
    "web/notes.txt",
    "web/leftover.sealed",
    "storage/spool/x.part",
    "templates/draft.txt",
    "static/photo.jpg",
    "build/lib/sealdrop/app.py",
    "sealdrop.egg-info/PKG-INFO",
    "web/__pycache__/upload.cpython-311.pyc",
    ".venv/bin/python",
    "tests/test_new.py",
    "docs/private.md",
)


def context_files(checkout: Path) -> set[str]:
    """The files `docker build` would send from `checkout`, by .dockerignore's rules."""
    found = set()
    for folder, _dirs, names in os.walk(checkout):
        for name in names:
            path = (Path(folder) / name).relative_to(checkout).as_posix()
            if not dockerignore_excludes(path):
                found.add(path)
    return found


def tracked(checkout: Path) -> set[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=checkout, capture_output=True, text=True, check=True
    ).stdout
    return set(out.splitlines())


def package_files(files: set[str]) -> set[str]:
    """The tracked files `pip install` puts in the image (pyproject's packages and data)."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        tool = tomllib.load(handle)["tool"]["setuptools"]
    folders = {
        name.removeprefix("sealdrop").lstrip(".").replace(".", "/") for name in tool["packages"]
    }
    wanted = {"pyproject.toml", "README.md"}
    for path in files:
        folder = path.rpartition("/")[0]
        if path.endswith(".py") and folder in folders:
            wanted.add(path)
    for pattern in tool["package-data"]["sealdrop"]:
        wanted |= {str(p.relative_to(ROOT)) for p in ROOT.glob(pattern) if p.is_file()}
    return wanted & files


@pytest.fixture
def clone() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sdc-") as parent:
        target = Path(parent) / "c"
        subprocess.run(
            ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(target)],
            check=True,
            capture_output=True,
        )
        yield target


def run_demo_and_open_a_submission(checkout: Path) -> str:
    """./scripts/run in `checkout`, loopback only: one submission, then the printed
    `sealdrop open` hint, run as an operator would. Returns what scripts/run printed.
    The demo keys are made ahead at the test-only cost: what they are made of is not
    what this checks, only that the files land in `demo/`."""
    make_demo_keys_cheaply(checkout)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP_")}
    env.update(SEALDROP_LOCAL_ONLY="1", SEALDROP_VENV=sys.prefix, SEALDROP_LISTEN="127.0.0.1:0")
    log = checkout.parent / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["./scripts/run"],
            cwd=checkout,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while not (match := URL_LINE.search(log.read_text(errors="replace"))):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        body = message_and_files("plaintext canary for the image", ("photo.jpg", b"\xff\xd8jpeg"))
        request = urllib.request.Request(
            f"http://127.0.0.1:{match.group(1)}/submit",
            data=body.body,
            headers={"Content-Type": body.content_type},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    printed = log.read_text(errors="replace")
    hint = re.search(r"SEALDROP_PASSPHRASE=\$\(cat \S+\) (\S+) open \\\n!!!\s+(.*?)\s*\n", printed)
    assert hint is not None, printed
    command = f"SEALDROP_PASSPHRASE={shlex.quote(passphrase(checkout))} {hint.group(1)} open "
    subprocess.run(command + hint.group(2), shell=True, cwd=checkout, env=env, check=True)
    return printed


def passphrase(checkout: Path) -> str:
    return (checkout / "demo" / "offline-reviewer" / "passphrase.txt").read_text().strip()


@pytest.mark.slow
def test_what_scripts_run_makes_never_reaches_the_build(clone: Path) -> None:
    run_demo_and_open_a_submission(clone)
    demo = {p.relative_to(clone).as_posix() for p in (clone / "demo").rglob("*") if p.is_file()}
    # What the reproduction names is there to be left out.
    for made in (
        "demo/server/state/codename.salt",
        "demo/offline-reviewer/passphrase.txt",
        "demo/offline-reviewer/reviewer.key",
    ):
        assert made in demo, sorted(demo)
    opened = [p for p in demo if p.startswith("demo/opened/") and p.endswith("message.txt")]
    assert opened, sorted(demo)
    assert "plaintext canary" in (clone / opened[0]).read_text()
    for junk in JUNK:
        (clone / junk).parent.mkdir(parents=True, exist_ok=True)
        (clone / junk).write_text("not for the image")

    sent = context_files(clone)
    assert sent & demo == set()
    assert sent <= tracked(clone), sorted(sent - tracked(clone))
    assert sent == package_files(tracked(clone)), sorted(sent ^ package_files(tracked(clone)))


def test_the_build_context_is_the_package_and_nothing_else() -> None:
    """In this checkout as it is: only the package's tracked files are let in."""
    files = tracked(ROOT)
    sent = {path for path in files if not dockerignore_excludes(path)}
    assert sent == package_files(files), sorted(sent ^ package_files(files))
    for junk in JUNK:
        assert dockerignore_excludes(junk), junk


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, one list per FROM."""
    found: list[list[tuple[str, str]]] = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            found.append([])
        found[-1].append((instruction, arguments))
    return found


def test_the_image_is_a_later_stage_that_copies_only_the_installed_package() -> None:
    build, image = stages()
    name = build[0][1].split()[-1]
    assert build[0][1].split()[-2].upper() == "AS"
    copies = [args for instruction, args in image if instruction in ("COPY", "ADD")]
    assert copies == [f"--from={name} /opt/sealdrop /opt/sealdrop"]
    assert any(i == "COPY" and a.split()[0] == "." for i, a in build)
    assert image[0][1] == build[0][1].split()[0]  # the same Python, so the venv runs as built


def test_build_image_sends_exactly_the_tracked_tree(clone: Path, tmp_path: Path) -> None:
    """scripts/build-image with a stand-in `docker` that keeps the context it is sent."""
    for junk in JUNK:
        (clone / junk).parent.mkdir(parents=True, exist_ok=True)
        (clone / junk).write_text("not for the image")
    (clone / "demo").mkdir()
    (clone / "demo" / "passphrase.txt").write_text("demo secret")
    fake = tmp_path / "bin"
    fake.mkdir()
    received = tmp_path / "context.tar"
    (fake / "docker").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncat > {received}\n')
    (fake / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["scripts/build-image", "sealdrop:test"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "args").read_text().split() == ["build", "--tag", "sealdrop:test", "-"]
    with tarfile.open(received) as archive:
        names = {m.name for m in archive.getmembers() if m.isfile()}
    assert names == tracked(clone)
