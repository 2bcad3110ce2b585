"""The whole codename round trip on the real server (`sealdrop serve --local-only`).

submit -> codename shown -> reviewer opens, sees the reply key -> `sealdrop reply` ->
reply file copied in -> the source enters the codename and reads the reply ->
sends a follow-up with a file -> the reviewer's next `open` files it with the first.
Then: a mistyped codename is caught, another valid codename sees nothing, deleting
works, and the server's disk and output hold no codename, no derived key and no
reply plaintext (the canary, extended to replies).
"""

from __future__ import annotations

import html
import http.client
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from nacl.public import PrivateKey

from sealdrop import cli, codename, keys, replies
from sealdrop.reviewer import sources
from sealdrop.storage.counters import COUNTERS_FILE, read_counts

from .canaries import find_canaries, found_in
from .conftest import SIGNING_PASSPHRASE, build_multipart
from .raw_http import send_while_reading, whole_response

PASSPHRASE = "follow-up round trip passphrase"
TEST_KDF = {"SEALDROP_CODENAME_KDF_MEMORY": "8 KiB", "SEALDROP_CODENAME_KDF_PASSES": "1"}


class Page:
    def __init__(self, status: int, headers: dict[str, str], body: str) -> None:
        self.status, self.headers, self.body = status, headers, body


def request(server: Any, path: str, body: bytes = b"", content_type: str = "") -> Page:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        if body:
            connection.request("POST", path, body, {"Content-Type": content_type})
        else:
            connection.request("GET", path)
        response = connection.getresponse()
        text = response.read().decode("utf-8")
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Page(response.status, headers, text)
    finally:
        connection.close()


def enter_codename(server: Any, text: str) -> Page:
    form = urlencode({"codename": text}).encode("ascii")
    return request(server, "/replies", form, "application/x-www-form-urlencoded")


def shown_codename(page: Page) -> str:
    match = re.search(r'<p class="codename"[^>]*>([^<]+)</p>', page.body)
    assert match, page.body
    return html.unescape(match.group(1))


def shown_receipt(page: Page) -> str:
    match = re.search(r'<p class="receipt-number"[^>]*>([^<]+)</p>', page.body)
    assert match, page.body
    return match.group(1)


def same_but_codename(page: str, words: str) -> str:
    return page.replace(words, "X").replace(codename.ending(words), "Y")


def mistype(text: str) -> str:
    words = text.split()
    index = codename.word_list().index(words[2])
    words[2] = codename.word_list()[(index + 1) % 7776]
    return " ".join(words)


@pytest.fixture
def service_dirs(tmp_path: Path) -> dict[str, Path]:
    made = {}
    for name in ("state", "replies", "server-tmp", "server-cwd"):
        folder = tmp_path / name
        folder.mkdir(mode=0o700)
        folder.chmod(0o700)
        made[name] = folder
    return made


@pytest.fixture
def reviewer_key_file(tmp_path: Path, reviewer_key: PrivateKey) -> Path:
    folder = tmp_path / "offline"
    folder.mkdir()
    path = folder / "reviewer.key"
    path.write_text(keys.encode_secret_key(reviewer_key, PASSPHRASE, keys.KdfCost.MIN))
    return path


def test_the_codename_round_trip_on_the_real_server(
    start_server: Callable[..., Any],
    tmp_path: Path,
    spool_dir: Path,
    service_dirs: dict[str, Path],
    reviewer_key_file: Path,
    reply_signing_pub: Path,
    reply_signing_key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    began = time.time() - 1
    state, replies_dir = service_dirs["state"], service_dirs["replies"]
    env = {"SEALDROP_STATE_DIR": str(state), "SEALDROP_REPLIES_DIR": str(replies_dir), **TEST_KDF}
    env["SEALDROP_REPLY_SIGNING_KEY_FILE"] = str(reply_signing_pub)
    server = start_server(
        env=env, cwd=service_dirs["server-cwd"], tmpdir=service_dirs["server-tmp"]
    )
    marker = "canary-" + secrets.token_hex(10)
    reply_marker = "reply-canary-" + secrets.token_hex(10)

    # 1. The source submits and is shown a codename.
    first = build_multipart(
        [
            ("message", None, f"Ivory at the north gate {marker}".encode(), None),
            ("files", "gate.jpg", os.urandom(5000), "image/jpeg"),
        ]
    )
    page = request(server, "/submit", first.body, first.content_type)
    assert page.status == 200, page.body
    secret_words = shown_codename(page)
    assert codename.normalise(secret_words) == secret_words
    assert "cannot be recovered" in page.body and "set-cookie" not in page.headers

    # 2. The reviewer opens the spool offline: one source folder holding the reply key.
    monkeypatch.setenv("SEALDROP_PASSPHRASE", PASSPHRASE)
    out = tmp_path / "opened"
    argv = ["open", str(spool_dir), "--key", str(reviewer_key_file), "--out", str(out)]
    assert cli.main(argv) == 0
    (folder,) = [p for p in out.iterdir() if p.name.startswith(sources.SOURCE_PREFIX)]
    info = sources.read_info(folder)
    salt = (state / codename.SALT_FILE).read_bytes()
    derived = codename.derive(secret_words, salt, keys.KdfCost(1, 8 * 1024))
    assert info.reply_public_key == bytes(derived.reply_public_key)

    # 3. `sealdrop reply`, and the operator copies the file into the replies folder.
    draft = tmp_path / "draft.txt"
    draft.write_text(f"Thank you. Which port? {reply_marker}\n", encoding="utf-8")
    outbox = tmp_path / "outbox"
    monkeypatch.setenv("SEALDROP_PASSPHRASE", SIGNING_PASSPHRASE)
    reply_argv = ["reply", str(folder), "--out", str(outbox), "--message-file", str(draft)]
    assert cli.main([*reply_argv, "--signing-key", str(reply_signing_key_file)]) == 0
    monkeypatch.setenv("SEALDROP_PASSPHRASE", PASSPHRASE)
    (reply_file,) = outbox.iterdir()
    shutil.copy(reply_file, replies_dir / reply_file.name)

    # 4. The source comes back, without a restart of the server, and reads it.
    assert request(server, "/come-back").status == 200
    page = enter_codename(server, "  " + secret_words.upper() + "\n")
    assert page.status == 200 and reply_marker in page.body
    assert "set-cookie" not in page.headers

    # 5. A mistyped codename is caught; another valid one sees nothing, like no replies.
    page = enter_codename(server, mistype(secret_words))
    assert page.status == 400 and "Please check the codename" in page.body
    other = codename.new_codename()
    stranger = enter_codename(server, other)
    assert stranger.status == 200 and reply_marker not in stranger.body
    nobody = enter_codename(server, codename.new_codename())
    # The pages differ only in the codename, and in its last two words that they show.
    assert same_but_codename(stranger.body, other) == same_but_codename(
        nobody.body, shown_hidden_codename(nobody)
    )

    # 6. A follow-up with a file, sent from the replies page's form.
    follow = build_multipart(
        [
            ("codename", None, secret_words.encode(), None),
            ("message", None, b"The port is Mombasa.", None),
            ("files", "bill-of-lading.pdf", b"%PDF-1.4 bill of lading", "application/pdf"),
        ]
    )
    page = request(server, "/follow-up", follow.body, follow.content_type)
    assert page.status == 200, page.body
    follow_receipt = shown_receipt(page)
    assert 'class="codename"' not in page.body

    # 7. The next `open` files it in the same source folder, after the first contact.
    assert cli.main(argv) == 0
    assert [p.name for p in out.iterdir() if p.name.startswith(sources.SOURCE_PREFIX)] == [
        folder.name
    ]
    order = sources.read_info(folder).submissions
    assert len(order) == 2
    manifests = [json.loads((folder / n / "manifest.json").read_text()) for n in order]
    assert [m["source"]["kind"] for m in manifests] == ["first contact", "follow-up"]
    assert manifests[1]["receipt"] == follow_receipt
    assert manifests[1]["attachments"][0]["original_name"] == "bill-of-lading.pdf"
    assert (folder / order[1] / "message.txt").read_text() == "The port is Mombasa."
    capsys.readouterr()

    # 8. The source deletes the reply: its name is gone from the server at once, and
    # the file itself at the next sweep (here, as the server stops).
    reply_id = reply_file.name.split("-")[1].removesuffix(".reply")
    form = urlencode({"codename": secret_words, "reply": reply_id}).encode()
    page = request(server, "/replies/delete", form, "application/x-www-form-urlencoded")
    assert page.status == 200 and reply_marker not in page.body
    assert not [p for p in replies_dir.iterdir() if replies.parse_reply_name(p.name)]

    # 9. The canary: nothing on the server's disk or output reveals any of it.
    secrets_to_find = [
        marker.encode(),
        reply_marker.encode(),
        secret_words.encode(),
        secret_words.upper().encode(),
        bytes(derived.reply_key),
        bytes(derived.reply_key).hex().encode(),
        bytes(derived.reply_public_key),
        bytes(derived.reply_public_key).hex().encode(),
    ]
    own = [spool_dir, state, replies_dir, service_dirs["server-tmp"], service_dirs["server-cwd"]]
    hits = find_canaries(own, secrets_to_find)
    hits += find_canaries([Path("/dev/shm")], secrets_to_find, newer_than=began)
    assert hits == []
    assert found_in(server.output(), secrets_to_find) == []
    # The server stores nothing of a source but sealed files, the salt and the replies
    # (and the daily failure counters, which no request of this test changed).
    assert sorted(p.name for p in state.iterdir()) == sorted([codename.SALT_FILE, COUNTERS_FILE])
    assert read_counts(state) == {}


def shown_hidden_codename(page: Page) -> str:
    match = re.search(r'name="codename" value="([^"]+)"', page.body)
    assert match, page.body
    return html.unescape(match.group(1))


def test_a_full_derivation_queue_gets_the_busy_page(
    start_server: Callable[..., Any], service_dirs: dict[str, Path]
) -> None:
    import threading

    env = {
        "SEALDROP_STATE_DIR": str(service_dirs["state"]),
        "SEALDROP_REPLIES_DIR": str(service_dirs["replies"]),
        # Slow enough that 12 entries at once overlap on the worker's 1 slot with room
        # for 1 entry to wait: the others are told to try again.
        "SEALDROP_CODENAME_KDF_MEMORY": "64 MiB",
        "SEALDROP_CODENAME_KDF_PASSES": "3",
        "SEALDROP_CODENAME_MAX_CONCURRENT": "1",
        "SEALDROP_CODENAME_QUEUE_LENGTH": "1",
    }
    server = start_server(env=env)
    statuses: list[int] = []
    lock = threading.Lock()

    def enter() -> None:
        page = enter_codename(server, codename.new_codename())
        with lock:
            statuses.append(page.status)

    threads = [threading.Thread(target=enter) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(statuses) == 12
    assert set(statuses) == {200, 429}
    assert 2 <= statuses.count(200) <= 10


def test_a_refused_follow_up_is_read_to_its_end_so_the_browser_sees_the_page(
    start_server: Callable[..., Any], service_dirs: dict[str, Path], spool_dir: Path
) -> None:
    """A follow-up is never refused for lack of a derivation slot (web.derivations;
    tests/test_codename_flood.py): a bad codename is what refuses one."""
    env = {
        "SEALDROP_STATE_DIR": str(service_dirs["state"]),
        "SEALDROP_REPLIES_DIR": str(service_dirs["replies"]),
        **TEST_KDF,
    }
    server = start_server(env=env)
    upload = build_multipart(
        [
            ("codename", None, mistype(codename.new_codename()).encode(), None),
            ("message", None, b"more", None),
            ("files", "big.bin", b"\0" * (6 * 1024 * 1024), "application/octet-stream"),
        ]
    )
    errors, answer = send_while_reading(server, upload.content_type, upload.body, path="/follow-up")
    # Before the fix the refusal came while the files were still on their way and the
    # connection closed: the browser met a reset and showed that, not the page.
    assert errors == []
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"\r\nConnection: keep-alive\r\n" in answer
    assert whole_response(answer)
    assert b"Error code 400" in answer and answer.rstrip().endswith(b"</html>")
    assert not [n for n in os.listdir(spool_dir) if n.endswith(".part")]


def test_state_given_as_a_flag_turns_follow_ups_on_like_the_variable(
    start_server: Callable[..., Any], service_dirs: dict[str, Path]
) -> None:
    # `--state` is the state_dir setting, for the codename salt as for the onion key:
    # with replies_dir set, follow-ups are on (once, --state reached only the onion).
    state, replies_dir = service_dirs["state"], service_dirs["replies"]
    server = start_server(
        env={"SEALDROP_REPLIES_DIR": str(replies_dir), **TEST_KDF}, args=["--state", str(state)]
    )
    landing = request(server, "/")
    assert landing.status == 200
    assert "We cannot reply to you through this page yet" not in landing.body
    assert 'href="/en/come-back"' in landing.body
    assert (state / codename.SALT_FILE).is_file()
