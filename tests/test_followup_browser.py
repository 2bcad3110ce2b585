"""The source's side of the codename round trip in a real browser with JavaScript off.

Chromium (Tor Browser "Safest": no script) against `sealdrop serve --local-only`:
submit and be shown a codename; come back and mistype it; enter it and read a
reply; delete the reply; send a follow-up with a file; the spool then holds a
version 2 follow-up carrying the same reply key as the first submission.

Screenshots of the receipt with its codename, the come-back page (also with the
"please check" notice) and the replies page (with a reply, and after deleting it)
at 1280 and 360 px go to a temporary folder, or with SEALDROP_SCREENSHOTS=1 to
docs/screenshots/ (test_browser.py's mechanism); each is checked not to scroll
sideways.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from sealdrop import codename, crypto, keys, records, replies
from sealdrop.signing import encode_signing_public_key
from sealdrop.tests.serving import Served, serve_env

from .conftest import signed_reply
from .test_browser import (  # noqa: F401 (browser and shots are fixtures)
    browser,
    screenshot_both_widths,
    shots,
)

pytestmark = pytest.mark.browser

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TEST_COST = keys.KdfCost(1, 8 * 1024)
SIGNER = SigningKey.generate()


@dataclass
class Service:
    url: str
    spool: Path
    state: Path
    replies: Path
    key: PrivateKey


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    key = PrivateKey.generate()
    folders = {}
    for name in ("spool", "state", "replies"):
        folder = tmp_path_factory.mktemp(name)
        folder.chmod(0o700)
        folders[name] = folder
    public_key = tmp_path_factory.mktemp("key") / "reviewer.pub"
    public_key.write_text(keys.encode_public_key(key.public_key) + "\n", encoding="ascii")
    signing_pub = public_key.parent / "reply-signing.pub"
    signing_pub.write_text(encode_signing_public_key(SIGNER.verify_key) + "\n")
    env = serve_env(
        {
            "SEALDROP_STATE_DIR": str(folders["state"]),
            "SEALDROP_REPLIES_DIR": str(folders["replies"]),
            "SEALDROP_REPLY_SIGNING_KEY_FILE": str(signing_pub),
            "SEALDROP_CODENAME_KDF_MEMORY": "8 KiB",
            "SEALDROP_CODENAME_KDF_PASSES": "1",
        }
    )
    argv = ["--local-only", "--spool", str(folders["spool"]), "--public-key", str(public_key)]
    server = Served([*argv, "--listen", "127.0.0.1:0"], tmp_path_factory.mktemp("server"), env=env)
    try:
        url = server.wait_for_url().rstrip("/")
        yield Service(url, folders["spool"], folders["state"], folders["replies"], key)
    finally:
        server.stop()


def wait_for(driver: Any, css: str) -> None:
    WebDriverWait(driver, 60, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, css)
    )


def h1(driver: Any) -> str:
    text: str = driver.find_element(By.TAG_NAME, "h1").text
    return text


def sources_in_spool(service: Service) -> list[records.SourceIdentity]:
    found = []
    for path in sorted(service.spool.glob("*.sealed")):
        with path.open("rb") as sealed:
            payload = crypto.open_payload(sealed, service.key)
            events = list(records.read_payload(payload, payload.version))
        found += [e for e in events if isinstance(e, records.SourceIdentity)]
    return found


def test_a_source_comes_back_reads_a_reply_and_follows_up_without_javascript(
    browser: Any,  # noqa: F811
    service: Service,
    shots: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    browser.get(service.url + "/")
    browser.find_element(By.ID, "message").send_keys("Logs leave by river barge at dawn.")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, ".codename")
    assert h1(browser) == "Your information has arrived"
    secret_words = browser.find_element(By.CLASS_NAME, "codename").text
    assert codename.normalise(secret_words) == secret_words
    assert browser.get_cookies() == []
    screenshot_both_widths(browser, shots, "received-codename")

    # The reviewer's reply, sealed offline to the key the codename stands for.
    salt = (service.state / codename.SALT_FILE).read_bytes()
    derived = codename.derive(secret_words, salt, TEST_COST)
    (first,) = sources_in_spool(service)
    assert first.reply_public_key == bytes(derived.reply_public_key)
    # A long unbroken token (a link, a file hash) must wrap, not widen the page.
    reply_text = "Thank you.\nWhich sawmill?\nsha256:" + "9f86d081884c7d65" * 4
    data = signed_reply(reply_text, derived.reply_public_key, derived.mailbox_id, SIGNER)
    (service.replies / replies.reply_file_name(derived.mailbox_id)).write_bytes(data)

    browser.get(service.url + "/come-back")
    screenshot_both_widths(browser, shots, "come-back")
    words = secret_words.split()
    words[0], words[1] = words[1], words[0]
    field = browser.find_element(By.ID, "codename")
    field.send_keys(" ".join(words) if words != secret_words.split() else secret_words + " x")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, "#codename-problem")
    assert "Please check the codename" in browser.page_source
    screenshot_both_widths(browser, shots, "come-back-problem")

    browser.find_element(By.ID, "codename").send_keys(secret_words.upper())
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, ".reply-text")
    assert h1(browser) == "Replies from our reviewer"
    assert browser.find_element(By.CLASS_NAME, "reply-text").text == reply_text
    screenshot_both_widths(browser, shots, "replies")

    browser.find_element(By.CSS_SELECTOR, "button.secondary").click()
    WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: "The reply was deleted" in d.page_source
    )
    assert not browser.find_elements(By.CLASS_NAME, "reply-text")
    # Gone from the source at once; the file itself is unlinked by the next sweep.
    assert not [p for p in service.replies.iterdir() if replies.parse_reply_name(p.name)]
    screenshot_both_widths(browser, shots, "replies-none")

    document = tmp_path / "sawmill invoice.pdf"
    document.write_bytes(b"%PDF-1.4 invoice " + os.urandom(2000))
    browser.find_element(By.ID, "message").send_keys("The Kilwa sawmill.")
    browser.find_element(By.ID, "files").send_keys(str(document))
    browser.find_element(By.CSS_SELECTOR, "form[action$='/follow-up'] button[type=submit]").click()
    wait_for(browser, ".receipt-number")
    assert h1(browser) == "Your information has arrived"
    assert not browser.find_elements(By.CLASS_NAME, "codename")
    assert browser.get_cookies() == []

    identities = sources_in_spool(service)
    assert len(identities) == 2
    assert {i.reply_public_key for i in identities} == {bytes(derived.reply_public_key)}
    assert sorted(i.kind for i in identities) == [records.FIRST_CONTACT, records.FOLLOW_UP]
    followed = [
        p
        for p in service.spool.glob("*.sealed")
        if b"sawmill invoice" in _attachment_names(p, service.key)
    ]
    assert len(followed) == 1


def _attachment_names(path: Path, key: PrivateKey) -> bytes:
    with path.open("rb") as sealed:
        payload = crypto.open_payload(sealed, key)
        events = list(records.read_payload(payload, payload.version))
    return b" ".join(e.name.encode() for e in events if isinstance(e, records.AttachmentStart))
