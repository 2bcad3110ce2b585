"""Every language in a real browser with JavaScript off, against the real server.

Chromium (Tor Browser "Safest": no script, no cookie kept) and `sealdrop serve
--local-only` with codenames on: sources submit a message and a file through the
Swahili and the Arabic pages and get their receipt in that language; the reviewer's
`sealdrop open` then names the language. Then, in one browser session, every page a
source can reach is loaded in every language and must not scroll sideways on a
360 px phone; the first page and the receipt are also checked at 1280 px and
photographed (to a temporary folder, or with SEALDROP_SCREENSHOTS=1 to
docs/screenshots/<tag>/). Arabic and Chinese need the Debian fonts that
`scripts/bootstrap --test` installs (fonts-noto-core, fonts-noto-cjk).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from sealdrop import cli, codename, keys, replies
from sealdrop.languages import SHIPPED, Language

from .conftest import signed_reply
from .test_browser import (  # noqa: F401 (browser and shots are fixtures)
    browser,
    layout,
    screenshot_both_widths,
    shots,
)
from .test_followup_browser import (  # noqa: F401 (service is a fixture)
    SIGNER,
    TEST_COST,
    Service,
    h1,
    service,
    wait_for,
)

pytestmark = pytest.mark.browser

from selenium.webdriver.common.by import By  # noqa: E402

PHONE = 360
# What each language's receipt page says at its top (the catalogs' "Your information
# has arrived"), so the test reads the page as a source would.
ARRIVED = {"sw": "Taarifa zako zimefika", "ar": "وصلت معلوماتك"}


def html_attributes(driver: Any) -> tuple[str, str]:
    root = driver.find_element(By.TAG_NAME, "html")
    return root.get_attribute("lang"), root.get_attribute("dir")


def submit(driver: Any, url: str, message: str, file: Path | None = None) -> str:
    """Send the first page's form; return the receipt number shown."""
    driver.get(url)
    driver.find_element(By.ID, "message").send_keys(message)
    if file is not None:
        driver.find_element(By.ID, "files").send_keys(str(file))
    driver.find_element(By.CSS_SELECTOR, "form[action$='/submit'] button[type=submit]").click()
    wait_for(driver, ".receipt-number")
    receipt: str = driver.find_element(By.CLASS_NAME, "receipt-number").text
    return receipt


def test_sources_send_through_the_swahili_and_arabic_pages_and_the_reviewer_sees_which(
    browser: Any,  # noqa: F811
    service: Service,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    browser.set_window_size(1280, 900)
    sent: dict[str, str] = {}
    for tag, message in (
        ("sw", "Pembe za ndovu zinavushwa usiku kupitia lango la kaskazini."),
        ("ar", "شاحنات العاج تغادر البوابة الشمالية ليلاً."),
    ):
        document = tmp_path / f"photo-{tag}.jpg"
        document.write_bytes(b"\xff\xd8\xff" + os.urandom(3000))
        browser.get(f"{service.url}/{tag}/")
        assert html_attributes(browser) == (tag, Language(tag).direction)
        receipt = submit(browser, f"{service.url}/{tag}/", message, document)
        # The receipt came back in the language the source wrote in.
        assert h1(browser) == ARRIVED[tag]
        assert html_attributes(browser) == (tag, Language(tag).direction)
        number = browser.find_element(By.CLASS_NAME, "receipt-number")
        assert number.get_attribute("dir") == "ltr" and re.fullmatch(r"[\d-]+", receipt)
        assert browser.get_cookies() == []
        sent[receipt] = tag

    key_file = tmp_path / "offline" / "reviewer.key"
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text(keys.encode_secret_key(service.key, "pw", keys.KdfCost.MIN))
    monkeypatch.setenv("SEALDROP_PASSPHRASE", "pw")
    out = tmp_path / "opened"
    assert cli.main(["open", str(service.spool), "--key", str(key_file), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "sw (Swahili, Kiswahili)" in printed.err and "ar (Arabic, العربية)" in printed.err
    assert "Languages of the pages the sources used:" in printed.out
    shown = {}
    for manifest in out.rglob("manifest.json"):
        data = json.loads(manifest.read_text())
        shown[data["receipt"]] = (data["language"] or {}).get("tag")
    assert {receipt: shown[receipt] for receipt in sent} == sent


def fits_a_phone(driver: Any, what: str) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": PHONE, "height": 800, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        content_width, viewport_width = layout(driver)
        assert viewport_width == PHONE
        assert content_width <= viewport_width, f"{what} scrolls sideways at {PHONE} px"
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_no_page_scrolls_sideways_on_a_phone_in_any_language(
    browser: Any,  # noqa: F811
    service: Service,  # noqa: F811
    shots: Path,  # noqa: F811
) -> None:
    browser.set_window_size(1280, 900)
    salt = (service.state / codename.SALT_FILE).read_bytes()
    for tag in SHIPPED:
        base = f"{service.url}/{tag}"
        folder = shots / tag
        folder.mkdir(exist_ok=True)

        browser.get(f"{base}/")
        screenshot_both_widths(browser, folder, "landing")  # 360 and 1280 px, no sideways
        submit(browser, f"{base}/", "Logs leave by river barge at dawn.")
        assert html_attributes(browser)[0] == tag
        screenshot_both_widths(browser, folder, "received")
        words = browser.find_element(By.CLASS_NAME, "codename").text

        browser.get(f"{base}/come-back")
        fits_a_phone(browser, f"{tag} come-back")
        browser.find_element(By.ID, "codename").send_keys(words + " extra")
        browser.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
        wait_for(browser, "#codename-problem")
        fits_a_phone(browser, f"{tag} come-back, codename problem")

        derived = codename.derive(words, salt, TEST_COST)
        # A long unbroken token must wrap in every script, not widen the page.
        text = "Asante. شكرا. 谢谢。\nsha256:" + "9f86d081884c7d65" * 4
        data = signed_reply(
            text, derived.reply_public_key, derived.mailbox_id, SIGNER, "2026-12-01", "0001-0001"
        )
        (service.replies / replies.reply_file_name(derived.mailbox_id)).write_bytes(data)
        browser.find_element(By.ID, "codename").send_keys(words)
        browser.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
        wait_for(browser, ".reply-text")
        assert html_attributes(browser)[0] == tag
        fits_a_phone(browser, f"{tag} replies")

        browser.find_element(By.ID, "message").send_keys("The Kilwa sawmill.")
        browser.find_element(By.CSS_SELECTOR, "form[action$='/follow-up'] button").click()
        wait_for(browser, ".receipt-number")
        fits_a_phone(browser, f"{tag} follow-up receipt")

        for path, what in (("/no-such-page", "404"), ("/submit", "405")):
            browser.get(base + path)
            assert html_attributes(browser)[0] == tag
            fits_a_phone(browser, f"{tag} error {what}")
    assert browser.get_cookies() == []
