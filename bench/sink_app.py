"""A do-nothing upload sink under sealdrop's own gunicorn configuration: the ceiling.

It reads each POST body from ``request.stream`` in 1 MiB pieces and throws them away,
so `upload_bench.py` can tell what gunicorn, Flask and loopback cost by themselves
from what parsing and sealing add. Same worker class, workers, threads, limits and
logging as `sealdrop serve` (`gunicorn_options`); prints its URL when it listens.

    .venv/bin/python bench/sink_app.py --listen 127.0.0.1:0
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask, request

from sealdrop.server.gunicorn_conf import gunicorn_options
from sealdrop.server.patches import hide_server_header
from sealdrop.server.serve import SealdropServer, listening_url
from sealdrop.settings import Listen, Settings

PIECE = 1024 * 1024


def create_sink_app(max_body_bytes: int) -> Flask:
    app = Flask("sealdrop-sink")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes

    @app.get("/")
    def index() -> str:
        return "sink\n"

    @app.post("/submit")
    def submit() -> str:
        stream = request.stream
        received = 0
        while piece := stream.read(PIECE):
            received += len(piece)
        return f"received {received}\n"

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (default a free port)")
    parser.add_argument("--max-body-bytes", type=int, default=4 * 1024**3)
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    # Only the listening address is used from the settings by gunicorn_options.
    settings = Settings(Path("."), Path("."), listen=Listen(host, int(port)))

    def when_ready(server: Any) -> None:
        print(listening_url(server), flush=True)

    hide_server_header()
    options = gunicorn_options(settings, when_ready=when_ready)
    options["proc_name"] = "sealdrop-sink"
    SealdropServer(partial(create_sink_app, args.max_body_bytes), options).run()


if __name__ == "__main__":
    main()
