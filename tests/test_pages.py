"""The source-facing pages: no script, nothing remote, labelled, small, high contrast.

A source may be reading on a cheap phone in Tor Browser at the "Safest" level, so
every page must work as plain HTML and CSS under the service's CSP, and an error
page must never repeat anything the visitor sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask, render_template
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parent.parent
CSS_PATH = ROOT / "static" / "style.css"
PAGE_BUDGET = 30 * 1024
ERROR_STATUSES = (400, 403, 404, 405, 413, 429, 500, 503, 507)
MARKER = "zq7MARKERx9"
RECEIPT = "4821-7730-1159-6603"
LIMITS = SimpleNamespace(max_files=20, max_message_chars=100_000, max_body_bytes=2 * 1024**3)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    text: str = ""


class ParsedPage(HTMLParser):
    """Every element with its attributes; headings and labels also keep their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open_text: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.elements.append(element)
        if tag in {"h1", "h2", "h3", "h4", "h5", "h6", "label", "button", "title"}:
            self._open_text.append(element)

    def handle_endtag(self, tag: str) -> None:
        if self._open_text and self._open_text[-1].tag == tag:
            self._open_text.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open_text:
            element.text += data

    def find(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]


def parse(html: str) -> ParsedPage:
    page = ParsedPage()
    page.feed(html)
    page.close()
    return page


def render(app: Flask, name: str, **context: object) -> str:
    with app.test_request_context("/"):
        return render_template(name, **context)


def all_pages(app: Flask) -> Iterator[tuple[str, str]]:
    yield "index", render(app, "index.html", limits=LIMITS)
    yield "received", render(app, "received.html", receipt=RECEIPT)
    for status in ERROR_STATUSES:
        yield f"error {status}", render(app, "error.html", status=status)


def css_text() -> str:
    return CSS_PATH.read_text(encoding="utf-8")


def css_without_comments() -> str:
    return re.sub(r"/\*.*?\*/", "", css_text(), flags=re.S)


# --- no script, no inline style, nothing remote -------------------------------------------


def test_pages_hold_no_script_no_handlers_no_inline_style(app: Flask) -> None:
    for name, html in all_pages(app):
        page = parse(html)
        assert "<script" not in html.lower(), name
        assert not page.find("script"), name
        assert not page.find("style"), f"{name}: inline <style> is blocked by the CSP"
        for element in page.elements:
            for attr in element.attrs:
                assert not attr.lower().startswith("on"), f"{name}: <{element.tag} {attr}>"
                assert attr.lower() != "style", f"{name}: <{element.tag} style=...>"
            for value in element.attrs.values():
                assert not (value or "").strip().lower().startswith("javascript:"), name


def test_pages_load_nothing_from_outside(app: Flask) -> None:
    for name, html in all_pages(app):
        lowered = html.lower()
        assert "http://" not in lowered and "https://" not in lowered, name
        for element in parse(html).elements:
            for attr in ("href", "src", "action", "srcset", "formaction", "data", "poster"):
                value = (element.attrs.get(attr) or "").strip()
                assert not value.startswith("//"), f"{name}: {element.tag} {attr}={value}"
                if value and attr != "href":
                    assert value.startswith("/"), f"{name}: {element.tag} {attr}={value}"
                if attr == "href" and value:
                    assert value.startswith(("/", "#")), f"{name}: href={value}"


def test_css_loads_nothing_from_outside() -> None:
    css = css_without_comments().lower()
    for forbidden in ("http:", "https:", "//", "url(", "@import", "@font-face", "expression("):
        assert forbidden not in css, forbidden


def test_the_stylesheet_is_linked_from_this_service(app: Flask) -> None:
    for name, html in all_pages(app):
        links = [e for e in parse(html).find("link") if e.attrs.get("rel") == "stylesheet"]
        assert [e.attrs.get("href") for e in links] == ["/static/style.css"], name


def test_the_stylesheet_is_served(client: FlaskClient) -> None:
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert response.mimetype == "text/css"
    assert response.get_data(as_text=True) == css_text()
    response.close()


def test_each_page_with_its_css_stays_under_30_kb(app: Flask) -> None:
    css_size = len(css_text().encode("utf-8"))
    for name, html in all_pages(app):
        total = len(html.encode("utf-8")) + css_size
        assert total < PAGE_BUDGET, f"{name}: {total} bytes with CSS"


# --- accessibility ----------------------------------------------------------------------


def test_pages_declare_language_viewport_and_title(app: Flask) -> None:
    for name, html in all_pages(app):
        page = parse(html)
        assert page.find("html")[0].attrs.get("lang") == "en", name
        viewports = [e for e in page.find("meta") if e.attrs.get("name") == "viewport"]
        assert viewports and "width=device-width" in (viewports[0].attrs["content"] or ""), name
        assert page.find("title")[0].text.strip(), name
        assert len(page.find("main")) == 1, name


def test_headings_start_at_one_h1_and_never_skip_a_level(app: Flask) -> None:
    for name, html in all_pages(app):
        levels = [int(e.tag[1]) for e in parse(html).elements if re.fullmatch(r"h[1-6]", e.tag)]
        assert levels[0] == 1 and levels.count(1) == 1, name
        for before, after in zip(levels, levels[1:], strict=False):
            assert after <= before + 1, f"{name}: h{before} followed by h{after}"


def test_every_form_control_has_a_bound_label(app: Flask) -> None:
    for name, html in all_pages(app):
        page = parse(html)
        labels = {e.attrs.get("for"): e.text.strip() for e in page.find("label")}
        controls = [
            e
            for e in page.elements
            if e.tag in {"textarea", "select"}
            or (e.tag == "input" and e.attrs.get("type") not in {"hidden", "submit"})
        ]
        for control in controls:
            control_id = control.attrs.get("id")
            assert control_id, f"{name}: <{control.tag}> has no id for a label"
            assert labels.get(control_id), f"{name}: <{control.tag} id={control_id}> no label"
        ids = [e.attrs["id"] for e in page.elements if e.attrs.get("id")]
        assert len(ids) == len(set(ids)), f"{name}: duplicate ids"
        for element in page.elements:
            for described_by in (element.attrs.get("aria-describedby") or "").split():
                assert described_by in ids, f"{name}: aria-describedby={described_by}"
        for button in page.find("button"):
            assert button.text.strip(), f"{name}: a button without text"


# --- the landing page and its form ------------------------------------------------------


def test_the_form_posts_multipart_message_and_several_files(app: Flask) -> None:
    page = parse(render(app, "index.html", limits=LIMITS))
    (form,) = page.find("form")
    assert form.attrs.get("method") == "post"
    # Rendered for `/`, the default language's page: its form posts under that prefix.
    assert form.attrs.get("action") == "/en/submit"
    assert form.attrs.get("enctype") == "multipart/form-data"
    (message,) = page.find("textarea")
    assert message.attrs.get("name") == "message"
    assert message.attrs.get("maxlength") == str(LIMITS.max_message_chars)
    (files,) = page.find("input")
    assert files.attrs.get("type") == "file"
    assert files.attrs.get("name") == "files"
    assert "multiple" in files.attrs
    (button,) = page.find("button")
    assert button.attrs.get("type") == "submit"


def test_the_landing_page_shows_the_limits(app: Flask) -> None:
    limits = SimpleNamespace(max_files=7, max_message_chars=54_321, max_body_bytes=3 * 1024**3)
    html = render(app, "index.html", limits=limits)
    assert "Up to 7 files" in html
    assert "54,321 characters" in html
    assert "3 GiB" in html


def test_the_landing_page_covers_safety_next_steps_and_limits(app: Flask) -> None:
    html = render(app, "index.html", limits=LIMITS)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    for phrase in (
        "poaching",
        "ivory or rhino horn",
        "illegal logging",
        "Use Tor Browser",
        "Safest",
        "metadata",
        "work network",
        "Do not tell anyone",
        "Close Tor Browser",
        "locked (encrypted)",
        "not connected to the internet",
        "receipt number",
        "cannot reply",
        "cannot protect you from",
    ):
        assert phrase in text, phrase


def test_the_upload_forms_say_what_a_broken_connection_keeps(
    app: Flask, make_app: Callable[..., Flask], tmp_path: Path, reply_signing_pub: Path
) -> None:
    folders = [tmp_path / "state", tmp_path / "replies"]
    for folder in folders:
        folder.mkdir(mode=0o700)
    # The replies page's forms point at the codename routes: an app that has them.
    codename_app = make_app(
        state_dir=folders[0],
        replies_dir=folders[1],
        reply_signing_key_file=reply_signing_pub,
        codename_kdf_memory=8 * 1024,
        codename_kdf_passes=1,
    )
    pages = (
        render(app, "index.html", limits=LIMITS),
        render(
            codename_app,
            "replies.html",
            limits=LIMITS,
            codename="a b c d e f g h",
            codename_ending="g h",
            replies=[],
        ),
    )
    for html in pages:
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
        # What the server does with a cut upload (web.upload): it keeps what arrived.
        assert "If the connection breaks" in text
        assert "what had already arrived is kept" in text
        assert "Sending everything again is safest" in text
        assert "one file per submission" in text


# --- received page ----------------------------------------------------------------------


def test_the_received_page_shows_the_receipt_and_says_to_close_the_browser(app: Flask) -> None:
    html = render(app, "received.html", receipt=RECEIPT)
    assert f'<p class="receipt-number" dir="ltr">{RECEIPT}</p>' in html
    assert "arrived" in html and "Close Tor Browser" in html


def test_the_received_page_escapes_the_receipt(app: Flask) -> None:
    html = render(app, "received.html", receipt="<b>1</b>")
    assert "<b>1</b>" not in html and "&lt;b&gt;1&lt;/b&gt;" in html


# --- error pages ------------------------------------------------------------------------


def test_each_error_status_has_its_own_calm_page(app: Flask) -> None:
    fallback = parse(render(app, "error.html", status=418)).find("h1")[0].text
    headings = set()
    for status in ERROR_STATUSES:
        page = parse(render(app, "error.html", status=status))
        heading = page.find("h1")[0].text.strip()
        assert heading and heading != fallback, status
        headings.add(heading)
        back = [
            e.attrs.get("href") for e in page.find("a") if "button" in (e.attrs.get("class") or "")
        ]
        assert back == ["/en/"], f"{status}: no way back to the start"
    assert len(headings) == len(ERROR_STATUSES)


@pytest.mark.parametrize("status", ERROR_STATUSES)
def test_error_pages_never_echo_what_was_sent(app: Flask, status: int) -> None:
    with app.test_request_context(
        f"/{MARKER}/<i>{MARKER}</i>",
        method="POST",
        query_string={MARKER: MARKER},
        data={"message": MARKER, MARKER: MARKER},
        headers={"User-Agent": MARKER, "Referer": MARKER, "Cookie": f"{MARKER}={MARKER}"},
    ):
        html = render_template("error.html", status=status)
    assert MARKER.lower() not in html.lower()


# --- colour contrast --------------------------------------------------------------------


def relative_luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def css_rules() -> list[tuple[str, dict[str, str]]]:
    rules = []
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css_without_comments()):
        declarations = {}
        for declaration in body.split(";"):
            if ":" in declaration:
                prop, value = declaration.split(":", 1)
                declarations[prop.strip().lower()] = value.strip().lower()
        rules.append((" ".join(selector.split()), declarations))
    return rules


def test_contrast_helper_matches_known_ratios() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


def test_css_uses_only_six_digit_hex_colours() -> None:
    for selector, declarations in css_rules():
        for prop, value in declarations.items():
            if prop in {"color", "background-color"}:
                assert re.fullmatch(r"#[0-9a-f]{6}", value), f"{selector} {prop}: {value}"
            assert not prop.startswith("background") or prop == "background-color", selector
            for colour in re.findall(r"#[0-9a-f]+\b", value):
                assert len(colour) == 7, f"{selector} {prop}: {value}"
            assert not re.search(r"\b(rgb|hsl|hwb|lab|lch|oklch|oklab)a?\(", value), selector


def test_text_colours_meet_wcag_aa_on_their_backgrounds() -> None:
    """Every rule setting a colour or background is checked against its partner.

    A rule setting only one of the two is paired with the page's own (body)
    colours, which is where such text ends up: every rule here that paints a
    background also sets its text colour, and the test keeps it that way.
    """
    rules = css_rules()
    body = dict(rules)["body"]
    page_fg, page_bg = body["color"], body["background-color"]
    checked = 0
    for selector, declarations in rules:
        fg = declarations.get("color")
        bg = declarations.get("background-color")
        if fg is None and bg is None:
            continue
        if bg is not None and selector != "body":
            assert fg is not None, f"{selector} paints a background without setting its text"
        ratio = contrast(fg or page_fg, bg or page_bg)
        assert ratio >= 4.5, f"{selector}: {fg or page_fg} on {bg or page_bg} is {ratio:.2f}"
        checked += 1
    assert checked >= 8


def test_focus_rings_and_field_borders_are_visible() -> None:
    """WCAG 1.4.11: focus indicators and control borders need 3:1 against the page."""
    rules = css_rules()
    page_bg = dict(rules)["body"]["background-color"]
    focus = [(s, d) for s, d in rules if ":focus" in s and "outline" in d]
    assert focus and any("textarea:focus" in s for s, _ in focus)
    for selector, declarations in rules:
        for prop in ("outline", "border", "border-inline-start"):
            if prop in declarations:
                for colour in re.findall(r"#[0-9a-f]{6}", declarations[prop]):
                    if selector.startswith(("footer", ".receipt")):
                        continue  # decorative separators, not controls
                    ratio = contrast(colour, page_bg)
                    assert ratio >= 3.0, f"{selector} {prop}: {ratio:.2f}"


def test_the_page_never_scrolls_sideways_by_design() -> None:
    rules: dict[str, dict[str, str]] = {}
    for selector, declarations in css_rules():
        rules.setdefault(selector, {}).update(declarations)
    assert rules['textarea, input[type="file"]']["max-width"] == "100%"
    assert "anywhere" in rules[".receipt-number"]["overflow-wrap"]
    for declarations in rules.values():
        for prop in ("width", "min-width"):
            value = declarations.get(prop, "")
            assert not re.search(r"\d+px", value), f"{prop}: {value} can overflow 360 px"


# --- the pages as the real app serves them ------------------------------------------------


def test_the_served_landing_page_shows_the_configured_limits(client: FlaskClient) -> None:
    # conftest's settings: 3 files, 1000 characters, 4 MiB.
    html = client.get("/").get_data(as_text=True)
    assert "Up to 3 files, 4 MiB" in html
    assert "Up to 1,000 characters" in html
    assert 'maxlength="1000"' in html
    assert len(html.encode("utf-8")) + len(css_text().encode("utf-8")) < PAGE_BUDGET
    assert "<script" not in html.lower()


def test_a_submission_through_the_form_fields_shows_the_receipt(
    client: FlaskClient, submission_body: Any, open_spool: Any
) -> None:
    body = submission_body("ivory at the north gate", ("a.txt", b"x"))
    response = client.post("/submit", data=body.body, content_type=body.content_type)
    assert response.status_code == 200
    page = parse(response.get_data(as_text=True))
    assert page.find("h1")[0].text == "Your information has arrived"
    (opened,) = open_spool()
    assert f'<p class="receipt-number" dir="ltr">{opened.receipt}</p>' in response.get_data(
        as_text=True
    )


def served_error(client: FlaskClient, status: int, submission_body: Any) -> str:
    """Make the real app answer `status`, with the marker in every place a visitor controls."""
    headers = {"User-Agent": MARKER, "Referer": MARKER, "Cookie": f"{MARKER}={MARKER}"}
    if status == 404:
        response = client.get(f"/{MARKER}?{MARKER}={MARKER}", headers=headers)
    elif status == 405:
        response = client.get(f"/submit?{MARKER}={MARKER}", headers=headers)
    elif status == 400:
        response = client.post(
            f"/submit?{MARKER}={MARKER}",
            data=f"--{MARKER}\r\nbroken {MARKER}".encode(),
            content_type=f"multipart/form-data; boundary={MARKER}",
            headers=headers,
        )
    else:
        assert status == 413
        files = [(f"{MARKER}-{n}.txt", MARKER.encode()) for n in range(5)]  # over max_files=3
        body = submission_body(MARKER, *files)
        response = client.post(
            f"/submit?{MARKER}={MARKER}",
            data=body.body,
            content_type=body.content_type,
            headers=headers,
        )
    assert response.status_code == status
    return response.get_data(as_text=True)


@pytest.mark.parametrize("status", [400, 404, 405, 413])
def test_served_error_pages_never_echo_what_was_sent(
    client: FlaskClient, submission_body: Any, status: int
) -> None:
    html = served_error(client, status, submission_body)
    assert MARKER.lower() not in html.lower()
    assert (
        parse(html).find("h1")[0].text
        == parse(render(client.application, "error.html", status=status)).find("h1")[0].text
    )
