"""OnionService: publish sealdrop as a v3 onion service and keep it published.

One instance per server (the gunicorn master), never one per worker. The service
is added without ``Flags=Detach``, so tor removes it by itself when our control
connection closes: if sealdrop dies, the address goes dark with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import stem
from stem.control import EventType, State

from .control import (
    AddOnionRequest,
    PowRefused,
    PowSettings,
    add_onion,
    bootstrap_phase,
    check_version,
    connect,
    del_onion,
)
from .errors import BootstrapStuck, OnionError, OnionStateError, PublishFailed
from .keys import (
    ServiceKey,
    ensure_private_dir,
    load_client_public_keys,
    load_or_create_service_key,
)
from .tor_process import TorProcess


@dataclass(frozen=True)
class OnionConfig:
    """How to reach tor and what to publish.

    ``control`` is ``HOST:PORT`` or ``unix:PATH`` of a running tor; None makes
    sealdrop start its own tor with its data under ``state_dir/tor``.
    ``target`` is where tor forwards virtual port 80: ``unix:/path`` or
    ``127.0.0.1:PORT``.
    """

    state_dir: Path
    target: str
    control: str | None = None
    control_password: str | None = None
    ephemeral: bool = False
    pow: bool = True
    pow_queue_rate: int | None = None
    pow_queue_burst: int | None = None
    max_streams: int = 32
    publish_warning_after: float = 120.0
    tor_cmd: str = "tor"
    # Debian installs tor in /usr/sbin, which is not on an ordinary user's PATH.
    tor_fallback_dirs: tuple[str, ...] = ("/usr/sbin", "/usr/local/sbin")
    # Extra torrc lines for a tor sealdrop starts (tests: DisableNetwork, private authorities).
    extra_torrc: tuple[tuple[str, str], ...] = ()
    start_timeout: float = 30.0
    reconnect_max_delay: float = 30.0


class OnionEventKind(Enum):
    ADDED = "added"  # tor accepted ADD_ONION; the address is known
    PUBLISHED = "published"  # the descriptor reached an HSDir: sources can connect
    NOT_PUBLISHED = "not-published"  # warning: still unpublished after publish_warning_after
    POW_UNAVAILABLE = "pow-unavailable"  # warning: this tor cannot do proof-of-work
    CONNECTION_LOST = "connection-lost"  # tor or its control connection went away
    RECONNECT_FAILED = "reconnect-failed"
    REPUBLISHED = "republished"  # the same address is back after a loss


@dataclass(frozen=True)
class OnionEvent:
    kind: OnionEventKind
    message: str
    url: str


@dataclass
class _Publication:
    """What belongs to one control connection; replaced whole on reconnect."""

    controller: Any
    started: float = field(default_factory=time.monotonic)
    published: threading.Event = field(default_factory=threading.Event)
    warned: bool = False


class OnionService:
    """Publishes one onion service through tor's control port; see OnionConfig."""

    def __init__(
        self, config: OnionConfig, on_event: Callable[[OnionEvent], None] | None = None
    ) -> None:
        self._config = config
        self._on_event = on_event
        self._lock = threading.Lock()
        self._publication: _Publication | None = None
        self._tor: TorProcess | None = None
        self._key: ServiceKey | None = None
        self._client_keys: tuple[str, ...] = ()
        self._pow_warned = False
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._supervisor: threading.Thread | None = None

    # --- public API -------------------------------------------------------------------

    @property
    def service_id(self) -> str:
        if self._key is None:
            raise RuntimeError("OnionService.start() has not run")
        return self._key.service_id

    @property
    def url(self) -> str:
        return f"http://{self.service_id}.onion/"

    @property
    def tor_pid(self) -> int | None:
        """PID of the tor sealdrop started itself, if any."""
        return self._tor.pid if self._tor else None

    def start(self) -> str:
        """Publish the service; return its address (``<56 chars>.onion``).

        Returns as soon as tor accepted ADD_ONION; PUBLISHED follows as an event.
        """
        self._key, self._client_keys = self._load_keys()
        try:
            self._connect_and_publish()
        except OnionError:
            self._stop_tor()
            raise
        self._emit(
            OnionEventKind.ADDED,
            "onion service added to tor; announcing it on the Tor network (can take a minute)",
        )
        self._supervisor = threading.Thread(
            target=self._supervise, name="sealdrop-onion", daemon=True
        )
        self._supervisor.start()
        return f"{self.service_id}.onion"

    def wait_until_published(self, timeout: float) -> None:
        """Block until the descriptor is uploaded; raise BootstrapStuck or PublishFailed."""
        with self._lock:
            publication = self._publication
        if publication is None:
            raise RuntimeError("OnionService.start() has not run")
        if not publication.published.wait(timeout):
            raise self._why_unpublished(publication)

    def stop(self) -> None:
        """Remove the service (DEL_ONION), close the control connection, stop our tor."""
        self._stopping.set()
        self._wake.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=self._config.start_timeout + 5)
        with self._lock:
            publication, self._publication = self._publication, None
        if publication is not None:
            controller = publication.controller
            try:
                if controller.is_alive():
                    del_onion(controller, self.service_id)
            except stem.ControllerError:
                pass  # the connection is going anyway, and tor drops the service with it
            _close(controller)
        self._stop_tor()

    # --- keys -------------------------------------------------------------------------

    def _load_keys(self) -> tuple[ServiceKey, tuple[str, ...]]:
        state_dir = ensure_private_dir(self._config.state_dir)
        clients = tuple(load_client_public_keys(state_dir))
        if not self._config.ephemeral:
            return load_or_create_service_key(state_dir), clients
        if clients:
            raise OnionStateError(
                f"{state_dir} has authorised clients, which need a stable address: "
                "drop --ephemeral, or delete the authorized_clients folder."
            )
        # Kept in memory only, so the address survives a tor restart but not sealdrop's.
        return ServiceKey.generate(), ()

    # --- one control connection -------------------------------------------------------

    def _control_address(self) -> str:
        if self._config.control is not None:
            return self._config.control
        if self._tor is None or not self._tor.running:
            self._stop_tor()
            self._tor = TorProcess(
                self._config.state_dir / "tor",
                self._config.tor_cmd,
                self._config.extra_torrc,
                self._config.tor_fallback_dirs,
            )
            self._tor.start(self._config.start_timeout)
        return f"unix:{self._tor.control_socket}"

    def _connect_and_publish(self) -> None:
        controller = connect(self._control_address(), self._config.control_password)
        publication = _Publication(controller)
        done = False
        try:
            check_version(controller)
            controller.add_event_listener(
                lambda event: self._on_hs_desc(publication, event), EventType.HS_DESC
            )
            self._add_onion(controller)
            controller.add_status_listener(self._on_status)
            done = True
        except stem.ControllerError as exc:
            raise PublishFailed(f"the control connection failed ({exc})") from exc
        finally:
            if not done:
                controller.close()
        with self._lock:
            old, self._publication = self._publication, publication
        if old is not None:
            _close(old.controller)

    def _add_onion(self, controller: Any) -> None:
        assert self._key is not None
        config = self._config
        request = AddOnionRequest(
            key=self._key,
            target=config.target,
            client_keys=self._client_keys,
            max_streams=config.max_streams,
            pow=PowSettings(config.pow_queue_rate, config.pow_queue_burst) if config.pow else None,
        )
        try:
            add_onion(controller, request)
        except PowRefused as exc:
            if not self._pow_warned:
                self._pow_warned = True
                self._emit(
                    OnionEventKind.POW_UNAVAILABLE,
                    f"warning: this tor has no proof-of-work defence ({exc}); publishing "
                    "without it. Upgrade to tor 0.4.9 or newer to protect the service "
                    "against introduction floods.",
                )
            add_onion(controller, replace(request, pow=None))

    def _on_hs_desc(self, publication: _Publication, event: Any) -> None:
        if event.action != "UPLOADED" or event.address != self.service_id:
            return
        if not publication.published.is_set():
            publication.published.set()
            self._emit(
                OnionEventKind.PUBLISHED, f"onion service published: sources can reach {self.url}"
            )

    def _on_status(self, controller: Any, state: Any, _timestamp: float) -> None:
        if state == State.CLOSED:
            self._wake.set()

    # --- supervision ------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            # The status listener wakes us at once; the timeout is the safety net.
            self._wake.wait(timeout=2.0)
            self._wake.clear()
            if self._stopping.is_set():
                return
            with self._lock:
                publication = self._publication
            if publication is None or not publication.controller.is_alive():
                self._recover()
            else:
                self._warn_if_unpublished(publication)

    def _recover(self) -> None:
        self._emit(
            OnionEventKind.CONNECTION_LOST,
            "warning: lost tor's control connection; the onion service is down until tor "
            "is back. Reconnecting.",
        )
        delay, last_error = 0.5, ""
        while not self._stopping.is_set():
            try:
                self._connect_and_publish()
            except OnionError as exc:
                if str(exc) != last_error:
                    last_error = str(exc)
                    self._emit(OnionEventKind.RECONNECT_FAILED, f"still reconnecting: {exc}")
            else:
                self._emit(OnionEventKind.REPUBLISHED, f"onion service added again: {self.url}")
                return
            self._stopping.wait(delay)
            delay = min(delay * 2, self._config.reconnect_max_delay)

    def _warn_if_unpublished(self, publication: _Publication) -> None:
        waited = time.monotonic() - publication.started
        if (
            publication.published.is_set()
            or publication.warned
            or waited < self._config.publish_warning_after
        ):
            return
        publication.warned = True
        self._emit(OnionEventKind.NOT_PUBLISHED, f"warning: {self._why_unpublished(publication)}")

    def _why_unpublished(self, publication: _Publication) -> OnionError:
        waited = time.monotonic() - publication.started
        try:
            progress, summary = bootstrap_phase(publication.controller)
        except stem.ControllerError:
            return PublishFailed("the control connection to tor was lost")
        if progress < 100:
            return BootstrapStuck(progress, summary, waited)
        return PublishFailed(f"no descriptor upload confirmed after {waited:.0f} s")

    # --- helpers ----------------------------------------------------------------------

    def _emit(self, kind: OnionEventKind, message: str) -> None:
        if self._on_event is not None:
            self._on_event(OnionEvent(kind, message, self.url))

    def _stop_tor(self) -> None:
        tor, self._tor = self._tor, None
        if tor is not None:
            tor.stop()


def _close(controller: Any) -> None:
    """Close a stem Controller, but never wait on it for more than a few seconds.

    stem 1.8.2's close() can deadlock with its own handling of a RELOAD signal event
    (Debian's logrotate reloads tor daily); the socket is gone with the process anyway.
    """
    closer = threading.Thread(target=controller.close, name="sealdrop-onion-close", daemon=True)
    closer.start()
    closer.join(timeout=5)
