"""The onion layer against a real tor with DisableNetwork 1 (ADD_ONION answers in ~1 ms there)."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stem.control
import stem.response
import stem.version
from nacl.public import PrivateKey

from sealdrop.cli import main
from sealdrop.onion import (
    AuthenticationFailed,
    BootstrapStuck,
    ControlPortRefused,
    OnionConfig,
    OnionEvent,
    OnionEventKind,
    OnionService,
    OnionStateError,
    TorNotInstalled,
    TorTooOld,
    add_client,
    load_or_create_service_key,
)
from sealdrop.onion.control import AddOnionRequest, PowSettings, add_onion, check_version
from sealdrop.onion.keys import CLIENTS_DIR, KEY_FILE, ServiceKey
from sealdrop.tests.procs import child_pids
from sealdrop.tests.serving import Served, sealdrop_command, serve_env
from sealdrop.tests.tor_local import OFFLINE_TORRC, OfflineTor, free_port, hash_password, tor_binary

pytestmark = [
    pytest.mark.tor,
    # stem 1.8.2 calls Thread.setDaemon(), deprecated since Python 3.10.
    pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning"),
    pytest.mark.skipif(tor_binary() is None, reason="needs the Debian tor package"),
]


@pytest.fixture
def tor(tmp_path: Path) -> Iterator[OfflineTor]:
    instance = OfflineTor(tmp_path / "tor-data")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


class Events:
    """Collects OnionEvents from tor's threads; lets a test wait for one kind."""

    def __init__(self) -> None:
        self.seen: list[OnionEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: OnionEvent) -> None:
        with self._cond:
            self.seen.append(event)
            self._cond.notify_all()

    def kinds(self) -> list[OnionEventKind]:
        with self._cond:
            return [event.kind for event in self.seen]

    def wait_for(self, kind: OnionEventKind, timeout: float = 15.0) -> OnionEvent:
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(e.kind is kind for e in self.seen), timeout=timeout
            )
            assert found, f"no {kind} event; saw {[e.kind for e in self.seen]}"
            return next(e for e in self.seen if e.kind is kind)


def config(tmp_path: Path, control: str | None, **changes: object) -> OnionConfig:
    values: dict[str, object] = {
        "state_dir": tmp_path / "state",
        "target": "unix:/run/sealdrop-test/app.sock",
        "control": control,
        "extra_torrc": OFFLINE_TORRC,
    }
    values.update(changes)
    return OnionConfig(**values)  # type: ignore[arg-type]


def observer(tor: OfflineTor) -> stem.control.Controller:
    controller = stem.control.Controller.from_port("127.0.0.1", tor.port)
    controller.authenticate()
    return controller


def address_in_use(tor: OfflineTor, key: ServiceKey) -> bool:
    """Whether tor already serves ``key``: a second ADD_ONION of it collides if so."""
    with observer(tor) as controller:
        reply = controller.msg(f"ADD_ONION {key.control_blob} Port=80,127.0.0.1:9")
        code = reply.content()[-1][0]
        assert code in ("250", "550"), str(reply)
        return bool(code == "550")


# --- keys, without tor ----------------------------------------------------------------


def test_service_key_is_stored_private_and_reused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = load_or_create_service_key(state)
    assert load_or_create_service_key(state) == first
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / KEY_FILE).stat().st_mode) == 0o600
    assert len(first.service_id) == 56
    assert [p.name for p in state.iterdir()] == [KEY_FILE]  # no .part left behind


def test_state_folder_open_to_others_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    with pytest.raises(OnionStateError, match="chmod 700"):
        load_or_create_service_key(state)


def test_damaged_key_file_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    load_or_create_service_key(state)
    (state / KEY_FILE).write_bytes(b"not a key")
    with pytest.raises(OnionStateError, match="not a v3 onion service key"):
        load_or_create_service_key(state)


def test_add_client_returns_the_private_half_and_stores_the_public_half(tmp_path: Path) -> None:
    state = tmp_path / "state"
    creds = add_client(state, "alice")
    service_id = load_or_create_service_key(state).service_id
    assert creds.service_id == service_id
    private = PrivateKey(base64.b32decode(creds.private_key_b32 + "===="))
    public_b32 = base64.b32encode(bytes(private.public_key)).decode().rstrip("=")
    stored = (state / CLIENTS_DIR / "alice.auth").read_text()
    assert stored == f"descriptor:x25519:{public_b32}\n"
    assert creds.auth_private_line == f"{service_id}:descriptor:x25519:{creds.private_key_b32}"
    assert creds.private_key_b32 in creds.instructions()
    assert creds.private_key_b32 not in stored
    with pytest.raises(OnionStateError, match="already exists"):
        add_client(state, "alice")
    with pytest.raises(OnionStateError, match="not usable"):
        add_client(state, "../evil")


def test_add_onion_command_spelling() -> None:
    key = ServiceKey.generate()
    request = AddOnionRequest(
        key, "unix:/run/app.sock", ("A" * 52,), max_streams=8, pow=PowSettings(5, 10)
    )
    assert request.command() == (
        f"ADD_ONION {key.control_blob} Flags=MaxStreamsCloseCircuit,V3Auth MaxStreams=8 "
        "PoWDefensesEnabled=1 PoWQueueRate=5 PoWQueueBurst=10 "
        f"Port=80,unix:/run/app.sock ClientAuthV3={'A' * 52}"
    )


# --- below the real-tor line: replies an older tor gives ---------------------------------


class OldTor:
    """Answers like tor 0.4.8, which has no PoW keywords in ADD_ONION."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def msg(self, command: str) -> stem.response.ControlMessage:
        self.commands.append(command)
        if "PoW" in command:
            text = (
                '512 Bad arguments to ADD_ONION: Unrecognized keyword argument "PoWDefensesEnabled"'
            )
        else:
            text = f"250-ServiceID={self.key.service_id}\r\n250 OK"
        return stem.response.ControlMessage.from_str(text + "\r\n", normalize=True)

    def get_version(self) -> stem.version.Version:
        return stem.version.Version("0.4.5.16")

    key = ServiceKey.generate()


def test_pow_refused_by_old_tor_is_retried_without_it() -> None:
    from sealdrop.onion.control import PowRefused

    old = OldTor()
    request = AddOnionRequest(old.key, "127.0.0.1:8080", pow=PowSettings())
    with pytest.raises(PowRefused):
        add_onion(old, request)
    assert add_onion(old, AddOnionRequest(old.key, "127.0.0.1:8080")) == old.key.service_id


def test_too_old_tor_is_named() -> None:
    with pytest.raises(TorTooOld, match=r"0\.4\.5\.16 is too old"):
        check_version(OldTor())


# --- real tor ---------------------------------------------------------------------------


def test_stored_key_gives_the_same_address_on_two_tors(tmp_path: Path, tor: OfflineTor) -> None:
    first = OnionService(config(tmp_path, tor.control))
    address = first.start()
    first.stop()
    other = OfflineTor(tmp_path / "other-tor-data")
    other.start()
    try:
        second = OnionService(config(tmp_path, other.control))
        assert second.start() == address
        second.stop()
    finally:
        other.stop()
    assert address == load_or_create_service_key(tmp_path / "state").service_id + ".onion"


def test_ephemeral_gives_a_fresh_address_and_stores_no_key(tmp_path: Path, tor: OfflineTor) -> None:
    addresses = set()
    for _ in range(2):
        service = OnionService(config(tmp_path, tor.control, ephemeral=True))
        addresses.add(service.start())
        service.stop()
    assert len(addresses) == 2
    assert not (tmp_path / "state" / KEY_FILE).exists()


def test_ephemeral_with_authorised_clients_is_refused(tmp_path: Path, tor: OfflineTor) -> None:
    add_client(tmp_path / "state", "alice")
    with pytest.raises(OnionStateError, match="stable address"):
        OnionService(config(tmp_path, tor.control, ephemeral=True)).start()


def test_client_auth_pow_and_max_streams_are_accepted_and_removed_on_stop(
    tmp_path: Path, tor: OfflineTor
) -> None:
    add_client(tmp_path / "state", "alice")
    add_client(tmp_path / "state", "bob")
    events = Events()
    service = OnionService(
        config(tmp_path, tor.control, pow_queue_rate=5, pow_queue_burst=10, max_streams=4),
        on_event=events,
    )
    service.start()
    key = load_or_create_service_key(tmp_path / "state")
    assert address_in_use(tor, key)
    assert events.kinds() == [OnionEventKind.ADDED]  # no PoW fallback warning on tor 0.4.9
    assert events.seen[0].url == f"http://{key.service_id}.onion/"
    service.stop()
    assert not address_in_use(tor, key)
    with observer(tor) as controller:
        assert controller.get_info("onions/detached") == ""


def test_republishes_the_same_address_after_tor_is_killed_and_restarted(
    tmp_path: Path, tor: OfflineTor
) -> None:
    events = Events()
    service = OnionService(config(tmp_path, tor.control, reconnect_max_delay=0.5), events)
    service.start()
    key = load_or_create_service_key(tmp_path / "state")
    try:
        tor.kill()
        events.wait_for(OnionEventKind.CONNECTION_LOST)
        time.sleep(1)  # a few reconnects fail while tor is down
        tor.start()
        events.wait_for(OnionEventKind.REPUBLISHED)
        assert address_in_use(tor, key)
        assert OnionEventKind.RECONNECT_FAILED in events.kinds()
    finally:
        service.stop()
    assert not address_in_use(tor, key)


def test_own_tor_is_started_private_and_stopped(tmp_path: Path) -> None:
    events = Events()
    service = OnionService(config(tmp_path, None, reconnect_max_delay=0.5), events)
    address = service.start()
    pid = service.tor_pid
    assert pid is not None
    data_dir = tmp_path / "state" / "tor"
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    try:
        # tor dies: sealdrop starts a new one and publishes the same address again.
        os.kill(pid, 9)
        events.wait_for(OnionEventKind.REPUBLISHED)
        assert service.tor_pid not in (None, pid)
        assert f"{service.service_id}.onion" == address
    finally:
        new_pid = service.tor_pid
        service.stop()
    assert new_pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(new_pid, 0)


def test_unpublished_service_warns_and_names_the_bootstrap(tmp_path: Path, tor: OfflineTor) -> None:
    events = Events()
    service = OnionService(config(tmp_path, tor.control, publish_warning_after=0.2), events)
    service.start()
    try:
        warning = events.wait_for(OnionEventKind.NOT_PUBLISHED, timeout=10)
        assert "still connecting to the Tor network" in warning.message
        with pytest.raises(BootstrapStuck, match="0%"):
            service.wait_until_published(0.1)
    finally:
        service.stop()


# --- one exception per failure ----------------------------------------------------------


def test_no_tor_binary_raises_tor_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TorNotInstalled, match="apt-get install tor"):
        OnionService(config(tmp_path, None, tor_fallback_dirs=())).start()
    if os.path.dirname(tor_binary() or "") in ("/usr/sbin", "/usr/local/sbin"):
        # Debian's tor, outside an ordinary user's PATH, is still found.
        service = OnionService(config(tmp_path, None))
        service.start()
        service.stop()


def test_refused_control_port_raises_control_port_refused(tmp_path: Path) -> None:
    with pytest.raises(ControlPortRefused, match="ControlPort"):
        OnionService(config(tmp_path, f"127.0.0.1:{free_port()}")).start()
    with pytest.raises(ControlPortRefused):
        OnionService(config(tmp_path, f"unix:{tmp_path / 'nothing.sock'}")).start()


def test_wrong_or_missing_password_raises_authentication_failed(tmp_path: Path) -> None:
    tor = OfflineTor(tmp_path / "tor-data", hashed_password=hash_password("right horse"))
    tor.start()
    try:
        for password in ("wrong", None):
            service = OnionService(config(tmp_path, tor.control, control_password=password))
            with pytest.raises(AuthenticationFailed, match="HashedControlPassword"):
                service.start()
        service = OnionService(config(tmp_path, tor.control, control_password="right horse"))
        assert service.start().endswith(".onion")
        service.stop()
    finally:
        tor.stop()


# --- the commands -----------------------------------------------------------------------


def test_add_client_command_prints_what_the_source_enters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert main(["onion", "add-client", "alice", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    service_id = load_or_create_service_key(state).service_id
    [private] = re.findall(r"^([A-Z2-7]{52})$", out, re.M)
    assert f"{service_id}:descriptor:x25519:{private}" in out.splitlines()
    assert main(["onion", "add-client", "alice", "--state", str(state)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_add_client_finds_the_state_folder_where_serve_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("SEALDROP_"):
            monkeypatch.delenv(name)
    assert main(["onion", "add-client", "alice"]) == 2
    assert "--state DIR" in capsys.readouterr().err
    state = tmp_path / "state"
    config = tmp_path / "sealdrop.toml"
    config.write_text(f'spool_dir = "/unused"\nstate_dir = "{state}"\n')
    assert main(["onion", "add-client", "alice", "--config", str(config)]) == 0
    assert (state / CLIENTS_DIR / "alice.auth").is_file()
    monkeypatch.setenv("SEALDROP_STATE_DIR", str(state))
    assert main(["onion", "add-client", "bob"]) == 0
    assert (state / CLIENTS_DIR / "bob.auth").is_file()


def serve_command(spool_dir: Path, public_key_file: Path, *extra: str) -> list[str]:
    argv = ["--spool", str(spool_dir), "--public-key", str(public_key_file)]
    return sealdrop_command("serve", *argv, "--listen", "127.0.0.1:0", *extra)


def test_serve_without_state_or_local_only_refuses(
    tmp_path: Path, spool_dir: Path, public_key_file: Path
) -> None:
    env = serve_env()
    done = subprocess.run(
        serve_command(spool_dir, public_key_file),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--state DIR" in done.stderr and "--local-only" in done.stderr


def test_serve_with_unreachable_tor_stops_with_the_fix(
    tmp_path: Path, spool_dir: Path, public_key_file: Path
) -> None:
    env = serve_env()
    done = subprocess.run(
        serve_command(
            spool_dir,
            public_key_file,
            "--tor-control",
            f"127.0.0.1:{free_port()}",
            "--state",
            str(tmp_path / "state"),
        ),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot reach tor's control port" in done.stderr
    assert "Traceback" not in done.stderr


class CountingControlProxy:
    """Sits between sealdrop and tor's control port and counts the commands it passes."""

    def __init__(self, tor_port: int) -> None:
        self._tor_port = tor_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.commands: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def count(self, verb: bytes) -> int:
        with self._lock:
            return sum(1 for line in self.commands if line.split(b" ", 1)[0].upper() == verb)

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._tor_port))
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, record: bool) -> None:
        pending = b""
        try:
            while data := source.recv(65536):
                target.sendall(data)
                if record:
                    pending += data
                    *lines, pending = pending.split(b"\r\n")
                    with self._lock:
                        self.commands.extend(lines)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            # Each pump closes the socket it read from: once both ends are done,
            # both sockets are closed.
            source.close()


def test_serve_publishes_once_per_server_not_once_per_worker(
    tmp_path: Path, spool_dir: Path, public_key_file: Path, tor: OfflineTor
) -> None:
    proxy = CountingControlProxy(tor.port)
    argv = ["--spool", str(spool_dir), "--public-key", str(public_key_file)]
    argv += ["--listen", "127.0.0.1:0", "--tor-control", f"127.0.0.1:{proxy.port}"]
    server = Served([*argv, "--state", str(tmp_path / "state")], tmp_path)
    try:
        server.wait_for(rb"^http://[a-z2-7]{56}\.onion/$", 30)
        # The worker comes up well within this, and so does the one that replaces it
        # when it dies: neither may publish on its own.
        deadline = time.monotonic() + 30
        first: list[int] = []
        while time.monotonic() < deadline and not first:
            first = child_pids(server.pid)
            time.sleep(0.1)
        assert first
        os.kill(first[0], signal.SIGKILL)
        replaced: list[int] = []
        while time.monotonic() < deadline and not replaced:
            replaced = [pid for pid in child_pids(server.pid) if pid not in first]
            time.sleep(0.1)
        assert replaced
        time.sleep(1.0)
        assert proxy.count(b"ADD_ONION") == 1
        assert proxy.connections == 1
    finally:
        server.stop(timeout=30)
        proxy.close()
    assert proxy.count(b"DEL_ONION") == 1
