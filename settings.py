"""The service's settings: read once, from a TOML file and ``SEALDROP_*`` variables, into types.

Every setting has one name, used as the TOML key and, upper-cased after ``SEALDROP_``,
as the environment variable (``max_files`` / ``SEALDROP_MAX_FILES``). A variable wins
over the file, so a wrapper script or systemd unit can override one value. A bad value
stops start-up with a `SettingsError` naming the setting, where it came from and the fix.

New settings (the onion service's) are added as one more `_Field` in `_FIELDS` and one
more attribute on `Settings`.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "SEALDROP_"

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

DEFAULT_PORT = 8080


class SettingsError(Exception):
    """A setting is missing, mistyped or out of range, or the config file is unreadable.

    Raised by `load_settings` before anything starts; the message is for the operator.
    """


@dataclass(frozen=True)
class Listen:
    """Where the web server listens: a loopback TCP address, or a Unix socket path.

    Only loopback is accepted: the service is reached through Tor, which connects
    to it locally; listening anywhere else would publish it outside Tor.
    """

    host: str | None = None
    port: int | None = None
    unix_path: Path | None = None

    @property
    def bind(self) -> str:
        """The address in gunicorn's ``bind`` syntax."""
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.bind


@dataclass(frozen=True)
class Settings:
    spool_dir: Path
    public_key_file: Path
    max_body_bytes: int = 2 * GiB
    max_files: int = 20
    max_message_chars: int = 100_000
    max_part_header_bytes: int = 8 * KiB
    reserve_bytes: int = 512 * MiB
    body_idle_seconds: int = 300
    listen: Listen = Listen("127.0.0.1", DEFAULT_PORT)
    accepting: bool = True
    # Codenames and replies (both folders set, or the feature is off): the state folder
    # holds the installation's codename salt; the replies folder the reviewer's replies.
    state_dir: Path | None = None
    replies_dir: Path | None = None
    # Argon2id per codename entry; 64 MiB x 3 passes is about 0.25 s on one core.
    codename_kdf_memory: int = 64 * MiB
    codename_kdf_passes: int = 3
    # Derivations running at once in one worker process; more get a calm 429 page.
    codename_max_concurrent: int = 2

    @property
    def replies_enabled(self) -> bool:
        return self.state_dir is not None and self.replies_dir is not None


@dataclass(frozen=True)
class _Field:
    name: str
    parse: Callable[[Any, str], Any]  # (raw value, where it came from) -> typed value
    fix: str  # what a valid value looks like, for the error message

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _problem(field: _Field, where: str, what: str) -> SettingsError:
    return SettingsError(
        f"setting {field.name} ({where}) {what}; {field.fix} "
        f"(set it as `{field.name} = ...` in the config file or as {field.env_var})"
    )


class _BadValue(ValueError):
    """A parser's complaint, turned into a SettingsError by `_parse_field`."""


def _path(raw: Any, where: str) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise _BadValue("is empty or not a text value")
    return Path(raw)


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB, "TiB": 1024 * GiB}


def _size(low: int, high: int) -> Callable[[Any, str], int]:
    def parse(raw: Any, where: str) -> int:
        if isinstance(raw, bool):
            raise _BadValue(f"is {raw!r}, not a size")
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, str) and (match := _SIZE_RE.match(raw)):
            value = int(match.group(1)) * _UNITS[match.group(2)]
        else:
            raise _BadValue(f"is {raw!r}, not a size")
        if not low <= value <= high:
            raise _BadValue(f"is {value} bytes, outside {low}..{high}")
        return value

    return parse


def _count(low: int, high: int) -> Callable[[Any, str], int]:
    def parse(raw: Any, where: str) -> int:
        if isinstance(raw, bool):
            raise _BadValue(f"is {raw!r}, not a whole number")
        if isinstance(raw, str) and raw.strip().isdigit():
            raw = int(raw)
        if not isinstance(raw, int):
            raise _BadValue(f"is {raw!r}, not a whole number")
        if not low <= raw <= high:
            raise _BadValue(f"is {raw}, outside {low}..{high}")
        return raw

    return parse


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _flag(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise _BadValue(f"is {raw!r}, not true or false")


def parse_listen(raw: Any, where: str = "") -> Listen:
    """``HOST:PORT`` on loopback (``127.0.0.1:8080``, ``[::1]:8080``) or ``unix:/ABS/PATH``."""
    if not isinstance(raw, str) or not raw.strip():
        raise _BadValue("is empty or not a text value")
    text = raw.strip()
    if text.startswith("unix:"):
        path = Path(text[len("unix:") :])
        if not path.is_absolute():
            raise _BadValue(f"names the socket path {str(path)!r}, which is not absolute")
        return Listen(unix_path=path)
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not host:
        raise _BadValue(f"is {text!r}, not HOST:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    port = int(port_text)
    if port > 65535:
        raise _BadValue(f"has port {port}, above 65535")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise _BadValue(
            f"names the host {host!r}; only a loopback IP address is accepted, "
            "not a name that DNS or /etc/hosts could point elsewhere"
        ) from None
    if not address.is_loopback:
        raise _BadValue(
            f"names {host}, which is not a loopback address: the service would be reachable "
            "outside Tor, where a source's network can see it"
        )
    return Listen(host=str(address), port=port)


_SIZE_FIX = "give a number of bytes, or a number with B, KiB, MiB, GiB or TiB (like '2 GiB')"

_FIELDS: tuple[_Field, ...] = (
    _Field("spool_dir", _path, "give the folder where sealed submissions are written"),
    _Field(
        "public_key_file",
        _path,
        "give the reviewer's public key file (reviewer.pub, made by `sealdrop keygen`)",
    ),
    _Field("max_body_bytes", _size(64 * KiB, 1024 * GiB), _SIZE_FIX),
    _Field("max_files", _count(0, 10_000), "give a whole number of files (0 to 10000)"),
    _Field(
        "max_message_chars", _count(1, 10_000_000), "give a number of characters (1 to 10000000)"
    ),
    _Field("max_part_header_bytes", _size(1 * KiB, 1 * MiB), _SIZE_FIX + ", 1 KiB to 1 MiB"),
    _Field("reserve_bytes", _size(0, 1024**5), _SIZE_FIX + ", or 0 for no reserve"),
    _Field(
        "body_idle_seconds",
        _count(1, 86_400),
        "give the seconds an upload may send nothing before it is dropped (1 to 86400)",
    ),
    _Field(
        "listen",
        parse_listen,
        "give 127.0.0.1:PORT, [::1]:PORT or unix:/ABSOLUTE/PATH (loopback only; Tor "
        "connects locally)",
    ),
    _Field("accepting", _flag, "give true or false"),
    _Field("state_dir", _path, "give the folder for the service's state (mode 700)"),
    _Field("replies_dir", _path, "give the folder where the operator puts reply files"),
    # libsodium's bounds for Argon2id; only tests should go near the low end.
    _Field("codename_kdf_memory", _size(8 * KiB, 4 * GiB), _SIZE_FIX + ", 8 KiB to 4 GiB"),
    _Field("codename_kdf_passes", _count(1, 16), "give a number of passes (1 to 16)"),
    _Field("codename_max_concurrent", _count(1, 64), "give a number of derivations (1 to 64)"),
)
_BY_NAME = {field.name: field for field in _FIELDS}
_REQUIRED = ("spool_dir", "public_key_file")


def load_settings(env: Mapping[str, str], config_file: Path | None = None) -> Settings:
    """Parse the config file (if any) and the ``SEALDROP_*`` variables in `env` into Settings."""
    values: dict[str, Any] = {}
    if config_file is not None:
        for name, raw in _read_toml(config_file).items():
            field = _BY_NAME.get(name)
            if field is None:
                known = ", ".join(_BY_NAME)
                raise SettingsError(
                    f"the config file {config_file} has an unknown setting {name!r}; "
                    f"remove it or fix its spelling (known settings: {known})"
                )
            values[name] = _parse_field(field, raw, f"config file {config_file}")
    for field in _FIELDS:
        if field.env_var in env:
            values[field.name] = _parse_field(field, env[field.env_var], field.env_var)
    for name in _REQUIRED:
        if name not in values:
            field = _BY_NAME[name]
            raise SettingsError(
                f"setting {name} is missing; {field.fix} (as `{name} = ...` in the config "
                f"file, as {field.env_var}, or on the command line)"
            )
    return Settings(**values)


def _parse_field(field: _Field, raw: Any, where: str) -> Any:
    try:
        return field.parse(raw, where)
    except _BadValue as err:
        raise _problem(field, where, str(err)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as err:
        raise SettingsError(
            f"the config file {path} cannot be read ({err.strerror}); check the path given "
            "with --config"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(
            f"the config file {path} is not valid TOML ({err}); fix the line named"
        ) from None
    return data
