"""tor: the program sealdrop starts (its version and proof-of-work module), or the
control port of a running tor (it answers and accepts our authentication)."""

from __future__ import annotations

import re
import subprocess

import stem

from ..child_env import child_env, find_program
from ..onion.errors import OnionError
from .findings import Finding, ok, problem, problem_from_message

# Onion-service proof-of-work (the DoS defence) arrived in tor 0.4.8, but only as torrc
# options; ADD_ONION, which sealdrop publishes with, takes its PoW keywords from tor
# 0.4.9.2-alpha. An older tor publishes sealdrop's service without the defence.
POW_MINIMUM = (0, 4, 9, 2)
TOR_VERSION_TIMEOUT = 10.0
_TOR_VERSION = re.compile(r"\bTor version (\d+)\.(\d+)\.(\d+)(?:\.(\d+))?(-[0-9A-Za-z-]+)?")


def parse_tor_version(text: str) -> tuple[int, int, int, int] | None:
    """(major, minor, micro, patch) from ``tor --version`` output, or None."""
    match = _TOR_VERSION.search(text)
    if match is None:
        return None
    major, minor, micro, patch = (int(group or 0) for group in match.groups()[:4])
    return major, minor, micro, patch


def format_version(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def version_finding(version: tuple[int, int, int, int], where: str) -> Finding:
    name = f"tor {format_version(version)} ({where})"
    if version < POW_MINIMUM:
        return problem(
            f"{name} cannot give sealdrop's onion service the proof-of-work defence (ADD_ONION "
            f"takes it from tor {format_version(POW_MINIMUM)}), so a flood of connections can "
            "keep sources out",
            "upgrade tor: Debian 12's tor package is 0.4.9 since its 2025 updates "
            "(apt-get update && apt-get install tor), or use the Tor Project's repository",
        )
    return ok(f"{name} supports the proof-of-work defence")


def check_tor_program(tor_cmd: str) -> list[Finding]:
    """``tor --version``; and ``--list-modules``, since proof-of-work is an optional
    module (a tor built without ``--enable-gpl`` lacks it whatever its version)."""
    try:
        result = _run_tor(tor_cmd, "--version")
    except FileNotFoundError:
        return [
            problem(
                f"tor is not installed (no {tor_cmd!r} on the PATH)",
                "install it (Debian: apt-get install tor), or attach to a running tor "
                "with --tor-control",
            )
        ]
    except (OSError, subprocess.TimeoutExpired) as err:
        return [problem(f"`{tor_cmd} --version` failed ({err})", "reinstall tor")]
    version = parse_tor_version(result.stdout)
    if result.returncode != 0 or version is None:
        return [
            problem(
                f"`{tor_cmd} --version` did not report a version (exit status {result.returncode})",
                "reinstall tor (Debian: apt-get install --reinstall tor)",
            )
        ]
    findings = [version_finding(version, f"the {tor_cmd!r} program sealdrop starts")]
    if findings[0].ok and _pow_module(tor_cmd) is False:
        findings.append(
            problem(
                f"this tor was built without its proof-of-work module ({tor_cmd} "
                "--list-modules says 'pow: no')",
                "install a tor built with --enable-gpl, like Debian's or the Tor Project's",
            )
        )
    return findings


def _pow_module(tor_cmd: str) -> bool | None:
    """True/False from ``tor --list-modules``; None when tor cannot say."""
    try:
        result = _run_tor(tor_cmd, "--list-modules")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_pow_module(result.stdout)


def parse_pow_module(text: str) -> bool | None:
    match = re.search(r"^pow:\s*(yes|no)\s*$", text, re.MULTILINE)
    return None if match is None else match.group(1) == "yes"


def check_tor_control(control: str, password: str | None = None) -> list[Finding]:
    """Connect and authenticate as ``serve`` will (cookie, password or none)."""
    from ..onion.control import connect

    try:
        controller = connect(control, password)
    except OnionError as err:
        return [problem_from_message(str(err), "check tor's ControlPort/ControlSocket lines")]
    try:
        version = parse_tor_version(f"Tor version {controller.get_version()}")
    except stem.ControllerError as err:
        return [
            problem(f"tor's control port at {control} stopped answering ({err})", "check tor's log")
        ]
    finally:
        controller.close()
    reached = ok(f"tor's control port at {control} answers and accepts sealdrop's authentication")
    if version is None:
        return [reached, problem(f"tor at {control} reports no version", "upgrade tor")]
    return [reached, version_finding(version, f"at {control}")]


def _run_tor(tor_cmd: str, option: str) -> subprocess.CompletedProcess[str]:
    """``tor OPTION``'s output; tor answers these without starting."""
    return subprocess.run(
        [find_program(tor_cmd), option],
        capture_output=True,
        text=True,
        timeout=TOR_VERSION_TIMEOUT,
        check=False,
        env=child_env(),
    )
