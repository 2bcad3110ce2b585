"""What `sealdrop check` looks at, from the settings (or the command line alone)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Targets:
    """What to check; None means "not configured" and skips that check."""

    config_file: Path | None = None
    spool_dir: Path | None = None
    public_key_file: Path | None = None
    state_dir: Path | None = None
    replies_dir: Path | None = None
    reply_signing_key_file: Path | None = None
    reserve_bytes: int = 0
    tor_control: str | None = None
    tor_control_password: str | None = None
    tor_cmd: str = "tor"
