"""The web app through Flask's test client: routes, limits, error pages, headers, start-up."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from nacl.public import PrivateKey
from werkzeug.exceptions import ClientDisconnected
from werkzeug.test import EnvironBuilder, TestResponse
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response as BaseResponse

from sealdrop import crypto, records
from sealdrop.app import SWEEPER, StartupRefused, create_app
from sealdrop.keys import KdfCost, encode_secret_key
from sealdrop.settings import Settings
from sealdrop.storage.counters import REFUSED_FULL
from sealdrop.web.discard import EARLY_DISCARD_BYTES, discard_body
from sealdrop.web.headers import CONTENT_SECURITY_POLICY

from .conftest import build_multipart, spool_entries

MARKER = "zq7Mk3rXy"
RECEIPT_PATTERN = r"\d{4}-\d{4}-\d{4}-\d{4}"


def assert_safe_headers(response: BaseResponse) -> None:
    headers = response.headers
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert "camera=()" in headers["Permissions-Policy"]
    assert "geolocation=()" in headers["Permissions-Policy"]
    assert "microphone=()" in headers["Permissions-Policy"]
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Frame-Options"] == "DENY"
    assert "Set-Cookie" not in headers
    assert "Server" not in headers


def post(client: FlaskClient, body: Any, **kwargs: Any) -> TestResponse:
    return client.post("/submit", data=body.body, content_type=body.content_type, **kwargs)


def post_stream(
    client: FlaskClient, stream: Any, content_type: str, content_length: int | None
) -> TestResponse:
    """POST a body read from `stream`, with the declared length given (None: chunked)."""
    environ = EnvironBuilder(method="POST", path="/submit").get_environ()
    environ["CONTENT_TYPE"] = content_type
    environ["wsgi.input"] = stream
    if content_length is None:
        environ.pop("CONTENT_LENGTH", None)
        # What a server that de-chunks the body itself (gunicorn) tells the app.
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(content_length)
    # A Request, not a dict: from a dict the test client would re-read the stream.
    return client.open(Request(environ))


def read_spool_file(path: Path, key: PrivateKey) -> list[records.Event]:
    with path.open("rb") as handle:
        payload = crypto.open_payload(handle, key)
        return list(records.read_payload(payload, payload.version))


def spool_names(spool_dir: Path) -> list[str]:
    return spool_entries(spool_dir)


# --- pages and headers ---------------------------------------------------------------


def test_index_shows_the_form_with_the_configured_limits(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    page = " ".join(response.get_data(as_text=True).split())
    assert 'action="/en/submit"' in page
    assert 'enctype="multipart/form-data"' in page
    assert "Up to 3 files, 4 MiB in total" in page
    assert 'maxlength="1000"' in page
    assert_safe_headers(response)


def test_stylesheet_is_served_with_the_same_headers(client: FlaskClient) -> None:
    with client.get("/static/style.css") as response:
        assert response.status_code == 200
        assert response.mimetype == "text/css"
        assert "Last-Modified" not in response.headers
        assert "ETag" not in response.headers
        assert_safe_headers(response)


def test_unknown_page_is_a_calm_404_that_does_not_echo_the_path(client: FlaskClient) -> None:
    response = client.get(f"/{MARKER}/x?q={MARKER}")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Error code 404" in page
    assert MARKER not in page
    assert_safe_headers(response)


def test_get_on_submit_is_405_and_names_the_allowed_method(client: FlaskClient) -> None:
    response = client.get("/submit")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert "GET" not in response.headers["Allow"]
    assert "Error code 405" in response.get_data(as_text=True)
    assert_safe_headers(response)


def test_no_response_sets_a_cookie(
    client: FlaskClient, submission_body: Callable[..., Any]
) -> None:
    responses = [
        client.get("/"),
        client.get("/nothing"),
        post(client, submission_body("hello")),
        post(client, submission_body("")),
    ]
    assert [r.status_code for r in responses] == [200, 404, 200, 400]
    for response in responses:
        assert_safe_headers(response)


# --- a successful submission ---------------------------------------------------------


def test_message_and_files_are_sealed_and_the_receipt_shown(
    client: FlaskClient,
    submission_body: Callable[..., Any],
    open_spool: Callable[[], list[Any]],
) -> None:
    big = os.urandom(1_500_000)
    body = submission_body("a message ✓\r\nline 2", ("a.txt", b"alpha"), ("big.bin", big))
    response = post(client, body)
    assert response.status_code == 200
    assert_safe_headers(response)
    [opened] = open_spool()
    assert opened.receipt in response.get_data(as_text=True)
    assert opened.message == "a message ✓\r\nline 2"
    assert opened.files == [
        ("a.txt", "application/octet-stream", b"alpha"),
        ("big.bin", "application/octet-stream", big),
    ]


def test_empty_file_input_is_skipped(
    client: FlaskClient, multipart: Callable[..., Any], open_spool: Callable[[], list[Any]]
) -> None:
    body = multipart(
        [("message", None, b"only words", None), ("files", "", b"", "application/octet-stream")]
    )
    assert post(client, body).status_code == 200
    [opened] = open_spool()
    assert opened.message == "only words"
    assert opened.files == []


def test_files_without_a_message_are_accepted(
    client: FlaskClient, multipart: Callable[..., Any], open_spool: Callable[[], list[Any]]
) -> None:
    body = multipart(
        [
            ("message", None, b"", None),
            ("files", "photo.jpg", b"\xff\xd8jpeg", "image/jpeg"),
            ("files", "empty.txt", b"", "text/plain"),
        ]
    )
    assert post(client, body).status_code == 200
    [opened] = open_spool()
    assert opened.message == ""
    assert opened.files == [
        ("photo.jpg", "image/jpeg", b"\xff\xd8jpeg"),
        ("empty.txt", "text/plain", b""),
    ]


def test_unknown_fields_are_ignored(
    client: FlaskClient, multipart: Callable[..., Any], open_spool: Callable[[], list[Any]]
) -> None:
    body = multipart([("message", None, b"hi", None), ("other", None, MARKER.encode(), None)])
    assert post(client, body).status_code == 200
    [opened] = open_spool()
    assert opened.message == "hi"


# --- refusals: nothing is stored ------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    ["", "  \r\n\t "],
    ids=["empty", "whitespace"],
)
def test_nothing_to_send_is_400(
    client: FlaskClient, multipart: Callable[..., Any], spool_dir: Path, message: str
) -> None:
    body = multipart(
        [("message", None, message.encode(), None), ("files", "", b"", "application/octet-stream")]
    )
    response = post(client, body)
    assert response.status_code == 400
    assert_safe_headers(response)
    assert spool_names(spool_dir) == []


def test_body_declared_over_the_limit_is_413_after_reading_at_most_a_little(
    client: FlaskClient, spool_dir: Path
) -> None:
    class Endless(io.RawIOBase):
        """A client that would send far more than it declared, if it were let."""

        given = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            size = min(len(buffer), 4096)
            buffer[:size] = b"\0" * size
            self.given += size
            return size

    stream = Endless()
    response = post_stream(client, stream, "multipart/form-data; boundary=x", 4 * 1024 * 1024 + 1)
    assert response.status_code == 413
    assert "Error code 413" in response.get_data(as_text=True)
    # Some is read, so the client's first bytes in flight meet no reset; then the
    # connection closes instead of waiting for a body that is refused anyway.
    assert 0 < stream.given <= EARLY_DISCARD_BYTES
    assert response.headers["Connection"] == "close"
    assert spool_names(spool_dir) == []


def test_discard_body_reads_to_the_end_within_its_bounds_only() -> None:
    assert discard_body(io.BytesIO(b"x" * 100), 100, 5.0) is True
    over = io.BytesIO(b"x" * 200_000)
    assert discard_body(over, 100_000, 5.0) is False
    assert over.tell() <= 100_001
    ticks = iter(range(100))

    # A client that never stops: the time bound ends it (one read per clock tick here).
    class Endless(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            return b"x" * size

    endless: Any = Endless()
    assert discard_body(endless, 10**12, 3.0, clock=lambda: float(next(ticks))) is False
    assert next(ticks) == 4  # the start, two reads, and the tick that ran out


def test_streamed_body_over_the_limit_is_413_while_reading(
    client: FlaskClient, submission_body: Callable[..., Any], spool_dir: Path
) -> None:
    body = submission_body("x", ("big.bin", b"\0" * (5 * 1024 * 1024)))
    # No Content-Length: a chunked upload, whose length is only known by counting.
    response = post_stream(client, io.BytesIO(body.body), body.content_type, None)
    assert response.status_code == 413
    assert spool_names(spool_dir) == []


def test_chunked_body_within_the_limit_is_accepted(
    client: FlaskClient, submission_body: Callable[..., Any], open_spool: Callable[[], list[Any]]
) -> None:
    body = submission_body("chunked", ("a.bin", b"abc" * 1000))
    response = post_stream(client, io.BytesIO(body.body), body.content_type, None)
    assert response.status_code == 200
    [opened] = open_spool()
    assert opened.files == [("a.bin", "application/octet-stream", b"abc" * 1000)]


def test_too_many_files_is_413(
    client: FlaskClient, submission_body: Callable[..., Any], spool_dir: Path
) -> None:
    files = [(f"f{i}.txt", b"data") for i in range(4)]
    response = post(client, submission_body("hi", *files))
    assert response.status_code == 413
    assert spool_names(spool_dir) == []


def test_as_many_files_as_allowed_is_fine(
    client: FlaskClient, submission_body: Callable[..., Any], open_spool: Callable[[], list[Any]]
) -> None:
    files = [(f"f{i}.txt", b"data") for i in range(3)]
    assert post(client, submission_body("hi", *files)).status_code == 200
    assert len(open_spool()[0].files) == 3


def test_too_many_parts_is_413(
    client: FlaskClient, multipart: Callable[..., Any], spool_dir: Path
) -> None:
    parts = [("message", None, b"hi", None)] + [("junk", None, b"x", None)] * 10
    assert post(client, multipart(parts)).status_code == 413
    assert spool_names(spool_dir) == []


def test_message_at_the_limit_is_fine_and_one_more_char_is_413(
    client: FlaskClient, submission_body: Callable[..., Any], spool_dir: Path
) -> None:
    # Line breaks count once, as the textarea's maxlength counts them.
    at_limit = "é" * 998 + "\r\n" + "x"
    assert post(client, submission_body(at_limit)).status_code == 200
    assert len(spool_names(spool_dir)) == 1
    response = post(client, submission_body(at_limit + "y"))
    assert response.status_code == 413
    assert len(spool_names(spool_dir)) == 1


def test_huge_message_is_refused_without_being_held(
    client: FlaskClient, submission_body: Callable[..., Any], spool_dir: Path
) -> None:
    assert post(client, submission_body("x" * 3_000_000)).status_code == 413
    assert spool_names(spool_dir) == []


def test_oversized_part_header_is_413(
    client: FlaskClient, multipart: Callable[..., Any], spool_dir: Path
) -> None:
    body = multipart([("message", None, b"hi", None), ("files", "n" * 3000, b"x", "text/plain")])
    assert post(client, body).status_code == 413
    assert spool_names(spool_dir) == []


def test_endless_part_header_is_413(client: FlaskClient, spool_dir: Path) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="message"\r\nX-Junk: ' + b"a" * 100_000
    response = client.post("/submit", data=body, content_type="multipart/form-data; boundary=b")
    assert response.status_code == 413
    assert spool_names(spool_dir) == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"message=hello", "application/x-www-form-urlencoded"),
        (
            b'--b\r\nContent-Disposition: form-data; name="message"\r\n\r\nhi\r\n--b--\r\n',
            "multipart/form-data",
        ),
        (b"garbage without any boundary", "multipart/form-data; boundary=b"),
        (b"--b\r\nX-No-Disposition: 1\r\n\r\nhi\r\n--b--\r\n", "multipart/form-data; boundary=b"),
        (
            b'--b\r\nContent-Disposition: form-data; name="message"\r\n\r\nhi, cut off',
            "multipart/form-data; boundary=b",
        ),
        (
            b'--b\r\nContent-Disposition: form-data; name="files"; filename="a"\r\n\r\nA\r\n'
            b'--b\r\nContent-Disposition: form-data; name="message"\r\n\r\nlate\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
        ),
        (
            b'--b\r\nContent-Disposition: form-data; name="files"; filename="\xff\xfe"\r\n\r\n'
            b"A\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
    ],
    ids=[
        "urlencoded",
        "no-boundary",
        "garbage",
        "no-disposition",
        "truncated",
        "message-last",
        "undecodable-name",
    ],
)
def test_malformed_bodies_are_400_and_store_nothing(
    client: FlaskClient, spool_dir: Path, body: bytes, content_type: str
) -> None:
    response = client.post("/submit", data=body, content_type=content_type)
    assert response.status_code == 400
    assert "Error code 400" in response.get_data(as_text=True)
    assert MARKER not in response.get_data(as_text=True)
    assert spool_names(spool_dir) == []


def test_client_that_disconnects_mid_body_keeps_what_arrived_marked_cut(
    client: FlaskClient,
    submission_body: Callable[..., Any],
    spool_dir: Path,
    reviewer_key: PrivateKey,
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    body = submission_body("m", ("a.bin", data)).body
    half = len(body) // 2

    class Disconnecting(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            if self.sent >= half:
                raise ClientDisconnected()
            size = min(len(buffer), half - self.sent)
            buffer[:size] = body[self.sent : self.sent + size]
            self.sent += size
            return size

    boundary = body[2 : body.index(b"\r\n")].decode()
    response = post_stream(
        client, Disconnecting(), "multipart/form-data; boundary=" + boundary, len(body)
    )
    assert response.status_code == 400
    arrived = half - body.index(data[:64])
    assert_kept_cut(spool_dir, reviewer_key, "m", "a.bin", data, at_least=arrived - 100)


def assert_kept_cut(
    spool_dir: Path, key: PrivateKey, message: str, name: str, data: bytes, at_least: int
) -> None:
    """The spool holds one file: `message`, then a prefix of `data` cut off."""
    (path,) = spool_dir.glob("*.sealed")
    assert spool_names(spool_dir) == [path.name]
    events = read_spool_file(path, key)
    assert "".join(e.text for e in events if isinstance(e, records.MessageText)) == message
    kept = b"".join(e.data for e in events if isinstance(e, records.AttachmentBytes))
    end = events[-1]
    assert isinstance(end, records.PayloadEnd)
    assert end.cut == records.UploadCut(records.CUT_IN_ATTACHMENT, 0, len(kept))
    assert [e.name for e in events if isinstance(e, records.AttachmentStart)] == [name]
    assert at_least <= len(kept) and kept == data[: len(kept)]


def test_body_shorter_than_its_declared_length_keeps_what_arrived_marked_cut(
    client: FlaskClient,
    submission_body: Callable[..., Any],
    spool_dir: Path,
    reviewer_key: PrivateKey,
) -> None:
    data = os.urandom(2 * 1024 * 1024)
    body = submission_body("m", ("a.bin", data))
    cut = body.body[: len(body.body) // 2]
    response = post_stream(client, io.BytesIO(cut), body.content_type, len(body.body))
    assert response.status_code == 400
    arrived = len(cut) - body.body.index(data[:64])
    assert_kept_cut(spool_dir, reviewer_key, "m", "a.bin", data, at_least=arrived - 100)


@pytest.mark.parametrize(
    "cut_at",
    ["inside the first headers", "right after the first headers", "nothing but blanks"],
)
def test_a_cut_before_any_content_keeps_nothing(
    client: FlaskClient, spool_dir: Path, cut_at: str
) -> None:
    body = build_multipart(
        [("message", None, b"   " if "blanks" in cut_at else b"text", None)], boundary="cut"
    ).body
    ends = {
        "inside the first headers": body.index(b"\r\n\r\n"),
        "right after the first headers": body.index(b"\r\n\r\n") + 4,
        "nothing but blanks": len(body) - 3,
    }
    stream = io.BytesIO(body[: ends[cut_at]])
    response = post_stream(client, stream, "multipart/form-data; boundary=cut", len(body))
    assert response.status_code == 400
    assert spool_names(spool_dir) == []


def test_a_refusal_stays_a_refusal_even_if_the_client_then_goes(
    make_app: Callable[..., Flask], spool_dir: Path
) -> None:
    # The message is over its limit before the body is cut: nothing is kept.
    client = make_app(max_message_chars=10).test_client()
    body = build_multipart([("message", None, b"x" * 200, None)], boundary="cut").body
    stream = io.BytesIO(body[: len(body) - 10])
    response = post_stream(client, stream, "multipart/form-data; boundary=cut", len(body))
    assert response.status_code == 413
    assert spool_names(spool_dir) == []


def test_not_accepting_is_503_and_stores_nothing(
    make_app: Callable[..., Flask], submission_body: Callable[..., Any], spool_dir: Path
) -> None:
    client = make_app(accepting=False).test_client()
    response = post(client, submission_body("hello"))
    assert response.status_code == 503
    assert "Error code 503" in response.get_data(as_text=True)
    assert_safe_headers(response)
    assert spool_names(spool_dir) == []
    assert client.get("/").status_code == 200


def test_full_disk_is_507_and_stores_nothing(
    make_app: Callable[..., Flask],
    submission_body: Callable[..., Any],
    spool_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A reserve larger than any disk: the spool reports itself full.
    app = make_app(reserve_bytes=1024**5)
    client = app.test_client()
    with caplog.at_level(logging.DEBUG):
        response = post(client, submission_body(MARKER))
    assert response.status_code == 507
    assert "Error code 507" in response.get_data(as_text=True)
    assert spool_names(spool_dir) == []
    # Counted for `sealdrop check`, never logged: a timestamped line would date the visit.
    assert caplog.text == ""
    assert app.extensions[SWEEPER].counters.totals()[REFUSED_FULL] == 1


# --- unexpected failures and the form parser --------------------------------------------


def test_unexpected_error_is_a_500_page_logged_without_request_data(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> str:
        raise ValueError(f"input was {request.args['q']}")

    app.add_url_rule("/explode", view_func=explode)
    with caplog.at_level(logging.DEBUG):
        response = app.test_client().get(
            f"/explode?q={MARKER}", headers={"User-Agent": MARKER, "X-Forwarded-For": "10.9.8.7"}
        )
    assert response.status_code == 500
    assert "Error code 500" in response.get_data(as_text=True)
    assert MARKER not in response.get_data(as_text=True)
    assert_safe_headers(response)
    assert "ValueError" in caplog.text
    assert "test_app.py" in caplog.text
    assert MARKER not in caplog.text
    assert "10.9.8.7" not in caplog.text
    assert all(record.exc_info is None for record in caplog.records)


def test_any_attempt_to_parse_the_form_fails_instead_of_spooling(
    app: Flask,
    submission_body: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr("tempfile.tempdir", None)

    def careless() -> str:
        return str(len(request.files))

    app.add_url_rule("/careless", view_func=careless, methods=["POST"])
    body = submission_body("m", ("big.bin", os.urandom(1_000_000)))
    response = app.test_client().post("/careless", data=body.body, content_type=body.content_type)
    assert response.status_code == 500
    assert "FormParsingRefused" in caplog.text
    assert list(temp.iterdir()) == []


# --- start-up -------------------------------------------------------------------------


def test_stale_part_files_are_removed_at_start(settings: Settings, spool_dir: Path) -> None:
    (spool_dir / "0123.sealed.part").write_bytes(b"half an upload")
    (spool_dir / "done.sealed").write_bytes(b"kept")
    create_app(settings)
    assert spool_names(spool_dir) == ["done.sealed"]


def refusal(settings: Settings) -> str:
    with pytest.raises(StartupRefused) as caught:
        create_app(settings)
    return str(caught.value)


def test_missing_public_key_refuses_to_start(settings: Settings, tmp_path: Path) -> None:
    message = refusal(Settings(settings.spool_dir, tmp_path / "nope.pub"))
    assert "nope.pub" in message
    assert "SEALDROP_PUBLIC_KEY_FILE" in message


def test_secret_key_where_the_public_key_belongs_refuses_to_start(
    settings: Settings, tmp_path: Path, reviewer_key: PrivateKey
) -> None:
    secret = tmp_path / "reviewer.key"
    secret.write_text(encode_secret_key(reviewer_key, "passphrase", KdfCost.MIN))
    message = refusal(Settings(settings.spool_dir, secret))
    assert "SECRET key" in message
    assert "public_key_file" in message


@pytest.mark.parametrize(
    ("mangle", "expected"),
    [
        (lambda text: "hello world\n", "not a sealdrop public key"),
        (lambda text: text[:-3] + ("a" if text[-3] != "a" else "b") + text[-2:], "checksum"),
        (lambda text: text.strip()[:-5] + "\n", "truncated"),
    ],
    ids=["not-a-key", "mistyped", "truncated"],
)
def test_malformed_public_key_refuses_to_start(
    settings: Settings,
    public_key_file: Path,
    mangle: Callable[[str], str],
    expected: str,
) -> None:
    public_key_file.write_text(mangle(public_key_file.read_text()))
    assert expected in refusal(settings)


def test_missing_spool_refuses_to_start(settings: Settings, tmp_path: Path) -> None:
    message = refusal(Settings(tmp_path / "absent", settings.public_key_file))
    assert "does not exist" in message
    assert "install -d -m 700" in message
    assert "SEALDROP_SPOOL_DIR" in message


def test_spool_readable_by_others_refuses_to_start(settings: Settings, spool_dir: Path) -> None:
    os.chmod(spool_dir, 0o755)
    assert "chmod 700" in refusal(settings)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_spool_refuses_to_start(settings: Settings, spool_dir: Path) -> None:
    os.chmod(spool_dir, 0o500)
    try:
        assert "not writable" in refusal(settings)
    finally:
        os.chmod(spool_dir, 0o700)


def test_app_is_built_fresh_each_time(settings: Settings, spool_dir: Path, tmp_path: Path) -> None:
    other_spool = tmp_path / "other"
    other_spool.mkdir(mode=0o700)
    first = create_app(settings)
    second = create_app(Settings(other_spool, settings.public_key_file, accepting=False))
    assert first is not second
    assert first.test_client().get("/").status_code == 200
    body = b'--b\r\nContent-Disposition: form-data; name="message"\r\n\r\nhi\r\n--b--\r\n'
    status = (
        second.test_client()
        .post("/submit", data=body, content_type="multipart/form-data; boundary=b")
        .status_code
    )
    assert status == 503
