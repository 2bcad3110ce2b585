"""Talking to tor's control port: connect, authenticate, ADD_ONION, DEL_ONION.

ADD_ONION is built by hand: stem 1.8.2 has no argument for tor's proof-of-work
keywords (PoWDefensesEnabled, PoWQueueRate, PoWQueueBurst; tor 0.4.9.2-alpha).
Spellings follow tor's control-spec and were checked against tor 0.4.9.11.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any

import stem
import stem.connection
import stem.control
import stem.socket
import stem.version

from .errors import (
    AuthenticationFailed,
    ControlPortRefused,
    PublishFailed,
    TorTooOld,
)
from .keys import ServiceKey

# ADD_ONION's ClientAuthV3 (v3 client authorization) arrived in 0.4.6.1-alpha.
MINIMUM_TOR = stem.version.Version("0.4.6.1-alpha")
_TARGET = re.compile(r"unix:/\S+|((127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]):)?\d{1,5}")


@dataclass(frozen=True)
class PowSettings:
    """tor's onion-service proof-of-work defence; None fields keep tor's own defaults."""

    queue_rate: int | None = None
    queue_burst: int | None = None


@dataclass(frozen=True)
class AddOnionRequest:
    key: ServiceKey
    target: str
    client_keys: tuple[str, ...] = ()
    max_streams: int = 0
    pow: PowSettings | None = None

    def command(self) -> str:
        if not _TARGET.fullmatch(self.target):
            raise PublishFailed(
                f"the target {self.target!r} is neither 'unix:/absolute/path' nor a loopback "
                "'127.0.0.1:PORT' or '[::1]:PORT'"
            )
        parts = ["ADD_ONION", self.key.control_blob]
        flags = []
        if self.max_streams:
            flags.append("MaxStreamsCloseCircuit")
        if self.client_keys:
            flags.append("V3Auth")
        if flags:
            parts.append("Flags=" + ",".join(flags))
        if self.max_streams:
            parts.append(f"MaxStreams={self.max_streams}")
        if self.pow is not None:
            parts.append("PoWDefensesEnabled=1")
            if self.pow.queue_rate is not None:
                parts.append(f"PoWQueueRate={self.pow.queue_rate}")
            if self.pow.queue_burst is not None:
                parts.append(f"PoWQueueBurst={self.pow.queue_burst}")
        parts.append(f"Port=80,{self.target}")
        parts += [f"ClientAuthV3={key}" for key in self.client_keys]
        return " ".join(parts)


# stem 1.8.2's own sockets leak their file descriptor when the connection is refused,
# and reconnecting in a loop would pile them up; these close it.
class _TcpControlSocket(stem.socket.ControlPort):  # type: ignore[misc]
    def _make_socket(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.address, self.port), timeout=10)
        except OSError as exc:
            raise stem.SocketError(exc) from exc
        sock.settimeout(None)
        return sock


class _UnixControlSocket(stem.socket.ControlSocketFile):  # type: ignore[misc]
    def _make_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise stem.SocketError(exc) from exc
        return sock


def connect(control: str, password: str | None) -> Any:
    """An authenticated stem Controller for ``HOST:PORT`` or ``unix:PATH``."""
    try:
        if control.startswith("unix:"):
            control_socket = _UnixControlSocket(control[len("unix:") :])
        else:
            host, _, port = control.rpartition(":")
            if not host or not port.isdigit():
                raise ControlPortRefused(control, "expected HOST:PORT or unix:PATH")
            control_socket = _TcpControlSocket(host.strip("[]"), int(port))
        controller = stem.control.Controller(control_socket)
    except stem.SocketError as exc:
        raise ControlPortRefused(control, str(exc) or type(exc).__name__) from exc
    try:
        controller.authenticate(password=password)
    except (stem.connection.AuthenticationFailure, stem.SocketError) as exc:
        controller.close()
        raise AuthenticationFailed(control, str(exc) or type(exc).__name__) from exc
    return controller


def check_version(controller: Any) -> None:
    version = controller.get_version()
    if version < MINIMUM_TOR:
        raise TorTooOld(str(version), str(MINIMUM_TOR))


class PowRefused(Exception):
    """tor rejected the proof-of-work keywords (too old, or built without the PoW module)."""


def add_onion(controller: Any, request: AddOnionRequest) -> str:
    """Send ADD_ONION; return the ServiceID. Raises PowRefused when PoW is the problem."""
    reply = controller.msg(request.command())
    lines = reply.content()
    status = lines[-1][0] if lines else ""
    if status != "250":
        text = " ".join(line[2] for line in lines)
        if request.pow is not None and "PoW" in text:
            raise PowRefused(text)
        raise PublishFailed(f"tor answered ADD_ONION with {status} {text}")
    service_ids: list[str] = [
        str(line[2])[len("ServiceID=") :] for line in lines if line[2].startswith("ServiceID=")
    ]
    if service_ids != [request.key.service_id]:
        raise PublishFailed(f"tor published {service_ids} instead of the stored key's address")
    return service_ids[0]


def del_onion(controller: Any, service_id: str) -> None:
    controller.msg(f"DEL_ONION {service_id}")


def bootstrap_phase(controller: Any) -> tuple[int, str]:
    """tor's bootstrap progress (0-100) and its one-line summary."""
    phase = controller.get_info("status/bootstrap-phase", "")
    progress = re.search(r"PROGRESS=(\d+)", phase)
    summary = re.search(r'SUMMARY="([^"]*)"', phase)
    return (int(progress.group(1)) if progress else 0, summary.group(1) if summary else phase)
