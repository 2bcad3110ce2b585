"""One exception per way publishing the onion service can fail.

Every message names the problem and what the operator can do about it. None of
them ever carries anything about a source: the onion layer never sees one.
"""

from __future__ import annotations


class OnionError(Exception):
    """Root of every failure of the onion layer."""


class TorNotInstalled(OnionError):
    """sealdrop was asked to start its own tor, but no tor program is on the PATH."""

    def __init__(self, tor_cmd: str) -> None:
        super().__init__(
            f"tor is not installed (no '{tor_cmd}' on the PATH). Install it "
            "(Debian: sudo apt-get install tor) or attach to a running tor with --tor-control."
        )


class TorStartFailed(OnionError):
    """The tor that sealdrop started exited, or never opened its control socket."""

    def __init__(self, detail: str, log_tail: str) -> None:
        text = f"the tor started by sealdrop did not come up: {detail}."
        if log_tail:
            text += f" Its last log lines:\n{log_tail}\n"
        text += " Fix what tor reports above (or remove a stale tor/ folder in --state)."
        super().__init__(text)


class ControlPortRefused(OnionError):
    """Nothing accepts connections on the control port or socket given with --tor-control."""

    def __init__(self, control: str, detail: str) -> None:
        super().__init__(
            f"cannot reach tor's control port at {control} ({detail}). Check that tor is running "
            "and that its torrc has a matching 'ControlPort' or 'ControlSocket' line."
        )


class AuthenticationFailed(OnionError):
    """tor's control port refused our credentials (cookie unreadable, wrong or missing password)."""

    def __init__(self, control: str, detail: str) -> None:
        super().__init__(
            f"tor at {control} refused authentication ({detail}). Use cookie authentication "
            "with a cookie file sealdrop's user can read ('CookieAuthentication 1'), or give "
            "the password that matches tor's 'HashedControlPassword'."
        )


class TorTooOld(OnionError):
    """The tor we talk to predates the control-port features sealdrop relies on."""

    def __init__(self, found: str, needed: str) -> None:
        super().__init__(
            f"tor {found} is too old: sealdrop needs tor {needed} or newer for v3 onion "
            "services with client authorization over the control port. Upgrade tor."
        )


class BootstrapStuck(OnionError):
    """tor has not finished connecting to the Tor network, so the service cannot be reached."""

    def __init__(self, progress: int, summary: str, waited: float) -> None:
        super().__init__(
            f"tor is still connecting to the Tor network after {waited:.0f} s "
            f"({progress}%: {summary}). Check this machine's clock and network; if the network "
            "is censored, configure bridges in tor's torrc."
        )


class PublishFailed(OnionError):
    """tor refused to add the onion service, or never uploaded its descriptor."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"tor could not publish the onion service: {detail}. Check tor's log; if the key "
            "file in --state is damaged, move it away to get a new address."
        )


class OnionStateError(OnionError):
    """The onion state folder or a key file in it is unusable (permissions, damage, a name)."""
