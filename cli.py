"""The `sealdrop` command: one subcommand per job, each implemented in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .settings import add_flags

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sealdrop",
        description="An anonymous dropbox whose uploads are sealed to an offline reviewer.",
    )
    parser.add_argument("--version", action="version", version=f"sealdrop {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (_keygen, _open, _reply, _spool, _serve, _onion, _check):
        add_command(commands)
    return parser


# The reviewer's commands (offline).


def _keygen(commands: Commands) -> None:
    keygen = commands.add_parser(
        "keygen", help="make a reviewer key pair (run this on the offline machine)"
    )
    keygen.add_argument("--out", type=Path, required=True, metavar="DIR")
    keygen.add_argument(
        "--name",
        default="reviewer",
        metavar="NAME",
        help="the key's label: writes NAME.pub and NAME.key (default: reviewer)",
    )
    keygen.add_argument(
        "--reply-signing-only",
        action="store_true",
        help="make only the reply-signing key pair (for a reviewer key made before it existed)",
    )
    # Tests only: a cheap key derivation. Hidden so no reviewer weakens a real key.
    keygen.add_argument(
        "--kdf-cost",
        choices=["sensitive", "moderate", "min"],
        default="sensitive",
        help=argparse.SUPPRESS,
    )
    keygen.set_defaults(run=_later(".reviewer.keygen", "run_keygen"))


def _open(commands: Commands) -> None:
    open_ = commands.add_parser("open", help="decrypt spool files into folders (offline)")
    open_.add_argument("spool", type=Path, metavar="SPOOL")
    open_.add_argument("--key", type=Path, required=True, metavar="FILE")
    open_.add_argument("--out", type=Path, required=True, metavar="DIR")
    open_.add_argument(
        "--remove", action="store_true", help="delete each spool file once it is safely written out"
    )
    open_.add_argument(
        "--strip-metadata",
        action="store_true",
        help="also write a copy of each attachment without hidden metadata (needs mat2)",
    )
    open_.set_defaults(run=_later(".reviewer.opener", "run_open"))


def _reply(commands: Commands) -> None:
    reply = commands.add_parser(
        "reply", help="write a reply file for one source, sealed to its reply key (offline)"
    )
    reply.add_argument("source", type=Path, metavar="SOURCE_DIR", help="a source_... folder")
    reply.add_argument("--out", type=Path, required=True, metavar="DIR")
    reply.add_argument(
        "--signing-key",
        type=Path,
        required=True,
        metavar="FILE",
        help="reply-signing.key (made by sealdrop keygen): the server shows only signed replies",
    )
    reply.add_argument(
        "--message-file",
        type=Path,
        metavar="FILE",
        help="the reply text (default: standard input if piped, else $EDITOR)",
    )
    reply.set_defaults(run=_later(".reviewer.reply", "run_reply"))


def _spool(commands: Commands) -> None:
    spool = commands.add_parser("spool", help="list what a spool holds, without any key")
    spool.add_argument("spool", type=Path, metavar="SPOOL")
    spool.set_defaults(run=_later(".reviewer.listing", "run_spool"))


# The server's commands. `serve` and `check` take every setting's flag (settings.py
# declares them); what is left here are the ways of running, not settings.


def _serve(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="run the web service that takes submissions")
    add_flags(serve)
    serve.add_argument(
        "--local-only",
        action="store_true",
        help="serve on loopback only, WITHOUT publishing on Tor (testing)",
    )
    serve.add_argument(
        "--ephemeral",
        action="store_true",
        help="a new onion address for this run only; its key is never written to disk",
    )
    serve.set_defaults(run=_later(".server.serve", "run_serve"))


def _onion(commands: Commands) -> None:
    onion = commands.add_parser("onion", help="manage the onion service's keys")
    onion_commands = onion.add_subparsers(dest="onion_command", required=True, metavar="ACTION")
    add_client = onion_commands.add_parser(
        "add-client", help="authorise one more source (v3 client authorization)"
    )
    add_client.add_argument("name", metavar="NAME", help="a label for the operator, e.g. alice")
    add_flags(add_client, only=("state_dir",))
    add_client.set_defaults(run=_later(".onion.cli", "run_add_client"))


def _check(commands: Commands) -> None:
    check = commands.add_parser(
        "check", help="check the server's settings, keys, folders and tor; say what to fix"
    )
    add_flags(check)
    check.add_argument("--quiet", action="store_true", help="print only the problems")
    check.set_defaults(run=_later(".checks", "run_check"))


def _later(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A command's implementation, imported only when that command runs: `serve` pulls
    in Flask and gunicorn, which the reviewer's offline commands never need."""

    def run(args: argparse.Namespace) -> int:
        implementation = getattr(importlib.import_module(module, __package__), function)
        status: int = implementation(args)
        return status

    return run


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        print("sealdrop: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
