"""The follow-up's body through the app: its first part is the codename, read by the
same framing as every upload (web.multipart), then the rest is sealed like a first
submission. Anything else is refused with nothing stored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sealdrop import codename

from .conftest import build_multipart

TEST_KDF = {"codename_kdf_memory": 8 * 1024, "codename_kdf_passes": 1}
BOUNDARY = "followUpBoundary"
TYPE = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture
def client(make_app: Callable[..., Flask], tmp_path: Path) -> FlaskClient:
    folders = {}
    for name in ("state", "replies"):
        folders[name] = tmp_path / name
        folders[name].mkdir(mode=0o700)
    app = make_app(state_dir=folders["state"], replies_dir=folders["replies"], **TEST_KDF)
    return app.test_client()


def follow_up(client: FlaskClient, body: bytes) -> int:
    return client.post("/follow-up", data=body, content_type=TYPE).status_code


def test_a_follow_up_is_stored_with_its_files_names_exactly(
    client: FlaskClient, open_spool: Callable[[], list[Any]]
) -> None:
    words = codename.new_codename()
    body = build_multipart(
        [
            ("codename", None, words.encode(), None),
            ("message", None, b"more", None),
            ("files", "C:\\Users\\x\\report.txt", b"data", "text/plain"),
        ],
        boundary=BOUNDARY,
    ).body
    assert follow_up(client, body) == 200
    [opened] = open_spool()
    assert opened.message == "more"
    assert opened.files == [("C:\\Users\\x\\report.txt", "text/plain", b"data")]


def _refusals() -> dict[str, bytes]:
    words = codename.new_codename().encode()
    message = ("message", None, b"more", None)

    def body(*parts: tuple[str, str | None, bytes, str | None]) -> bytes:
        return build_multipart(parts, boundary=BOUNDARY).body

    return {
        "the message first": body(message, ("codename", None, words, None)),
        "the codename as a file": body(("codename", "c.txt", words, None), message),
        "a codename too long": body(("codename", None, words * 20, None), message),
        "a codename not UTF-8": body(("codename", None, b"\xff" + words, None), message),
        "not a codename": body(("codename", None, b"not a codename", None), message),
        "no part at all": f"--{BOUNDARY}--\r\n".encode(),
        "cut inside the codename part": body(("codename", None, words, None), message)[:60],
        "the codename alone": body(("codename", None, words, None)),
    }


@pytest.mark.parametrize("case", sorted(_refusals()))
def test_anything_but_a_codename_first_is_refused_and_nothing_stored(
    client: FlaskClient, spool_dir: Path, case: str
) -> None:
    assert follow_up(client, _refusals()[case]) == 400
    assert list(spool_dir.iterdir()) == []
