"""Client authorization fails closed (issue 12, item 3).

The reproduction: `sudo sealdrop onion add-client` left a root-owned 0700
`authorized_clients/` that the service's user could not list; pathlib's glob
swallowed the error, the service was published with no client authorization at
all, and `sealdrop check` said only OK. Here the service really runs as another
user than root (nobody, in a subprocess; the tests run as root), and every way the
folder or a key in it can be unreadable or wrong must stop `sealdrop serve` before
anything is published, with a message naming the path and the fix; `sealdrop check`
must report it; and `add-client` run as root must make what the service can read.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.public import PrivateKey

from sealdrop.cli import main
from sealdrop.keys import encode_public_key
from sealdrop.onion import ClientAuthUnusable, add_client
from sealdrop.onion.keys import CLIENTS_DIR, load_client_public_keys

NOBODY = 65534
GOOD_LINE = "descriptor:x25519:" + "A" * 52 + "\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the service as another user")


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder another user can enter (tmp_path's parents are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="sealdrop-auth-"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def service_folders(base: Path) -> dict[str, Path]:
    """Spool and state folders of a service that runs as nobody, and its public key."""
    made = {}
    for name in ("spool", "state"):
        made[name] = base / name
        made[name].mkdir(mode=0o700)
        os.chown(made[name], NOBODY, NOBODY)
    made["key"] = base / "reviewer.pub"
    made["key"].write_text(encode_public_key(PrivateKey.generate().public_key) + "\n")
    made["key"].chmod(0o644)
    return made


# The venv's interpreter lives under /root, which nobody cannot enter: Debian's python3
# (the same minor version) runs instead, with the venv's packages added.
SYSTEM_PYTHON = Path("/usr/bin/python3")
SITE = Path(sysconfig.get_paths()["purelib"])
BOOT = (
    "import runpy, site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv[0] = 'sealdrop'; "
    "runpy.run_module('sealdrop', run_name='__main__', alter_sys=True)"
)

if not SYSTEM_PYTHON.exists() or sys.version_info[:2] != (3, 11):
    pytest.skip("needs Debian's python3 of the venv's minor version", allow_module_level=True)


def sealdrop_as_nobody(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`sealdrop ARGS` run as nobody."""
    return as_nobody([str(SYSTEM_PYTHON), "-c", BOOT, str(SITE), *args], cwd)


def as_nobody(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP_")}
    # serve's restart of itself under the allocator settings (server.memory) would run
    # Debian's python3 without the venv's editable install (a .pth file's finder, which
    # PYTHONPATH does not run): these tests are about folders, so they run without it.
    env.update(SEALDROP_RESERVE_BYTES="0", HOME=str(cwd), SEALDROP_MEMORY_HYGIENE="off")
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_as_nobody(folders: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    """`sealdrop serve` as nobody, publishing through a tor control port nobody listens
    on: a run that gets past the client keys fails there instead, naming tor."""
    argv = ["serve", "--listen", "127.0.0.1:0"]
    argv += ["--spool", str(folders["spool"]), "--public-key", str(folders["key"])]
    argv += ["--state", str(folders["state"]), "--tor-control", f"127.0.0.1:{free_port()}"]
    return sealdrop_as_nobody(argv, folders["spool"].parent)


def root_made_client_folder(state: Path) -> Path:
    """What `sudo sealdrop onion add-client alice` left before this fix."""
    clients = state / CLIENTS_DIR
    clients.mkdir(mode=0o700)
    (clients / "alice.auth").write_text(GOOD_LINE)
    (clients / "alice.auth").chmod(0o600)
    return clients


def test_serve_as_the_service_user_stops_on_a_client_folder_root_made(
    service_folders: dict[str, Path],
) -> None:
    clients = root_made_client_folder(service_folders["state"])
    done = serve_as_nobody(service_folders)
    assert done.returncode == 2, done.stderr
    assert str(clients) in done.stderr and "chown" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (service_folders["state"] / "tor").exists()  # no tor was started


def test_serve_as_the_service_user_stops_on_a_client_key_it_cannot_read(
    service_folders: dict[str, Path],
) -> None:
    clients = service_folders["state"] / CLIENTS_DIR
    clients.mkdir(mode=0o700)
    os.chown(clients, NOBODY, NOBODY)
    key = clients / "alice.auth"
    key.write_text(GOOD_LINE)
    key.chmod(0o600)  # root's: the service cannot open it
    done = serve_as_nobody(service_folders)
    assert done.returncode == 2, done.stderr
    assert f"cannot read the client authorization path {key}" in done.stderr
    assert f"chown -R nobody {key}" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_as_the_service_user_reports_it(service_folders: dict[str, Path]) -> None:
    clients = root_made_client_folder(service_folders["state"])
    argv = ["check", "--quiet", "--spool", str(service_folders["spool"])]
    argv += ["--public-key", str(service_folders["key"]), "--state", str(service_folders["state"])]
    done = sealdrop_as_nobody(argv, service_folders["spool"].parent)
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if "client authorization" in line]
    assert line.startswith("PROBLEM ") and str(clients) in line and "fix:" in line


def make(kind: str, clients: Path) -> Path:
    """A client folder broken in one way; returns the path the message must name."""
    if kind == "a file, not a folder":
        clients.write_text(GOOD_LINE)
        return clients
    clients.mkdir(mode=0o700)
    key = clients / "alice.auth"
    if kind == "empty":
        return clients
    if kind == "open to others":
        clients.chmod(0o755)
        return clients
    if kind == "a folder named .auth":
        key.mkdir()
    elif kind == "a link":
        (clients.parent / "elsewhere").write_text(GOOD_LINE)
        key.symlink_to(clients.parent / "elsewhere")
    elif kind == "a key open to others":
        key.write_text(GOOD_LINE)
        key.chmod(0o644)
    elif kind == "not a key":
        key.write_text("descriptor:x25519:not-base32\n")
        key.chmod(0o600)
    elif kind == "a huge file":
        key.write_text(GOOD_LINE + " " * 4096)
        key.chmod(0o600)
    return key


BROKEN = (
    "a file, not a folder",
    "empty",
    "open to others",
    "a folder named .auth",
    "a link",
    "a key open to others",
    "not a key",
    "a huge file",
)


@pytest.mark.parametrize("kind", BROKEN)
def test_every_unusable_client_folder_stops_start_up_naming_the_path(
    tmp_path: Path, kind: str
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    named = make(kind, state / CLIENTS_DIR)
    with pytest.raises(ClientAuthUnusable) as raised:
        load_client_public_keys(state)
    assert str(named) in str(raised.value)


@pytest.mark.parametrize("kind", BROKEN)
def test_check_reports_every_unusable_client_folder(
    tmp_path: Path, kind: str, public_key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    named = make(kind, state / CLIENTS_DIR)
    main(["check", "--quiet", "--public-key", str(public_key_file), "--state", str(state)])
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if str(named) in line and "client authorization" in line]


def test_no_client_folder_means_no_client_authorization_and_check_says_so(
    tmp_path: Path, public_key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    assert load_client_public_keys(state) == []
    main(["check", "--public-key", str(public_key_file), "--state", str(state)])
    assert "anyone with the onion address can reach the service" in capsys.readouterr().out
    add_client(state, "alice")
    assert len(load_client_public_keys(state)) == 1


def test_add_client_as_root_makes_what_the_service_user_can_read(
    service_folders: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state = service_folders["state"]
    code = (
        "import runpy, site, sys; site.addsitedir(sys.argv[1]); "
        "from pathlib import Path; from sealdrop.onion.keys import load_client_public_keys; "
        "print(len(load_client_public_keys(Path(sys.argv[2]))))"
    )
    old = root_made_client_folder(state)  # an earlier root run's leftovers, given back too
    assert main(["onion", "add-client", "bob", "--state", str(state)]) == 0
    err = capsys.readouterr().err
    assert "warning: run as root" in err and "belongs to nobody" in err
    assert "sudo -u nobody sealdrop onion add-client" in err
    for path in (old, old / "alice.auth", old / "bob.auth", state / "hs_ed25519_secret_key"):
        assert path.stat().st_uid == NOBODY, path
    assert os.geteuid() == 0 and os.getegid() == 0  # root again afterwards
    done = as_nobody([str(SYSTEM_PYTHON), "-c", code, str(SITE), str(state)], state.parent)
    assert (done.returncode, done.stdout.strip()) == (0, "2"), done.stderr


def test_add_client_as_another_ordinary_user_refuses_and_names_the_user(
    base: Path,
) -> None:
    state = base / "state"
    state.mkdir(mode=0o700)  # root's
    done = sealdrop_as_nobody(["onion", "add-client", "eve", "--state", str(state)], base)
    assert done.returncode == 2
    assert "belongs to root" in done.stderr and "sudo -u root" in done.stderr
    assert not (state / CLIENTS_DIR).exists()
