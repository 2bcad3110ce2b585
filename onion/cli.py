"""``sealdrop onion add-client NAME --state DIR``: works without tor running."""

from __future__ import annotations

import argparse
import sys

from .errors import OnionError
from .keys import add_client


def run_add_client(args: argparse.Namespace) -> int:
    try:
        credentials = add_client(args.state, args.name)
    except OnionError as err:
        print(f"sealdrop onion add-client: {err}", file=sys.stderr)
        return 2
    print(credentials.instructions(), end="")
    print(
        "Restart sealdrop serve for the new client to take effect. From now on ONLY "
        "authorised clients can reach the service."
    )
    return 0
