"""The reviewer's passphrase: typed at the terminal without echo, or taken from the environment.

``SEALDROP_PASSPHRASE`` is for automation and tests only. It is less safe than
typing: the environment of a process can be read by the same user's other
processes, may be inherited by child processes, and a shell may keep the
command that set it in its history.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Mapping

ENV_VAR = "SEALDROP_PASSPHRASE"


class PassphraseError(Exception):
    """Root of every reason no usable passphrase could be obtained."""


class NoTerminal(PassphraseError):
    """There is no terminal to type the passphrase on, and SEALDROP_PASSPHRASE is unset."""


class EmptyPassphrase(PassphraseError):
    """The passphrase typed (or set in SEALDROP_PASSPHRASE) is empty."""


class PassphraseMismatch(PassphraseError):
    """The two passphrases typed when making a key differ."""


def read_passphrase(
    confirm: bool,
    *,
    environ: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] | None = None,
) -> str:
    """Return the passphrase; with `confirm`, ask twice and require both to match.

    `environ` and `prompt` default to os.environ and a no-echo terminal prompt;
    tests pass their own.
    """
    env = os.environ if environ is None else environ
    if ENV_VAR in env:
        passphrase = env[ENV_VAR]
        if not passphrase:
            raise EmptyPassphrase(f"{ENV_VAR} is set but empty; set a passphrase or unset it")
        return passphrase
    ask = _terminal_prompt if prompt is None else prompt
    passphrase = ask("Passphrase for the reviewer secret key: ")
    if not passphrase:
        raise EmptyPassphrase("the passphrase is empty; type a passphrase")
    if confirm and ask("Type the passphrase again: ") != passphrase:
        raise PassphraseMismatch("the two passphrases differ; run the command again")
    return passphrase


def _terminal_prompt(text: str) -> str:
    # getpass falls back to reading stdin with echo when there is no terminal;
    # a passphrase must never be echoed, so refuse instead.
    if not _has_terminal():
        raise NoTerminal(
            f"no terminal to type the passphrase on; run this in a terminal (or, for "
            f"automation only, set {ENV_VAR})"
        )
    return getpass.getpass(text)


def _has_terminal() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True
