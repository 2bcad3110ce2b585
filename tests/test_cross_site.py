"""Cross-site POSTs are refused (issue 12, item 2): a hostile page must not move a source.

The reproduction: a page elsewhere posts its own codename to `/replies` (no script,
one click) and the source lands on the attacker's replies page, from where a
follow-up would be filed with the attacker. Here every POST route gets the headers
real browsers send (Tor Browser is Firefox; what Chromium sends is checked in
test_cross_site_browser.py): our own form, the address bar, a tool without
browser headers pass; another site, another port or scheme of this host, and a
bare ``null`` origin are refused with the calm 403 page, and nothing changes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from nacl.signing import SigningKey

from sealdrop import codename, keys, replies
from sealdrop.signing import encode_signing_public_key
from sealdrop.web.crosssite import sent_by_this_service

from .conftest import build_multipart, message_and_files, signed_reply
from .raw_http import send_while_reading, whole_response

TEST_KDF = {"codename_kdf_memory": 8 * 1024, "codename_kdf_passes": 1}
HOST = "localhost"  # the test client's Host header
FORM = "application/x-www-form-urlencoded"
NAVIGATION = {"Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-User": "?1"}

# What a browser sends with a form POST, by where the form was.
ACCEPTED = {
    # Our own page: every page says Referrer-Policy: no-referrer, so the Origin is null.
    "own page, null origin": {**NAVIGATION, "Sec-Fetch-Site": "same-origin", "Origin": "null"},
    "own page, full origin": {
        **NAVIGATION,
        "Sec-Fetch-Site": "same-origin",
        "Origin": f"http://{HOST}",
    },
    "address bar": {**NAVIGATION, "Sec-Fetch-Site": "none"},
    "no browser headers (curl)": {},
    "origin only, this service": {"Origin": f"http://{HOST}"},
}
REFUSED = {
    "another site, null origin": {**NAVIGATION, "Sec-Fetch-Site": "cross-site", "Origin": "null"},
    "another site, its origin": {
        **NAVIGATION,
        "Sec-Fetch-Site": "cross-site",
        "Origin": "http://attackerattackerattackerattackerattackerattackerattack.onion",
    },
    "another site, no origin": {**NAVIGATION, "Sec-Fetch-Site": "cross-site"},
    "a subdomain": {**NAVIGATION, "Sec-Fetch-Site": "same-site", "Origin": f"http://x.{HOST}"},
    "another port": {**NAVIGATION, "Sec-Fetch-Site": "same-site", "Origin": f"http://{HOST}:81"},
    "origin only, another site": {"Origin": "http://example.org"},
    "origin only, another scheme": {"Origin": f"https://{HOST}"},
    "origin only, null": {"Origin": "null"},
    "origin with a path": {"Origin": f"http://{HOST}/replies"},
    "an unknown Sec-Fetch-Site": {"Sec-Fetch-Site": "same-origin-ish", "Origin": "null"},
}


SIGNER = SigningKey.generate()


@pytest.fixture
def codename_app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    folders = {}
    for name in ("state", "replies"):
        folders[name] = tmp_path / name
        folders[name].mkdir(mode=0o700)
    signing = tmp_path / "reply-signing.pub"
    signing.write_text(encode_signing_public_key(SIGNER.verify_key) + "\n")
    return make_app(
        state_dir=folders["state"],
        replies_dir=folders["replies"],
        reply_signing_key_file=signing,
        **TEST_KDF,
    )


@pytest.fixture
def codename_client(codename_app: Flask) -> FlaskClient:
    return codename_app.test_client()


def a_codename_with_a_reply(state_dir: Path, replies_dir: Path) -> tuple[str, str]:
    """A valid codename of the app using `state_dir`, and the id of one reply filed for it."""
    words = codename.new_codename()
    salt = codename.load_installation_salt(state_dir)
    derived = codename.derive(words, salt, keys.KdfCost(1, 8 * 1024))
    name = replies.reply_file_name(derived.mailbox_id)
    data = signed_reply("meet at the gate", derived.reply_public_key, derived.mailbox_id, SIGNER)
    (replies_dir / name).write_bytes(data)
    parsed = replies.parse_reply_name(name)
    assert parsed is not None
    return words, parsed[1]


@pytest.fixture
def source(codename_app: Flask, tmp_path: Path) -> tuple[str, str]:
    return a_codename_with_a_reply(tmp_path / "state", tmp_path / "replies")


def stored(spool_dir: Path) -> list[Path]:
    """Submissions in the spool, finished or not (the spool's own pool aside)."""
    return [p for p in spool_dir.iterdir() if p.suffix in (".sealed", ".part")]


def post_every_route(
    client: FlaskClient, headers: dict[str, str], words: str, reply_id: str
) -> dict[str, Any]:
    """POST to each state-changing route with `headers`; the responses by route."""
    submission = message_and_files("from a page", ("a.txt", b"x"))
    follow_up = build_multipart(
        [("codename", None, words.encode(), None), ("message", None, b"more", None)]
    )
    return {
        "/submit": client.post(
            "/submit", data=submission.body, content_type=submission.content_type, headers=headers
        ),
        "/replies": client.post(
            "/replies", data=urlencode({"codename": words}), content_type=FORM, headers=headers
        ),
        "/follow-up": client.post(
            "/follow-up", data=follow_up.body, content_type=follow_up.content_type, headers=headers
        ),
        "/replies/delete": client.post(
            "/replies/delete",
            data=urlencode({"codename": words, "reply": reply_id}),
            content_type=FORM,
            headers=headers,
        ),
    }


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_post_from_another_page_is_refused_and_changes_nothing(
    case: str,
    codename_client: FlaskClient,
    source: tuple[str, str],
    spool_dir: Path,
    tmp_path: Path,
) -> None:
    words, reply_id = source
    answers = post_every_route(codename_client, REFUSED[case], words, reply_id)
    for route, response in answers.items():
        page = response.get_data(as_text=True)
        assert response.status_code == 403, (route, page[:300])
        assert "This form came from another website" in page, route
        assert "Nothing was sent or changed" in page
        assert words not in page and "meet at the gate" not in page
    assert stored(spool_dir) == []
    assert len(reply_files(tmp_path / "replies")) == 1  # the reply was not deleted


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_a_post_from_our_own_page_or_no_browser_is_served(
    case: str,
    codename_client: FlaskClient,
    source: tuple[str, str],
    spool_dir: Path,
    tmp_path: Path,
) -> None:
    words, reply_id = source
    answers = post_every_route(codename_client, ACCEPTED[case], words, reply_id)
    assert {route: r.status_code for route, r in answers.items()} == dict.fromkeys(answers, 200)
    assert "meet at the gate" in answers["/replies"].get_data(as_text=True)
    assert len(stored(spool_dir)) == 2  # the submission and the follow-up
    assert reply_files(tmp_path / "replies") == []  # deleted


def reply_files(folder: Path) -> list[str]:
    """The replies a source could still read (a deleted one waits, hidden, for the sweep)."""
    return [p.name for p in folder.iterdir() if replies.parse_reply_name(p.name)]


def test_every_post_route_is_covered(codename_app: Flask) -> None:
    """A new POST route must be added to post_every_route (and so to these tests)."""
    posts = {
        re.sub(r"^/<[^>]+>", "", rule.rule)  # the same routes under a language prefix
        for rule in codename_app.url_map.iter_rules()
        if "POST" in (rule.methods or ())
    }
    assert posts == {"/submit", "/replies", "/follow-up", "/replies/delete"}


def test_other_methods_are_refused_the_same_way(codename_client: FlaskClient) -> None:
    headers = {"Sec-Fetch-Site": "cross-site", "Origin": "null"}
    for method in ("PUT", "DELETE", "PATCH"):
        assert codename_client.open("/submit", method=method, headers=headers).status_code == 403
        assert codename_client.open("/sw/submit", method=method, headers=headers).status_code == 403
    assert codename_client.get("/", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://abc.onion", "abc.onion", True),
        ("http://ABC.onion", "abc.onion", True),
        ("http://abc.onion:80", "abc.onion", True),
        ("http://abc.onion", "abc.onion:80", True),
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://[::1]:8080", "[::1]:8080", True),
        ("http://abc.onion", "abd.onion", False),
        ("http://abc.onion:8080", "abc.onion", False),
        ("http://abc.onion", "", False),
        ("http://abc.onion:x", "abc.onion", False),
        ("http://user@abc.onion", "abc.onion", False),
        ("http://abc.onion.evil.org", "abc.onion", False),
        ("abc.onion", "abc.onion", False),
    ],
)
def test_the_origin_must_name_the_host_the_request_came_to(
    app: Flask, origin: str, host: str, same: bool
) -> None:
    with app.test_request_context(
        "/submit", method="POST", headers={"Origin": origin, "Host": host}
    ) as context:
        assert sent_by_this_service(context.request) is same


def test_the_replies_page_shows_which_codename_it_uses(
    codename_client: FlaskClient, source: tuple[str, str]
) -> None:
    words, _ = source
    page = codename_client.post(
        "/replies", data=urlencode({"codename": words}), content_type=FORM
    ).get_data(as_text=True)
    ending = " ".join(words.split()[-2:])
    assert f'<strong class="codename-ending" dir="ltr" lang="en">{ending}</strong>' in page
    assert "If your codename does not end" in page


@pytest.mark.parametrize("path", ["/submit", "/follow-up"])
def test_a_refused_upload_is_read_to_its_end_so_the_browser_shows_the_page(
    start_server: Callable[..., Any],
    codenames_env: dict[str, str],
    spool_dir: Path,
    path: str,
) -> None:
    """On the real server: a 3 MB upload from another site gets the whole 403 page, not a
    reset connection (the kernel resets a socket closed with unread data)."""
    server = start_server(env=codenames_env)
    body = build_multipart(
        [
            ("codename", None, codename.new_codename().encode(), None),
            ("message", None, b"from a hostile page", None),
            ("files", "big.bin", os.urandom(3 * 1024 * 1024), "application/octet-stream"),
        ]
    )
    headers = {**NAVIGATION, "Sec-Fetch-Site": "cross-site", "Origin": "null"}
    errors, answer = send_while_reading(server, body.content_type, body.body, path, headers)
    assert errors == []
    assert answer.startswith(b"HTTP/1.1 403 ") and whole_response(answer)
    assert b"This form came from another website" in answer
    assert stored(spool_dir) == []
