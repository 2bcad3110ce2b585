"""A real browser with JavaScript off, as a source at Tor Browser's "Safest" level.

Debian's chromium, driven by chromedriver through Selenium, loads the landing page
from the real server (`sealdrop serve --local-only`), writes a message, attaches two files and
submits; the receipt it shows must be the one sealed in the spool, and the spool
must decrypt to exactly what was sent. The browser reaches nothing but loopback.

Screenshots of each page at 1280 and 360 px wide go to a temporary folder; set
SEALDROP_SCREENSHOTS=1 to write them to docs/screenshots/ instead (to refresh the
committed ones after a change to the pages).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nacl.public import PrivateKey

from sealdrop import cli, crypto, keys, records
from sealdrop.keys import encode_public_key
from sealdrop.languages import SHIPPED, Language
from sealdrop.tests.serving import Served

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MARKER = "zq7MARKERx9"
WIDTHS = {"desktop": 1280, "phone": 360}

if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(
        "Debian chromium and chromedriver are not installed; "
        "install them with `apt-get install -y chromium chromium-driver`",
        allow_module_level=True,
    )
# Not importorskip: with chromium present, a missing selenium is a broken test setup.
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@dataclass
class Service:
    url: str
    spool: Path
    key: PrivateKey


@contextlib.contextmanager
def serve_subprocess(spool: Path, public_key: Path, out_dir: Path) -> Iterator[str]:
    """The real server (gunicorn), as an operator starts it, without Tor."""
    argv = ["--local-only", "--spool", str(spool), "--public-key", str(public_key)]
    server = Served([*argv, "--listen", "127.0.0.1:0"], out_dir)
    try:
        yield server.wait_for_url().rstrip("/")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    key = PrivateKey.generate()
    spool = tmp_path_factory.mktemp("spool")
    spool.chmod(0o700)
    public_key = tmp_path_factory.mktemp("key") / "reviewer.pub"
    public_key.write_text(encode_public_key(key.public_key) + "\n", encoding="ascii")
    with serve_subprocess(spool, public_key, tmp_path_factory.mktemp("server")) as url:
        yield Service(url, spool, key)


@pytest.fixture(scope="module")
def browser(service: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium for the module's tests, against the module's `service` (whichever
    fixture of that name the module has). It asks for the service only to be started
    after it and so quit before it is stopped: the server, stopped while chromium
    still holds a kept-alive connection, waits for it to time out (5 s)."""
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """Debian's chromium, JavaScript off and nothing but loopback reachable."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service as DriverService

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-crash-reporter",
        "--disable-breakpad",
        "--disable-default-apps",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--blink-settings=scriptEnabled=false",
        # Anything not on loopback goes to a closed port: the browser cannot reach out.
        "--proxy-server=socks5://127.0.0.1:9",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"profile.managed_default_content_settings.javascript": 2}
    )
    driver = webdriver.Chrome(options=options, service=DriverService(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("SEALDROP_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        return target
    return tmp_path_factory.mktemp("screenshots")


def layout(driver: Any) -> tuple[float, float]:
    """Content width and viewport width, from DevTools: page JavaScript is off."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    return metrics["cssContentSize"]["width"], metrics["cssLayoutViewport"]["clientWidth"]


def screenshot_both_widths(driver: Any, folder: Path, name: str) -> None:
    """Save the whole page at each width, and check it never scrolls sideways."""
    for label, width in WIDTHS.items():
        # Emulate the exact viewport (a phone's has no scrollbar eating into its width).
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": label == "phone"},
        )
        content_width, viewport_width = layout(driver)
        assert viewport_width == width
        assert content_width <= viewport_width, f"{name} scrolls sideways at {width} px"
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        height = metrics["cssContentSize"]["height"]
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        (folder / f"{name}-{label}.png").write_bytes(base64.b64decode(shot["data"]))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def h1(driver: Any) -> str:
    text: str = driver.find_element(By.TAG_NAME, "h1").text
    return text


def test_javascript_is_really_off(browser: Any) -> None:
    browser.get(
        "data:text/html,<title>script did not run</title>"
        "<script>document.title='script ran'</script>"
    )
    assert browser.title == "script did not run"


def test_a_source_submits_a_message_and_two_files(
    browser: Any,
    service: Service,
    shots: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = "Trucks with ivory leave the north gate at night.\nÉlan — 象牙 — rhino horn."
    files = {
        "camera photo 1.jpg": os.urandom(150_000),
        "ranger notes é.txt": b"Ranger post 4, Tuesday\n" * 100,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    browser.set_window_size(WIDTHS["desktop"], 900)
    browser.get(service.url + "/")
    assert h1(browser) == "Send information safely"
    # The stylesheet applied under the service's CSP: the header is painted green.
    header = browser.find_element(By.CSS_SELECTOR, "header.site")
    assert header.value_of_css_property("background-color") == "rgba(29, 77, 51, 1)"
    screenshot_both_widths(browser, shots, "landing")

    browser.find_element(By.ID, "message").send_keys(message)
    browser.find_element(By.ID, "files").send_keys("\n".join(str(tmp_path / n) for n in files))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # The old page's elements go stale while the next one loads: wait for the receipt.
    WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: d.find_elements(By.CLASS_NAME, "receipt-number")
    )
    assert h1(browser) == "Your information has arrived"

    receipt = browser.find_element(By.CLASS_NAME, "receipt-number").text
    assert receipt and set(receipt) <= set("0123456789-")
    screenshot_both_widths(browser, shots, "received")

    (spool_file,) = service.spool.glob("*.sealed")
    with spool_file.open("rb") as sealed:
        payload = crypto.open_payload(sealed, service.key)
        events = list(records.read_payload(payload, payload.version))
    assert [e.receipt for e in events if isinstance(e, records.Receipt)] == [receipt]
    sent_text = "".join(e.text for e in events if isinstance(e, records.MessageText))
    # HTML forms send a textarea's line breaks as CRLF; the words must arrive unchanged.
    assert sent_text.replace("\r\n", "\n") == message
    received = unpack_attachments(events)
    assert received == files
    end = events[-1]
    assert isinstance(end, records.PayloadEnd)
    assert [a.sha256 for a in end.attachments] == [
        hashlib.sha256(d).digest() for d in files.values()
    ]

    # And the reviewer's own command yields exactly what was sent.
    key_file = tmp_path / "offline" / "reviewer.key"
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text(keys.encode_secret_key(service.key, "pw", keys.KdfCost.MIN))
    monkeypatch.setenv("SEALDROP_PASSPHRASE", "pw")
    out = tmp_path / "opened"
    assert cli.main(["open", str(spool_file), "--key", str(key_file), "--out", str(out)]) == 0
    [folder] = [entry for entry in out.iterdir() if not entry.name.startswith(".")]
    assert (folder / "message.txt").read_text().replace("\r\n", "\n") == message
    assert {f.name: f.read_bytes() for f in (folder / "files").iterdir()} == files


def unpack_attachments(events: list[Any]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    current: tuple[str, io.BytesIO] | None = None
    for event in events:
        if isinstance(event, records.AttachmentStart):
            current = (event.name, io.BytesIO())
        elif isinstance(event, records.AttachmentBytes):
            assert current is not None
            current[1].write(event.data)
        elif isinstance(event, records.AttachmentDone):
            assert current is not None
            out[current[0]] = current[1].getvalue()
            current = None
    return out


def test_the_form_is_reachable_with_the_keyboard_alone(browser: Any, service: Service) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    browser.get(service.url + "/")
    order = []
    for _ in range(14):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        active = browser.switch_to.active_element
        order.append(active.get_attribute("id") or active.get_attribute("class") or active.text)
    # The language list comes first, right after the skip link that jumps past it.
    languages = [Language(tag).name for tag in SHIPPED]
    assert order == ["skip", *languages, "message", "files", "Send securely"]


def test_an_error_page_is_calm_and_repeats_nothing(
    browser: Any, service: Service, shots: Path
) -> None:
    browser.set_window_size(WIDTHS["desktop"], 900)
    browser.get(f"{service.url}/{MARKER}?q={MARKER}")
    assert h1(browser) == "Page not found"
    assert MARKER not in browser.page_source
    browser.find_element(By.LINK_TEXT, "Back to the first page")
    screenshot_both_widths(browser, shots, "error-404")


def test_a_file_name_with_backslashes_and_quotes_arrives_exactly(
    browser: Any, service: Service, tmp_path: Path
) -> None:
    # Legal on the source's Linux or macOS: the browser sends the backslashes as they are
    # and the quotes as %22; the server stores the name as the source saw it.
    name = 'C:\\Users\\ranger\\"north gate"; report.txt'
    (tmp_path / name).write_bytes(b"seen at dawn")
    before = set(service.spool.glob("*.sealed"))
    browser.get(service.url + "/")
    browser.find_element(By.ID, "files").send_keys(str(tmp_path / name))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: d.find_elements(By.CLASS_NAME, "receipt-number")
    )
    (spool_file,) = set(service.spool.glob("*.sealed")) - before
    with spool_file.open("rb") as sealed:
        payload = crypto.open_payload(sealed, service.key)
        events = list(records.read_payload(payload, payload.version))
    assert unpack_attachments(events) == {name: b"seen at dawn"}
