"""Static files answer the same whatever a request asks (issue 12, item 6).

The reproduction: Flask's static view answered ``If-Modified-Since`` with 304 or 200
although ``Last-Modified`` was removed from its answers, so a visitor could bisect
the day the instance was installed. Every conditional or range header is sent here,
to the app and to the real gunicorn server; every answer must be the same 200 with
the same headers and the whole file, and carry no time or validator at all (the real
server sends no ``Date`` either).
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parent.parent
CSS = (ROOT / "static" / "style.css").read_bytes()
PAST = "Thu, 01 Jan 1970 00:00:00 GMT"
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"

ASKED: dict[str, dict[str, str]] = {
    "nothing": {},
    "modified since long ago": {"If-Modified-Since": PAST},
    "modified since the future": {"If-Modified-Since": FUTURE},
    "any entity tag": {"If-None-Match": "*"},
    "some entity tag": {"If-None-Match": '"abc", W/"def"'},
    "unmodified since long ago": {"If-Unmodified-Since": PAST},
    "an entity tag that must match": {"If-Match": '"abc"'},
    "a range": {"Range": "bytes=0-9"},
    "a range if unchanged": {"Range": "bytes=0-9", "If-Range": FUTURE},
    "no cache": {"Cache-Control": "no-cache", "Pragma": "no-cache"},
}
# Headers whose presence would carry a time or a validator a visitor could test.
TIMELY = ("last-modified", "etag", "expires", "age", "accept-ranges", "content-range", "vary")


def check_answers(answers: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
    # The reproduction first: a 304 (or 206, 412) tells the asked time from another.
    assert {asked: answer[0] for asked, answer in answers.items()} == dict.fromkeys(answers, 200)
    first = answers["nothing"]
    for asked, (_, headers, body) in answers.items():
        assert body == CSS, asked
        assert headers == first[1], asked
        assert not [name for name in headers if name in TIMELY], asked
        assert headers["cache-control"] == "no-store"


def test_the_app_answers_every_conditional_request_alike(client: FlaskClient) -> None:
    answers = {}
    for asked, headers in ASKED.items():
        response = client.get("/static/style.css", headers=headers)
        seen = {name.lower(): value for name, value in response.headers.items()}
        answers[asked] = (response.status_code, seen, response.get_data())
    check_answers(answers)


def test_a_missing_static_file_is_the_calm_404(client: FlaskClient) -> None:
    for path in ("/static/missing.css", "/static/../app.py", "/static/", "/static/a/style.css"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Error code 404" in response.get_data(as_text=True)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_real_server_answers_every_conditional_request_alike(
    start_server: Callable[..., Any], method: str
) -> None:
    server = start_server()
    answers = {}
    for asked, headers in ASKED.items():
        connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
        try:
            connection.request(method, "/static/style.css", headers=headers)
            response = connection.getresponse()
            body = response.read()
            seen = {name.lower(): value for name, value in response.getheaders()}
        finally:
            connection.close()
        # Not even the time of the answer: a clock's skew tells machines apart.
        assert "date" not in seen
        answers[asked] = (response.status, seen, CSS if method == "HEAD" and not body else body)
        if method == "HEAD":
            assert body == b""
            assert seen["content-length"] == str(len(CSS))
    check_answers(answers)
