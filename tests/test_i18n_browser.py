"""Every language in a real browser with JavaScript off, against the real server.

Chromium (Tor Browser "Safest": no script, no cookie kept) and `sealdrop serve
--local-only` with codenames on: sources submit a message and a file through the
Swahili and the Arabic pages and get their receipt in that language; the reviewer's
`sealdrop open` then names the language. Then, in one browser session, every page a
source can reach is loaded in every language and must not scroll sideways on a
360 px phone; the first page and the receipt are also checked at 1280 px and
photographed (to a temporary folder, or with SEALDROP_SCREENSHOTS=1 to
docs/screenshots/<tag>/). Last, every calm refusal page (and the ones gunicorn itself
answers with) is shown in every language at 360 px: in its language's words, loading
nothing from elsewhere. Arabic and Chinese need the Debian fonts that
`scripts/bootstrap --test` installs (fonts-noto-core, fonts-noto-cjk).
"""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from babel.support import NullTranslations, Translations
from flask import Flask, render_template

from sealdrop import cli, codename, keys, replies
from sealdrop.languages import SHIPPED, Language
from sealdrop.settings import Settings
from sealdrop.web.errors import SERVER_REFUSALS, error_page, server_refusal_pages

from .conftest import message_and_files, signed_reply
from .reliability import exchange
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

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

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


# --- the calm refusal pages ------------------------------------------------------------------

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
# Strings a refusal page shows in English on purpose, as (tag, msgid): none. A catalog
# that lacks one of its strings fails the test until it is translated or named here.
UNTRANSLATED: frozenset[tuple[str, str]] = frozenset()
CODE_MSGID = "Error code %(code)s"
GENERIC_SHOWN = 431  # of gunicorn's own refusals that have no words of their own
HEADER_GREEN = "rgba(29, 77, 51, 1)"  # static/style.css's header: the stylesheet applied
PIECES = {"h1": "h1", "lead": "main p.lead", "button": "main a.button", "code": "main p.code"}


@dataclasses.dataclass(frozen=True)
class Refusal:
    """One refusal page, where it came from, and the status whose words it must show."""

    what: str
    status: int
    generic: bool = False  # gunicorn's own, for a request no browser sends
    html: str | None = None  # in-process or raw-socket answers; None: the browser's page


@functools.cache
def catalog_of(tag: str) -> NullTranslations:
    """`tag`'s compiled catalog, as the server reads it (English has none: the msgids)."""
    catalog = Translations.load(str(TRANSLATIONS), [Language(tag).catalog])
    assert tag == "en" or isinstance(catalog, Translations), f"no compiled catalog for {tag}"
    return catalog


def spaced(text: str) -> str:
    """`text` with each run of spaces one space: a browser shows a no-break space (French
    puts one before a colon) as a space."""
    return " ".join(text.split())


def english_words(app: Flask, status: int, generic: bool) -> dict[str, str]:
    """The English text of each piece of a refusal page: the msgids its language needs."""
    with app.test_request_context("/en/"):
        page = render_template("error.html", status=status, generic=generic)
    words = {}
    for name, pattern in (
        ("h1", r"<h1>(.*?)</h1>"),
        ("lead", r'<p class="lead">(.*?)</p>'),
        ("button", r'<a class="button"[^>]*>(.*?)</a>'),
    ):
        found = re.search(pattern, page, re.S)
        assert found, f"error.html has no {name}"
        words[name] = spaced(html.unescape(found.group(1)))
    return words


def show_document(driver: Any, page: str) -> None:
    """Make `page` the tab's document without leaving the tab's origin (the real server),
    so its stylesheet link loads from the server, under the server's CSP, as it would."""
    frame = driver.execute_cdp_cmd("Page.getFrameTree", {})["frameTree"]["frame"]["id"]
    driver.execute_cdp_cmd("Page.setDocumentContent", {"frameId": frame, "html": page})


def loaded_urls(driver: Any) -> list[str]:
    """Everything the tab's document loaded (its stylesheet), from DevTools."""
    tree = driver.execute_cdp_cmd("Page.getResourceTree", {})["frameTree"]
    return [resource["url"] for resource in tree.get("resources", [])]


def check_refusal(
    driver: Any, origin: str, tag: str, refusal: Refusal, english: dict[str, str]
) -> set[tuple[str, str]]:
    """The page in the tab is `refusal` in `tag`'s words, fits a phone and loaded only
    from `origin`. Returns the (tag, msgid) pairs it showed in English."""
    what = f"{tag} {refusal.what}"
    # The page a click leads to (only a refusal page has an error code), styled.
    WebDriverWait(
        driver, 30, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    ).until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, "main p.code")
            and d.find_element(By.CSS_SELECTOR, "header.site").value_of_css_property(
                "background-color"
            )
            == HEADER_GREEN
        ),
        f"{what}: no refusal page, or its stylesheet did not apply",
    )
    assert html_attributes(driver) == (tag, Language(tag).direction), what
    assert driver.find_elements(By.TAG_NAME, "script") == [], what
    catalog = catalog_of(tag)
    expected = {name: spaced(catalog.gettext(msgid)) for name, msgid in english.items()}
    expected["code"] = spaced(catalog.gettext(CODE_MSGID) % {"code": refusal.status})
    english_ones = {
        (tag, msgid)
        for msgid in [*english.values(), CODE_MSGID]
        if tag != "en" and catalog.gettext(msgid) == msgid
    }
    shown = {
        name: spaced(driver.find_element(By.CSS_SELECTOR, css).text) for name, css in PIECES.items()
    }
    assert shown == expected, what
    content_width, viewport_width = layout(driver)  # the test emulates a phone throughout
    assert viewport_width == PHONE, what
    assert content_width <= viewport_width, f"{what} scrolls sideways at {PHONE} px"
    loaded = loaded_urls(driver)
    assert f"{origin}/static/style.css" in loaded, what  # DevTools does list what it loads
    outside = [url for url in loaded if not url.startswith(origin + "/")]
    assert outside == [], f"{what} loaded {outside}"
    return english_ones


def gunicorns_own_pages(port: int) -> dict[int, str]:
    """What gunicorn answers itself to requests it cannot parse (the app never sees them),
    from the real server: the pages in its default language."""
    malformed = {
        400: b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        414: b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        431: b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    }
    pages = {}
    for status, request in malformed.items():
        answer = exchange(port, request)
        assert answer.status_code == status
        pages[status] = answer.body.decode("utf-8")
    return pages


def test_every_refusal_page_reads_in_its_language_on_a_phone(
    browser: Any,  # noqa: F811
    service: Service,  # noqa: F811
    make_app: Callable[..., Flask],
    tmp_path: Path,
) -> None:
    """400, 403 and 413 are caused by this browser against the real server; 503 (not
    accepting), 507 (below the spool's reserve) and 500 (the spool folder gone) by real
    requests to an app in this process; 429, which takes a crowd of codename entries, is
    the handler's own page (`error_page`). gunicorn's own refusals are its real answers
    to malformed requests in the server's default language (English), and
    `server_refusal_pages` of a deployment whose default is each other language.
    Pages made in this process are shown in a tab of the real server's, as it serves
    them. The whole test runs in a 360 px wide phone's viewport."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(service.url))
    port = urlsplit(service.url).port
    assert port is not None
    defaults = {field.name: field.default for field in dataclasses.fields(Settings)}
    max_files = defaults["max_files"]  # what the server runs with
    assert isinstance(max_files, int)
    one_too_many = []
    for n in range(max_files + 1):
        path = tmp_path / f"note-{n}.txt"
        path.write_bytes(b"x")
        one_too_many.append(str(path))
    closed = make_app(accepting=False)
    full = make_app(reserve_bytes=1 << 60)
    gone_spool = tmp_path / "gone"
    gone_spool.mkdir(mode=0o700)
    gone = make_app(spool_dir=gone_spool)
    shutil.rmtree(gone_spool)
    form = message_and_files("Logs leave by river barge at dawn.")
    gunicorns_own = gunicorns_own_pages(port)
    words = {
        (status, generic): english_words(closed, status, generic)
        for status in {400, 403, 413, 429, 500, 503, 507, *SERVER_REFUSALS}
        for generic in (False, True)
    }

    def caused_by_the_browser(tag: str) -> set[tuple[str, str]]:
        base = f"{service.url}/{tag}"
        in_english = set()
        browser.get(f"{base}/")
        browser.find_element(By.CSS_SELECTOR, "form[action$='/submit'] button").click()
        empty = Refusal("400, an empty form", 400)
        in_english |= check_refusal(browser, origin, tag, empty, words[400, False])

        browser.get(f"{base}/")
        browser.find_element(By.ID, "files").send_keys("\n".join(one_too_many))
        browser.find_element(By.CSS_SELECTOR, "form[action$='/submit'] button").click()
        too_many = Refusal("413, one file too many", 413)
        in_english |= check_refusal(browser, origin, tag, too_many, words[413, False])

        # Another page's form: a data: URL's origin is opaque, so the post is cross-site.
        browser.get(
            "data:text/html;charset=utf-8,"
            f'<form method="post" action="{base}/submit"><input name="message" value="x">'
            "<button>send</button></form>"
        )
        browser.find_element(By.TAG_NAME, "button").click()
        forged = Refusal("403, another page's form", 403)
        in_english |= check_refusal(browser, origin, tag, forged, words[403, False])
        return in_english

    def made_here(tag: str) -> list[Refusal]:
        made = []
        for status, app in ((503, closed), (507, full), (500, gone)):
            answer = app.test_client().post(
                f"/{tag}/submit", data=form.body, content_type=form.content_type
            )
            assert answer.status_code == status, (tag, status)
            made.append(Refusal(f"{status}, from the app", status, html=answer.text))
        with closed.test_request_context(f"/{tag}/replies", method="POST"):
            made.append(Refusal("429, rendered", 429, html=error_page(429).get_data(True)))
        if tag == "en":
            own = gunicorns_own
        else:
            deployment = make_app(default_language=tag)
            own = {s: page.decode("utf-8") for s, page in server_refusal_pages(deployment).items()}
        for status, page in own.items():
            generic = status not in (400, 500)
            # The generic ones differ only in their code: one stands for all five.
            if not generic or status == GENERIC_SHOWN or tag == "en":
                made.append(Refusal(f"{status}, gunicorn's own", status, generic, page))
        return made

    in_english: set[tuple[str, str]] = set()
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": PHONE, "height": 800, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        for tag in SHIPPED:
            in_english |= caused_by_the_browser(tag)
            browser.get(f"{service.url}/{tag}/")
            for refusal in made_here(tag):
                assert refusal.html is not None
                show_document(browser, refusal.html)
                english = words[refusal.status, refusal.generic]
                in_english |= check_refusal(browser, origin, tag, refusal, english)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert in_english == UNTRANSLATED
    assert browser.get_cookies() == []
