"""The service's settings: every source folded, once, into one typed `Settings`.

A setting comes from, in order of precedence, a command-line flag (for the few that
have one), a ``SEALDROP_<NAME>`` variable, or the TOML file given with ``--config``
(``max_files = 20`` / ``SEALDROP_MAX_FILES``). A variable wins over the file, so a
wrapper script or systemd unit can override one value; a flag wins over both. A bad
value stops start-up with a `SettingsError` naming the setting, where it came from and
the fix. Every command reads its settings through `from_command_line` (or, needing one
setting only, `one_from_command_line`) and nothing else.

Each setting is declared ONCE, as an attribute of `Settings` made with `setting(...)`:
its type (the annotation), default, parser, the fix shown for a bad value, the meaning
shown in README's table, and its flag if it has one. Adding a setting is adding that
one attribute (then regenerate README's table: ``python -m sealdrop.tests.test_quickstart``,
and write it in deploy/sealdrop.toml, which tests/test_deploy.py checks).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .languages import SHIPPED, UnknownLanguage, normalise_tag
from .units import GiB, KiB, MiB, TiB, human_size

ENV_PREFIX = "SEALDROP_"
DEFAULT_PORT = 8080

__all__ = [
    "ENV_PREFIX",
    "GiB",
    "KiB",
    "Listen",
    "MiB",
    "Settings",
    "SettingsError",
    "add_flags",
    "declared",
    "from_command_line",
    "load_settings",
    "one_from_command_line",
    "settings_table",
]


class SettingsError(Exception):
    """A setting is missing, mistyped or out of range, or the config file is unreadable.

    Raised by `load_settings` before anything starts; the message is for the operator.
    """


class _BadValue(ValueError):
    """A parser's complaint, turned into a SettingsError by `_parse_one`."""


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


# --- parsers: raw value (TOML value or text) in, typed value out, _BadValue on refusal ----


def _path(raw: Any) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise _BadValue("is empty or not a text value")
    return Path(raw)


def _text(raw: Any) -> str:
    # Never quotes the value back: it may be a password.
    if not isinstance(raw, str) or not raw.strip():
        raise _BadValue("is empty or not a text value")
    return raw


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB, "TiB": TiB}
_SIZE_FIX = "give a number of bytes, or a number with B, KiB, MiB, GiB or TiB (like '2 GiB')"


@dataclass(frozen=True)
class _Size:
    """A number of bytes within [low, high], written as ``1048576`` or ``"512 MiB"``."""

    low: int
    high: int

    def __call__(self, raw: Any) -> int:
        if isinstance(raw, bool):
            raise _BadValue(f"is {raw!r}, not a size")
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, str) and (match := _SIZE_RE.match(raw)):
            value = int(match.group(1)) * _UNITS[match.group(2)]
        else:
            raise _BadValue(f"is {raw!r}, not a size")
        if not self.low <= value <= self.high:
            raise _BadValue(f"is {value} bytes, outside {self.low}..{self.high}")
        return value


@dataclass(frozen=True)
class _Count:
    """A whole number within [low, high]."""

    low: int
    high: int

    def __call__(self, raw: Any) -> int:
        if isinstance(raw, bool):
            raise _BadValue(f"is {raw!r}, not a whole number")
        if isinstance(raw, str) and raw.strip().isdigit():
            raw = int(raw)
        if not isinstance(raw, int):
            raise _BadValue(f"is {raw!r}, not a whole number")
        if not self.low <= raw <= self.high:
            raise _BadValue(f"is {raw}, outside {self.low}..{self.high}")
        return raw


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _flag(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise _BadValue(f"is {raw!r}, not true or false")


def parse_listen(raw: Any) -> Listen:
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


def _language(raw: Any) -> str:
    if not isinstance(raw, str):
        raise _BadValue(f"is {raw!r}, not a language tag")
    try:
        return normalise_tag(raw)
    except UnknownLanguage as err:
        raise _BadValue(str(err)) from None


def _languages(raw: Any) -> tuple[str, ...]:
    # A TOML list, or (in a variable) tags separated by commas or spaces.
    items = re.split(r"[\s,]+", raw.strip()) if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise _BadValue(f"is {raw!r}, not a list of language tags")
    tags = tuple(dict.fromkeys(_language(item) for item in items if item))
    if not tags:
        raise _BadValue("names no language")
    return tags


_LANGUAGE_FIX = f"give language tags from {' '.join(SHIPPED)}"


# --- declaring a setting -------------------------------------------------------------------

_REQUIRED = dataclasses.MISSING


@dataclass(frozen=True)
class Declared:
    """Everything about one setting but its name and type (the `Settings` attribute's)."""

    parse: Callable[[Any], Any]
    fix: str  # what a valid value looks like, for the error message
    meaning: str  # README's "meaning" column; its first sentence is the flag's --help
    flag: str | None = None
    metavar: str | None = None


def setting(
    default: Any = _REQUIRED,
    *,
    parse: Callable[[Any], Any],
    fix: str,
    meaning: str,
    flag: str | None = None,
    metavar: str | None = None,
    secret: bool = False,
) -> Any:
    """One `Settings` attribute and its declaration (read back by `declared`)."""
    spec = Declared(parse, fix, meaning, flag, metavar)
    return dataclasses.field(default=default, repr=not secret, metadata={"setting": spec})


@dataclass(frozen=True)
class Settings:
    """The service's settings, typed and checked; built by `load_settings` only."""

    spool_dir: Path = setting(
        parse=_path,
        fix="give the folder where sealed submissions are written",
        meaning="Folder where sealed submissions are written (mode 0700). Required.",
        flag="--spool",
        metavar="DIR",
    )
    public_key_file: Path = setting(
        parse=_path,
        fix="give the reviewer's public key file (reviewer.pub, made by `sealdrop keygen`), "
        "or a folder holding only the reviewers' .pub files",
        meaning="The reviewer's public key, `reviewer.pub` (made offline by `sealdrop "
        "keygen`), or a folder holding one `NAME.pub` per reviewer key (up to 16: a team "
        "and a backup key); each submission is sealed to every one. Required; a secret "
        "key, a duplicate or any other file there stops start-up.",
        flag="--public-key",
        metavar="PATH",
    )
    max_body_bytes: int = setting(
        2 * GiB,
        parse=_Size(64 * KiB, 1024 * GiB),
        fix=_SIZE_FIX,
        meaning="Largest submission, message and files together; bigger ones are refused.",
    )
    max_files: int = setting(
        20,
        parse=_Count(0, 10_000),
        fix="give a whole number of files (0 to 10000)",
        meaning="Most attachments in one submission.",
    )
    max_message_chars: int = setting(
        100_000,
        parse=_Count(1, 10_000_000),
        fix="give a number of characters (1 to 10000000)",
        meaning="Longest message, in characters.",
    )
    max_part_header_bytes: int = setting(
        8 * KiB,
        parse=_Size(1 * KiB, 1 * MiB),
        fix=_SIZE_FIX + ", 1 KiB to 1 MiB",
        meaning="Largest header of one form part (a file's name and type).",
    )
    reserve_bytes: int = setting(
        512 * MiB,
        parse=_Size(0, 1024 * TiB),
        fix=_SIZE_FIX + ", or 0 for no reserve",
        meaning="Free space kept on the spool's disk; below it new submissions are refused, "
        "calmly, until spool files are collected.",
    )
    body_idle_seconds: int = setting(
        300,
        parse=_Count(1, 86_400),
        fix="give the seconds an upload may send nothing before it is dropped (1 to 86400)",
        meaning="An upload that sends nothing for this long is dropped (what had arrived "
        "is kept, marked cut, like any upload cut off): a stalled client must not hold a "
        "connection for ever. Tor circuits can stall for a minute, so keep it generous.",
    )
    head_timeout_seconds: int = setting(
        60,
        parse=_Count(1, 600),
        fix="give the seconds a request head may take (1 to 600; at least 20 for Tor)",
        meaning="A request's head (its first line and headers, a few hundred bytes) must "
        "arrive within this many seconds of the connection opening (or of the previous "
        "answer on a kept-alive connection), or the connection is closed without an "
        "answer: a client sending its head a byte at a time, or nothing, must not hold a "
        "connection for as long as it likes. Far above what a slow Tor circuit needs.",
    )
    stop_grace_seconds: int = setting(
        15,
        parse=_Count(0, 600),
        fix="give the seconds uploads may take to finish when the service stops (0 to 600)",
        meaning="When the service is told to stop (SIGTERM), uploads still arriving get "
        "this many seconds to finish; then each is ended and what had arrived is sealed "
        "and kept, marked cut, as if the source's connection had broken. Keep the "
        "service manager's stop timeout above this plus 15 s (systemd's default 90 s "
        "is).",
    )
    max_connections: int = setting(
        8000,
        parse=_Count(100, 1_000_000),
        fix="give a number of connections (100 to 1000000)",
        meaning="Connections the service holds at once, shared among its worker "
        "processes; beyond it new ones wait in the kernel's queue. Each waiting "
        'connection costs a few kilobytes (docs/PERFORMANCE.md, "Slow clients"), and '
        "one open file: `serve` raises its open-file limit to fit and refuses to start "
        "when the system's hard limit is lower (raise LimitNOFILE, or lower this).",
    )
    body_min_rate: int = setting(
        500,
        parse=_Count(0, 1_000_000),
        fix="give the bytes a second an upload must average over body_rate_window_seconds "
        "(0 to 1000000; 0 turns the floor off)",
        meaning="An upload that brings fewer than this many bytes a second over the last "
        "`body_rate_window_seconds` is dropped and nothing of it is kept: a "
        "client trickling bytes must not hold a connection. 0: no floor. A Tor upload "
        "at 20 KB/s with 60 s stalls is far above the default.",
    )
    body_rate_window_seconds: int = setting(
        120,
        parse=_Count(1, 3600),
        fix="give the seconds over which an upload's rate is averaged (1 to 3600; at "
        "least 60 for Tor, whose circuits can stall for a minute)",
        meaning="The window over which `body_min_rate` is averaged. Keep it well above "
        "a Tor circuit's stalls (a minute); `sealdrop check` warns below 60 s.",
    )
    listen: Listen = setting(
        Listen("127.0.0.1", DEFAULT_PORT),
        parse=parse_listen,
        fix="give 127.0.0.1:PORT, [::1]:PORT or unix:/ABSOLUTE/PATH (loopback only; Tor "
        "connects locally)",
        meaning="Where the web server listens: `127.0.0.1:PORT`, `[::1]:PORT` or "
        "`unix:/ABSOLUTE/PATH`. Loopback only: tor connects to it locally.",
        flag="--listen",
        metavar="HOST:PORT|unix:PATH",
    )
    accepting: bool = setting(
        True,
        parse=_flag,
        fix="give true or false",
        meaning="`false` closes the form to new submissions without stopping the service.",
    )
    # Codenames and replies are on when both folders are set: the state folder holds
    # the installation's codename salt; the replies folder the reviewer's replies.
    state_dir: Path | None = setting(
        None,
        parse=_path,
        fix="give the folder for the service's state (mode 700)",
        meaning="The service's own folder (mode 0700): the onion service key, tor's data, "
        "the codename salt. `sealdrop serve` needs it unless `--local-only`; with "
        "`replies_dir`, turns codename follow-ups on.",
        flag="--state",
        metavar="DIR",
    )
    replies_dir: Path | None = setting(
        None,
        parse=_path,
        fix="give the folder where the operator puts reply files",
        meaning="Folder where the operator puts the reviewer's reply files. With "
        "`state_dir`, turns codename follow-ups and replies on.",
    )
    reply_signing_key_file: Path | None = setting(
        None,
        parse=_path,
        fix="give the reviewer's reply-signing public key (reply-signing.pub, made by "
        "`sealdrop keygen`), or a folder holding only such .pub files",
        meaning="The reviewer's reply-signing public key, `reply-signing.pub` (made "
        "offline by `sealdrop keygen`), or a folder of them, one per reviewer who "
        "answers. Only replies signed by one of these keys are shown; without it, none is.",
    )
    # libsodium's bounds for Argon2id; only tests should go near the low end.
    codename_kdf_memory: int = setting(
        64 * MiB,
        parse=_Size(8 * KiB, 4 * GiB),
        fix=_SIZE_FIX + ", 8 KiB to 4 GiB",
        meaning="Argon2id memory for each codename a source enters (64 MiB with 3 passes "
        "is about 0.25 s on one core).",
    )
    codename_kdf_passes: int = setting(
        3,
        parse=_Count(1, 16),
        fix="give a number of passes (1 to 16)",
        meaning="Argon2id passes for each codename a source enters.",
    )
    codename_max_concurrent: int = setting(
        2,
        parse=_Count(1, 64),
        fix="give a number of derivations (1 to 64)",
        meaning="Codename derivations at once in one worker process; the others wait in "
        "a queue where uploads go first and are never refused, and one slot is kept for "
        'uploads when there are two or more (docs/PERFORMANCE.md, "Codename entries '
        'under a flood").',
    )
    codename_queue_length: int = setting(
        32,
        parse=_Count(1, 96),
        fix="give a number of waiting codename entries (1 to 96)",
        meaning="Codename entries (the replies page) that may wait for a derivation slot "
        'in one worker process; one more gets a calm "try again" page (429) at once. '
        "Uploads are not counted: they always wait.",
    )
    codename_wait_seconds: int = setting(
        30,
        parse=_Count(1, 300),
        fix="give the seconds a codename entry may wait for a derivation slot (1 to 300)",
        meaning="How long a codename entry (the replies page) waits for a derivation slot "
        'before the calm "try again" page (429). Uploads never get it.',
    )
    languages: tuple[str, ...] = setting(
        SHIPPED,
        parse=_languages,
        fix=_LANGUAGE_FIX + ' (like ["en", "sw", "fr"], or "en sw fr" in the variable)',
        meaning="The languages the source pages are offered in, in the order their list "
        "shows them; the others answer 404. Offer only languages a native speaker has "
        "reviewed (docs/TRANSLATIONS.md).",
    )
    default_language: str | None = setting(
        None,
        parse=_language,
        fix=_LANGUAGE_FIX + ", one of those in `languages`",
        meaning="The language of `/` (and of the un-prefixed paths). Unset: the first of "
        "`languages`. The visitor's browser never chooses it: it may only order the list.",
    )
    sweep_interval_seconds: int = setting(
        600,
        parse=_Count(1, 3600),
        fix="give the seconds between two sweeps of the file times (1 to 3600: at most an hour)",
        meaning="How often the sweep resets the change time of every spool and reply file and "
        "folder at once: a disk seized while the service runs still shows when uploads and "
        "visits happened since the last sweep, and nothing older (docs/SEIZURE.md).",
    )
    recycle_after_requests: int = setting(
        50,
        parse=_Count(5, 10000),
        fix="give a number of requests (5 to 10000)",
        meaning="A worker process is replaced after this many requests (plus a random "
        "0 to half as many more), so that whatever a source's requests left in its "
        "memory goes with it; uploads in progress finish first. docs/RELIABILITY.md "
        "states the bound.",
    )
    tor_control: str | None = setting(
        None,
        parse=_text,
        fix="give HOST:PORT or unix:PATH of tor's control port",
        meaning="A running tor's control port (`127.0.0.1:9051` or `unix:/run/tor/control`) "
        "to publish the onion service through. Without it `sealdrop serve` starts its own "
        "tor.",
        flag="--tor-control",
        metavar="HOST:PORT|unix:PATH",
    )
    tor_control_password: str | None = setting(
        None,
        parse=_text,
        fix="give the password of tor's HashedControlPassword, or use cookie authentication",
        meaning="The password for `tor_control`, if tor asks for one (cookie authentication "
        "needs none). Best given as the variable, never on a command line.",
        secret=True,
    )

    @property
    def replies_enabled(self) -> bool:
        return self.state_dir is not None and self.replies_dir is not None

    @property
    def page_default_language(self) -> str:
        return self.default_language or self.languages[0]


@dataclass(frozen=True)
class _Entry:
    name: str
    spec: Declared
    default: Any

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def how_to_give(self) -> str:
        flag = f", or as {self.spec.flag}" if self.spec.flag else ""
        return f"as `{self.name} = ...` in the config file, as {self.env_var}{flag}"


def declared() -> tuple[_Entry, ...]:
    """Every setting, in `Settings`' order, with its declaration and default."""
    return tuple(
        _Entry(field.name, field.metadata["setting"], field.default)
        for field in dataclasses.fields(Settings)
    )


_BY_NAME = {entry.name: entry for entry in declared()}


# --- reading ---------------------------------------------------------------------------------


def load_settings(
    env: Mapping[str, str],
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Fold the config file (if any), the ``SEALDROP_*`` variables in `env` and the
    command line's `flags` (setting name -> text given, None when not given) into Settings."""
    values = _given(env, config_file, flags)
    for entry in _BY_NAME.values():
        if entry.required and entry.name not in values:
            raise SettingsError(
                f"setting {entry.name} is missing; {entry.spec.fix} ({entry.how_to_give()})"
            )
    settings = Settings(**values)
    if settings.page_default_language not in settings.languages:
        entry = _BY_NAME["default_language"]
        raise SettingsError(
            f"setting default_language is {settings.default_language!r}, which `languages` "
            f"({' '.join(settings.languages)}) does not offer; add it there or choose one of "
            f"those ({entry.how_to_give()})"
        )
    return settings


def add_flags(parser: argparse.ArgumentParser, only: Collection[str] | None = None) -> None:
    """``--config`` and every setting's flag (or those of the settings named in `only`),
    for a command that reads the settings."""
    parser.add_argument("--config", type=Path, metavar="FILE", help="settings file (TOML)")
    for entry in _BY_NAME.values():
        if entry.spec.flag is not None and (only is None or entry.name in only):
            first_sentence = entry.spec.meaning.split(". ")[0].rstrip(".")
            parser.add_argument(
                entry.spec.flag,
                dest=entry.name,
                metavar=entry.spec.metavar,
                help=f"{first_sentence} (setting {entry.name}, {entry.env_var})",
            )


def from_command_line(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """The settings for a command whose parser got `add_flags`: flags, then `env`, then
    the ``--config`` file."""
    return load_settings(env, getattr(args, "config", None), _flags(args))


def one_from_command_line(name: str, args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    """One setting, read as `from_command_line` reads it (None when not given), for a
    command that needs only that one (``onion add-client`` and the state folder)."""
    return _given(env, getattr(args, "config", None), _flags(args)).get(name)


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name, None) for name, e in _BY_NAME.items() if e.spec.flag}


def _given(
    env: Mapping[str, str], config_file: Path | None, flags: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Every setting given anywhere, parsed; the flag wins over the variable over the file."""
    values: dict[str, Any] = {}
    if config_file is not None:
        for name, raw in _read_toml(config_file).items():
            entry = _BY_NAME.get(name)
            if entry is None:
                raise SettingsError(
                    f"the config file {config_file} has an unknown setting {name!r}; "
                    f"remove it or fix its spelling (known settings: {', '.join(_BY_NAME)})"
                )
            values[name] = _parse_one(entry, raw, f"config file {config_file}")
    for entry in _BY_NAME.values():
        if entry.env_var in env:
            values[entry.name] = _parse_one(entry, env[entry.env_var], entry.env_var)
    for name, raw in (flags or {}).items():
        entry = _BY_NAME[name]
        if raw is not None:
            values[name] = _parse_one(entry, raw, str(entry.spec.flag))
    return values


def _parse_one(entry: _Entry, raw: Any, where: str) -> Any:
    try:
        return entry.spec.parse(raw)
    except _BadValue as err:
        raise SettingsError(
            f"setting {entry.name} ({where}) {err}; {entry.spec.fix} ({entry.how_to_give()})"
        ) from None


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


# --- documentation -----------------------------------------------------------------------------


def settings_table() -> str:
    """README's configuration table, one row per declared setting."""
    rows = ["| setting | default | variable | flag | meaning |", "| --- | --- | --- | --- | --- |"]
    for entry in _BY_NAME.values():
        flag = f"`{entry.spec.flag}`" if entry.spec.flag else ""
        rows.append(
            f"| `{entry.name}` | {_shown(entry)} | `{entry.env_var}` | {flag} "
            f"| {entry.spec.meaning} |"
        )
    return "\n".join(rows)


def _shown(entry: _Entry) -> str:
    value = entry.default
    if entry.required:
        return "(required)"
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(entry.spec.parse, _Size):
        return f"`{human_size(value)}`"
    if isinstance(value, tuple):
        return f"`{' '.join(value)}`"
    return f"`{value}`"
