"""The README's promises: the quick start's two commands, the first one run for real in a
fresh clone (inside a network namespace with only loopback, so the tor it starts can
make the onion address but never reach the public Tor network), and the configuration
table, which must say what settings.py says.

Rewrite the README's table after changing a setting with:
    .venv/bin/python -m sealdrop.tests.test_quickstart
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealdrop.settings import Settings, declared, settings_table
from sealdrop.tests.tor_local import tor_binary

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ONION_LINE = re.compile(r"^(?:http://)?([a-z2-7]{56})\.onion/?$")
# From starting ./scripts/run to the onion address, demo key derivation included.
URL_BOUND_SECONDS = 60.0


# --- the quick start block -----------------------------------------------------------------


def readme_section(title: str) -> str:
    text = README.read_text("utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"README.md has no section '## {title}'"
    return match.group(1)


def quick_start_commands() -> list[str]:
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", readme_section("Quick start"), re.M | re.S)
    assert len(blocks) == 1, "the quick start holds exactly one code block"
    [(language, body)] = blocks
    assert language in ("sh", "bash", "shell")
    return [line.strip() for line in body.splitlines() if line.strip()]


def ci_test_command() -> str:
    """The command .ci/run runs (its last line: ``exec COMMAND``)."""
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    last = shlex.split(lines[-1])
    assert last[0] == "exec"
    return shlex.join(last[1:])


def test_the_quick_start_is_one_block_of_two_commands_run_then_test() -> None:
    commands = quick_start_commands()
    assert commands == ["./scripts/run", ci_test_command()]
    for command in commands:
        program = ROOT / command.split()[0]
        assert program.is_file() and os.access(program, os.X_OK), program


# --- the first command, for real ----------------------------------------------------------


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the first command runs in a network namespace (ip netns add)"
    if shutil.which("ip") is None:
        return "needs `ip` (Debian: apt-get install iproute2; scripts/bootstrap --test does)"
    if tor_binary() is None:
        return "needs the Debian tor package"
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return "needs a git checkout to clone the committed tree from"
    if not (Path(sys.prefix) / "bin" / "sealdrop").exists():
        return "runs in a virtual environment with sealdrop installed (scripts/bootstrap)"
    return None


needs_namespace = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


@dataclasses.dataclass
class Line:
    at: float  # seconds since the command started
    text: str


class Running:
    """A command in its own process group, its output lines collected with their times."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[Line] = []
        self._fresh: queue.Queue[Line | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        # Closed here, at its end, whichever way the test goes: a pipe left open would
        # surface as a ResourceWarning in whichever test runs next.
        with self.process.stdout as output:
            for text in output:
                self._fresh.put(Line(time.monotonic() - self.started, text.rstrip("\n")))
        self._fresh.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> Line:
        deadline = self.started + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._fresh.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if pattern.search(line.text):
                return line
        pytest.fail(f"no line matching {pattern.pattern!r} in {timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        return "\n".join(f"{line.at:6.1f} {line.text}" for line in self.lines)

    def stop(self) -> None:
        """SIGTERM to the whole process group (as Ctrl-C or systemd would), then wait."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        asked = time.monotonic()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self._reader.join(timeout=15)
            self._collect()
            pytest.fail(f"the command ignored SIGTERM for 30 s:\n{self.output()}")
        print(f"stopped {time.monotonic() - asked:.1f} s after SIGTERM")
        # Every process that had the output pipe is gone once the reader sees its end.
        self._reader.join(timeout=15)
        assert not self._reader.is_alive(), f"a process still holds the output:\n{self.output()}"
        self._collect()

    def _collect(self) -> None:
        """Lines read since the last `wait_for`, kept for `output`."""
        while not self._fresh.empty():
            line = self._fresh.get_nowait()
            if line is not None:
                self.lines.append(line)


def namespace_pids(namespace: str) -> list[int]:
    result = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=True
    )
    return [int(pid) for pid in result.stdout.split()]


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@pytest.fixture
def offline_namespace() -> Iterator[str]:
    """A network namespace with only loopback: nothing started in it can leave the machine."""
    name = f"sealdrop-test-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        links = subprocess.run(
            ["ip", "netns", "exec", name, "ip", "-o", "link", "show"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
        yield name
    finally:
        for pid in namespace_pids(name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def fresh_clone() -> Iterator[Path]:
    """The committed tree, cloned into a short path (tor's control socket path is
    limited to about 100 bytes, and it lives under the clone's demo folder)."""
    parent = Path(tempfile.mkdtemp(prefix="sdq-"))
    clone = parent / "c"
    try:
        subprocess.run(
            ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)],
            check=True,
            capture_output=True,
        )
        yield clone
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def run_env(reuse_venv: bool) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SEALDROP_")}
    if reuse_venv:
        # This checkout's virtual environment instead of a fresh install, where the
        # install is not what is tested.
        env["SEALDROP_VENV"] = sys.prefix
    return env


def first_command(
    clone: Path, namespace: str, reuse_venv: bool, prefix: list[str] | None = None
) -> Running:
    [command, _] = quick_start_commands()
    argv = [*(prefix or []), "ip", "netns", "exec", namespace, *shlex.split(command)]
    return Running(argv, clone, run_env(reuse_venv))


def make_demo_keys_cheaply(checkout: Path) -> None:
    """The demo keys ./scripts/run would make in `checkout`, at the test-only cost, so
    that it finds them and makes none: for tests about something else than the key's
    making (Argon2id at the sensitive cost is 3-5 s for each of its two pairs, and as
    much again to open with it). The first test below makes them for real."""
    offline = checkout / "demo" / "offline-reviewer"
    offline.mkdir(mode=0o700, parents=True)
    passphrase = offline / "passphrase.txt"
    passphrase.write_text(secrets.token_urlsafe(24) + "\n")
    passphrase.chmod(0o600)
    keygen = [sys.executable, "-m", "sealdrop", "keygen", "--out", str(offline)]
    env = {**run_env(reuse_venv=True), "SEALDROP_PASSPHRASE": passphrase.read_text().strip()}
    subprocess.run([*keygen, "--kdf-cost", "min"], env=env, check=True, capture_output=True)


def install_as_the_first_command_would(clone: Path) -> float:
    """scripts/bootstrap in the clone: a new .venv with the package, the real install
    path (outside the namespace: pip may need the network). Returns its seconds."""
    started = time.monotonic()
    result = subprocess.run(
        [str(clone / "scripts" / "bootstrap")],
        cwd=clone,
        env=run_env(reuse_venv=False),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (clone / ".venv" / "bin" / "sealdrop").exists()
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.tor
@needs_namespace
def test_the_first_command_prints_the_onion_url_without_any_network(
    fresh_clone: Path, offline_namespace: str
) -> None:
    install_seconds = install_as_the_first_command_would(fresh_clone)
    print(f"scripts/bootstrap installed the clone's .venv in {install_seconds:.1f} s")
    stamp = fresh_clone / ".venv" / ".sealdrop-installed"
    installed_at = stamp.stat().st_mtime
    first = first_command(fresh_clone, offline_namespace, reuse_venv=False)
    try:
        url = first.wait_for(ONION_LINE, URL_BOUND_SECONDS)
        print(f"onion URL after {url.at:.1f} s")
        # No network at all: the run script must say so rather than sit silent.
        first.wait_for(re.compile(r"tor has NOT reached the Tor network yet"), url.at + 25)
        names = [process_name(pid) for pid in namespace_pids(offline_namespace)]
        assert "tor" in names, names
    finally:
        first.stop()
    output = first.output()
    assert "DEMO KEY" in output and "OFFLINE machine" in output
    assert not re.search(r"onion service published", output)
    deadline = time.monotonic() + 15
    while (left := namespace_pids(offline_namespace)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"left running: {[(pid, process_name(pid)) for pid in left]}"
    # The run's own bootstrap found everything installed and installed nothing again.
    assert stamp.stat().st_mtime == installed_at

    demo = fresh_clone / "demo"
    server = demo / "server"
    for folder in (
        server / "spool",
        server / "state",
        server / "replies",
        demo / "offline-reviewer",
    ):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE((demo / "offline-reviewer" / "passphrase.txt").stat().st_mode) == 0o600
    assert (server / "state" / "hs_ed25519_secret_key").exists()
    assert (server / "state" / "codename.salt").exists()
    assert not (server / "reviewer.key").exists()
    # Signed replies work in the demo: the server has the demo's reply-signing key.
    assert (server / "reply-signing.pub").read_bytes() == (
        demo / "offline-reviewer" / "reply-signing.pub"
    ).read_bytes()
    assert not (server / "reply-signing.key").exists()
    assert "reply_signing_key_file is not set" not in output
    assert "--signing-key" in output
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=fresh_clone, capture_output=True, text=True
    )
    assert status.stdout == "", "the demo folder must not show up in git"

    # Again: nothing is made twice, and the address is the same.
    again = first_command(fresh_clone, offline_namespace, reuse_venv=False)
    try:
        second_url = again.wait_for(ONION_LINE, URL_BOUND_SECONDS)
    finally:
        again.stop()
    assert ONION_LINE.match(second_url.text) and ONION_LINE.match(url.text)
    print(f"again, with the key and the venv in place: onion URL after {second_url.at:.1f} s")
    assert second_url.text == url.text
    assert "making a DEMO reviewer key pair" not in again.output()
    assert "DEMO KEY" in again.output()


@pytest.mark.slow
@needs_namespace
def test_without_tor_the_first_command_falls_back_to_loopback_only_and_says_so(
    fresh_clone: Path, offline_namespace: str
) -> None:
    make_demo_keys_cheaply(fresh_clone)
    # tor hidden in a private mount namespace, as on a machine without it where
    # bootstrap could not install it.
    tor = tor_binary()
    assert tor is not None
    hide = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
    real = shlex.quote(os.path.realpath(tor))
    hide += [f'mount --bind /dev/null {real} && exec "$@"', "hide-tor"]
    run = first_command(fresh_clone, offline_namespace, reuse_venv=True, prefix=hide)
    try:
        run.wait_for(re.compile(r"^http://127\.0\.0\.1:8080/$"), URL_BOUND_SECONDS)
    finally:
        run.stop()
    output = run.output()
    assert "tor is not installed" in output and "apt-get install tor" in output
    assert "LOOPBACK-ONLY" in output and "NOT published on Tor" in output
    assert not any(ONION_LINE.match(line.text) for line in run.lines)


# --- the configuration table -------------------------------------------------------------

TABLE_START = "<!-- settings-table -->"
TABLE_END = "<!-- /settings-table -->"


def readme_with_table(text: str) -> str:
    start, end = text.index(TABLE_START), text.find(TABLE_END)
    tail = text[end + len(TABLE_END) :] if end != -1 else text[start + len(TABLE_START) :]
    return f"{text[:start]}{TABLE_START}\n{settings_table()}\n{TABLE_END}{tail}"


def test_every_setting_is_declared_once_with_its_meaning() -> None:
    names = [entry.name for entry in declared()]
    assert names == [field.name for field in dataclasses.fields(Settings)]
    assert all(entry.spec.meaning and entry.spec.fix for entry in declared())


def test_the_readme_configuration_table_matches_settings_py() -> None:
    text = README.read_text("utf-8")
    assert TABLE_START in readme_section("Configuration")
    assert text == readme_with_table(text), (
        "README.md's settings table is out of date: run "
        "`.venv/bin/python -m sealdrop.tests.test_quickstart` to rewrite it"
    )


def test_the_table_shows_defaults_as_an_operator_writes_them() -> None:
    table = settings_table()
    assert "| `max_body_bytes` | `2 GiB` | `SEALDROP_MAX_BODY_BYTES` |" in table
    assert "| `listen` | `127.0.0.1:8080` | `SEALDROP_LISTEN` |" in table
    assert "| `spool_dir` | (required) | `SEALDROP_SPOOL_DIR` |" in table
    assert "| `max_files` | `20` |" in table
    assert "| `accepting` | `true` |" in table


if __name__ == "__main__":
    README.write_text(readme_with_table(README.read_text("utf-8")), "utf-8")
    print(f"rewrote the settings table in {README}")


# --- the module table ------------------------------------------------------------------------

NOT_PRODUCT = {"tests", "bench", "fuzz", "build", "__init__.py"}


def test_the_readme_module_table_matches_the_tree() -> None:
    rows = re.findall(r"^\| (`.*?) \| .* \|$", readme_section("Architecture"), re.M)
    named = {name.rstrip("/") for row in rows for name in re.findall(r"`([^`]+)`", row)}
    tree = {
        path.name
        for path in ROOT.iterdir()
        if (path.suffix == ".py" or (path / "__init__.py").exists())
        and path.name not in NOT_PRODUCT
    }
    tree |= {"templates", "static"}
    assert named == tree, f"in the table only: {named - tree}; in the tree only: {tree - named}"
