"""A real page elsewhere posts to the service in a real browser, and is refused.

Chromium with JavaScript off (test_browser.py's browser) against `sealdrop serve
--local-only`. The hostile page is plain HTML served from another loopback port: a
form with the attacker's codename and a button, which the test clicks (a source
tricked into one click; no script needed). The browser must show the calm 403 page
and the spool and replies folder must not change. The same browser, on the
service's own pages, then reaches its replies as usual, and the page shows the end
of the codename it uses.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from sealdrop import codename, keys, replies

from .conftest import signed_reply
from .test_browser import chromium

pytestmark = pytest.mark.browser

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

REFUSED_TITLE = "This form came from another website"


@pytest.fixture
def hostile_site() -> Iterator[Callable[[str], str]]:
    """`hostile_site(html)`: serve `html` from another loopback port; return its URL."""
    pages: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            page = pages.get(self.path)
            self.send_response(200 if page else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page or b"")))
            self.end_headers()
            self.wfile.write(page or b"")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def publish(html: str) -> str:
        path = f"/page{len(pages)}.html"
        pages[path] = html.encode("utf-8")
        return f"http://127.0.0.1:{server.server_port}{path}"

    try:
        yield publish
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def browser(start_server: Callable[..., Any], tmp_path: Path) -> Iterator[Any]:
    """test_browser.py's chromium, for this one test. It asks for `start_server` only
    to be quit before the servers it starts are stopped: a server stopped while
    chromium still holds a kept-alive connection waits for it to time out (5 s)."""
    with chromium(tmp_path / "chromium-profile") as driver:
        yield driver


def click_and_wait(driver: Any, selector: str) -> str:
    """Click `selector` and return the next page's h1 once it has loaded."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, selector).click()
    WebDriverWait(driver, 60, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: d.find_element(By.TAG_NAME, "html") != old and d.find_elements(By.TAG_NAME, "h1")
    )
    text: str = driver.find_element(By.TAG_NAME, "h1").text
    return text


def test_a_hostile_page_cannot_post_to_the_service(
    browser: Any,
    start_server: Callable[..., Any],
    reply_signer: SigningKey,
    reply_signing_pub: Path,
    hostile_site: Callable[[str], str],
    tmp_path: Path,
    spool_dir: Path,
) -> None:
    state, replies_dir = tmp_path / "state", tmp_path / "replies"
    for folder in (state, replies_dir):
        folder.mkdir(mode=0o700)
    server = start_server(
        env={
            "SEALDROP_STATE_DIR": str(state),
            "SEALDROP_REPLIES_DIR": str(replies_dir),
            "SEALDROP_REPLY_SIGNING_KEY_FILE": str(reply_signing_pub),
            "SEALDROP_CODENAME_KDF_MEMORY": "8 KiB",
            "SEALDROP_CODENAME_KDF_PASSES": "1",
        }
    )
    service = server.url.rstrip("/")
    salt = codename.load_installation_salt(state)
    attacker = codename.new_codename()
    derived = codename.derive(attacker, salt, keys.KdfCost(1, 8 * 1024))
    # Even a reply the reviewer signed for the attacker's codename must not be reached.
    reply = signed_reply(
        "attacker's bait", derived.reply_public_key, derived.mailbox_id, reply_signer
    )
    (replies_dir / replies.reply_file_name(derived.mailbox_id)).write_bytes(reply)

    swap = hostile_site(
        f"<!doctype html><title>News</title><h1>Read the story</h1>"
        f'<form method="post" action="{service}/replies">'
        f'<input type="hidden" name="codename" value="{attacker}">'
        f'<button id="go" type="submit">Continue reading</button></form>'
    )
    browser.get(swap)
    assert click_and_wait(browser, "#go") == REFUSED_TITLE
    assert "attacker's bait" not in browser.page_source
    assert attacker not in browser.page_source

    forged = hostile_site(
        f"<!doctype html><title>News</title><h1>Comment</h1>"
        f'<form method="post" action="{service}/submit" enctype="multipart/form-data">'
        f'<textarea name="message">planted by a hostile page</textarea>'
        f'<button id="go" type="submit">Send</button></form>'
    )
    browser.get(forged)
    assert click_and_wait(browser, "#go") == REFUSED_TITLE
    assert list(spool_dir.glob("*.sealed")) == list(spool_dir.glob("*.part")) == []
    assert len(list(replies_dir.iterdir())) == 1

    # The service's own form, in the same browser, is served, and says which codename.
    browser.get(service + "/come-back")
    browser.find_element(By.ID, "codename").send_keys(attacker)
    assert click_and_wait(browser, "button[type=submit]") == "Replies from our reviewer"
    assert "attacker's bait" in browser.page_source
    ending = browser.find_element(By.CLASS_NAME, "codename-ending").text
    assert ending == " ".join(attacker.split()[-2:])
