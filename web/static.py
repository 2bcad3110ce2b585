"""The static files, read once at start-up and answered the same way every time.

Flask's own static view answers from the file on disk: it sets ``Last-Modified`` from
the file's time and an ``ETag`` from it, and answers ``If-Modified-Since``,
``If-None-Match`` and ``Range`` (304, 206). Even with those headers removed from the
answer (web.headers), a visitor could still bisect the install time with
``If-Modified-Since`` and see 304 or 200: a fingerprint of this instance. Here each
file's bytes are read when the app is built and every request gets the same 200
with the same headers, whatever it asks; nothing depends on a time.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Response, abort

DEFAULT_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class StaticFile:
    data: bytes
    media_type: str


def load_static_files(folder: Path) -> dict[str, StaticFile]:
    """Every file directly in `folder`, by name (the folder holds no sub-folders)."""
    found = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            media_type = mimetypes.guess_type(path.name)[0] or DEFAULT_MEDIA_TYPE
            found[path.name] = StaticFile(path.read_bytes(), media_type)
    return found


def register_static_files(app: Flask, folder: Path) -> None:
    """Serve `folder`'s files at ``/static/NAME`` under the endpoint ``static`` (url_for)."""
    files = load_static_files(folder)

    @app.get("/static/<path:filename>", endpoint="static")
    def static_file(filename: str) -> Response:
        found = files.get(filename)
        if found is None:
            abort(404)
        return Response(found.data, mimetype=found.media_type)
