"""Every page a source can see, in every language, through the real app; and the catalogs.

A source who misreads "remove metadata" or "write your codename down" is at risk, so
a page must be wholly in the language chosen (no English msgid left over), must keep
the source in that language through every link and form to the receipt, and must
never store the choice anywhere (no cookie). The catalogs must be complete, keep
their placeholders and HTML exactly, match their compiled .mo files and say whether
a native speaker reviewed them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask, Response
from flask.testing import FlaskClient
from nacl.public import PrivateKey
from nacl.pwhash import argon2id
from nacl.signing import SigningKey
from werkzeug.test import TestResponse

from sealdrop import cli, codename, crypto, keys, records, replies
from sealdrop.languages import REVIEWED, SHIPPED, Language
from sealdrop.settings import Settings
from sealdrop.web.errors import error_page

from .conftest import SIGNING_PASSPHRASE, build_multipart, message_and_files, signed_reply

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "translations"
PYBABEL = Path(sys.executable).with_name("pybabel")
REVIEW_TABLE = ROOT / "docs" / "TRANSLATIONS.md"
NOT_REVIEWED = "NOT REVIEWED BY A NATIVE SPEAKER"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\w*\}")
TAG = re.compile(r"</?[a-zA-Z][^>]*>")
# Error pages rendered by the handlers' own function for statuses that need a whole
# disk, a failing store or a crowd to reach for real.
RENDERED_ERRORS = (429, 500, 503, 507)
# A reply is the reviewer's own text, shown as written, in whatever language they chose.
REVIEWERS_WORDS = "Which gate? Please say more."


# --- the catalogs ---------------------------------------------------------------------------


def catalogs() -> dict[str, Path]:
    return {
        path.parent.parent.name: path
        for path in sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"))
    }


def test_the_shipped_languages_are_english_and_one_catalog_each() -> None:
    folders = set(catalogs())
    assert folders == {Language(tag).catalog for tag in SHIPPED if tag != "en"}
    assert {"fr", "es", "pt", "sw", "id", "zh_Hans", "vi", "ru", "ar"} <= folders


def test_pybabel_compiles_every_catalog_complete(tmp_path: Path) -> None:
    copy = tmp_path / "translations"
    shutil.copytree(TRANSLATIONS, copy)
    result = subprocess.run(
        [str(PYBABEL), "compile", "--statistics", "-d", str(copy)],
        capture_output=True,
        text=True,
        check=True,
    )
    counts = re.findall(r"(\d+) of (\d+) messages \((\d+)%\) translated", result.stderr)
    assert len(counts) == len(catalogs()), result.stderr
    for done, total, percent in counts:
        assert done == total and percent == "100", result.stderr
    assert "fuzzy" not in result.stderr and "untranslated" not in result.stderr


def strings(message_id: object, text: object) -> Iterator[tuple[str, str]]:
    ids = [message_id] if isinstance(message_id, str) else list(message_id)  # type: ignore[call-overload]
    texts = [text] if isinstance(text, str) else list(text or ())  # type: ignore[call-overload]
    for translated in texts:
        # Every plural form is checked against the plural msgid (the singular may differ).
        yield ids[-1], translated


@pytest.mark.parametrize("name", sorted(catalogs()))
def test_every_string_keeps_its_placeholders_and_html(name: str) -> None:
    with catalogs()[name].open("rb") as handle:
        catalog = read_po(handle)
    checked = 0
    for message in catalog:
        if not message.id:
            continue
        assert "fuzzy" not in message.flags, message.id
        for source, translated in strings(message.id, message.string):
            assert translated, f"{name}: {source!r} is not translated"
            assert Counter(PLACEHOLDER.findall(translated)) == Counter(
                PLACEHOLDER.findall(source)
            ), f"{name}: placeholders differ in {translated!r}"
            # The same tags with the same attributes: a translation cannot add a link,
            # an image or a form, nor lose the emphasis on a warning.
            assert Counter(TAG.findall(translated)) == Counter(TAG.findall(source)), (
                f"{name}: HTML differs in {translated!r}"
            )
            assert "&" not in re.sub(r"&\w+;", "", translated), f"{name}: bare & in {translated!r}"
            checked += 1
    assert checked >= 90


def test_every_catalog_has_every_msgid_of_the_extracted_template(tmp_path: Path) -> None:
    fresh = tmp_path / "messages.pot"
    subprocess.run(
        [str(PYBABEL), "-q", "extract", "-F", "babel.cfg", "-o", str(fresh), "."],
        cwd=ROOT,
        check=True,
    )

    def ids(path: Path) -> set[object]:
        with path.open("rb") as handle:
            return {message.id for message in read_po(handle) if message.id}

    extracted = ids(fresh)
    assert ids(TRANSLATIONS / "messages.pot") == extracted, "run scripts/translations update"
    for name, path in catalogs().items():
        assert ids(path) == extracted, f"{name}: run scripts/translations update"


@pytest.mark.parametrize("name", sorted(catalogs()))
def test_the_committed_mo_matches_its_po(name: str) -> None:
    """Compiled catalogs are committed so pip and the image install them as they are;
    this keeps each one what `scripts/translations compile` makes of its .po."""
    po = catalogs()[name]
    with po.open("rb") as handle:
        source = read_po(handle)
    with po.with_suffix(".mo").open("rb") as handle:
        compiled = read_mo(handle)
    assert compiled.plural_forms == source.plural_forms

    def table(catalog: Catalog) -> dict[object, object]:
        return {
            tuple(m.id) if isinstance(m.id, (list, tuple)) else m.id: (
                tuple(m.string) if isinstance(m.string, (list, tuple)) else m.string
            )
            for m in catalog
            if m.id
        }

    assert table(compiled) == table(source), "run scripts/translations compile"


def review_table() -> dict[str, str]:
    rows = re.findall(r"^\| `([\w-]+)` \|[^|]*\|[^|]*\| (yes|no)\b", REVIEW_TABLE.read_text(), re.M)
    return dict(rows)


def test_each_catalog_header_says_whether_a_native_speaker_reviewed_it() -> None:
    table = review_table()
    for name, path in catalogs().items():
        tag = name.replace("_", "-")
        assert tag in table, f"docs/TRANSLATIONS.md has no row for {tag}"
        header = path.read_text(encoding="utf-8").split('msgid ""', 1)[0]
        assert (NOT_REVIEWED in header) == (table[tag] == "no"), tag
        # `sealdrop check` warns from this list: it must say what the table says.
        assert (tag in REVIEWED) == (table[tag] == "yes"), tag


def test_check_warns_about_offered_languages_no_native_speaker_reviewed() -> None:
    from sealdrop.checks.languages import check_languages

    assert not check_languages(("en",)).warning
    found = check_languages(("en", "sw", "ar"))
    assert found.ok and found.warning  # safe to run; worth acting on
    assert "sw ar offered to sources" in found.line() and "en" not in found.text.split(":")[1]


# --- every page through the real app --------------------------------------------------------


class Page(HTMLParser):
    """The <html> attributes, visible text pieces, links and form actions of a page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html_attrs: dict[str, str | None] = {}
        self.texts: list[str] = []
        self.links: list[tuple[str, str | None, bool]] = []  # (target, lang, in the list)
        self._nav_depth = 0
        self._form_lang: str | None = None
        self._form_action: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "html":
            self.html_attrs = found
        if tag == "nav" and "languages" in (found.get("class") or ""):
            self._nav_depth = 1
        if tag == "a" and found.get("href"):
            self.links.append((found["href"] or "", found.get("lang"), self._nav_depth > 0))
        if tag == "form":
            self._form_action = found.get("action") or ""
            if not self._nav_depth:
                self.links.append((self._form_action, None, False))
        if tag == "button" and self._nav_depth and self._form_action is not None:
            self.links.append((self._form_action, found.get("lang"), True))
        for attribute in ("aria-label", "title", "placeholder", "alt"):
            if found.get(attribute):
                self.texts.append(found[attribute] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self._nav_depth = 0
        if tag == "form":
            self._form_action = None

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if text and not self._nav_depth:
            self.texts.append(text)


@pytest.fixture
def i18n_settings(tmp_path: Path, settings: Settings, reply_signing_pub: Path) -> Settings:
    state, box = tmp_path / "state", tmp_path / "replies"
    state.mkdir(mode=0o700)
    box.mkdir(mode=0o700)
    return dataclasses.replace(
        settings,
        state_dir=state,
        replies_dir=box,
        reply_signing_key_file=reply_signing_pub,
        codename_kdf_memory=argon2id.MEMLIMIT_MIN,
        codename_kdf_passes=argon2id.OPSLIMIT_MIN,
    )


@dataclasses.dataclass
class Site:
    app: Flask
    client: FlaskClient
    plain: FlaskClient  # the same spool, codenames off: the receipt without one
    settings: Settings
    signer: SigningKey


@pytest.fixture
def site(i18n_settings: Settings, make_app: Callable[..., Flask], reply_signer: SigningKey) -> Site:
    from sealdrop.app import create_app

    app = create_app(i18n_settings)
    plain = make_app()
    return Site(app, app.test_client(), plain.test_client(), i18n_settings, reply_signer)


def put_reply(site: Site, typed: str, text: str) -> None:
    settings = site.settings
    assert settings.state_dir is not None and settings.replies_dir is not None
    salt = codename.load_installation_salt(settings.state_dir)
    keys = codename.derive(typed, salt, codename.TEST_COST)
    name = replies.reply_file_name(keys.mailbox_id)
    data = signed_reply(text, keys.reply_public_key, keys.mailbox_id, site.signer, "2026-11-30")
    (settings.replies_dir / name).write_bytes(data)


def shown(html: str, css_class: str) -> str:
    match = re.search(rf'<p class="{css_class}"[^>]*>([^<]+)</p>', html)
    assert match, css_class
    return str(match.group(1))


def every_page(site: Site, tag: str) -> dict[str, tuple[int, str]]:
    """Every page a source can reach, in one language: name -> (status, html)."""
    pages: dict[str, tuple[int, str]] = {}

    def keep(name: str, response: Response | TestResponse) -> str:
        assert "Set-Cookie" not in response.headers, name
        html = response.get_data(as_text=True)
        pages[name] = (response.status_code, html)
        return html

    base = f"/{tag}"
    keep("landing", site.client.get(f"{base}/"))
    keep("come-back", site.client.get(f"{base}/come-back"))
    form = "application/x-www-form-urlencoded"
    keep(
        "come-back problem",
        site.client.post(f"{base}/replies", data="codename=x", content_type=form),
    )
    body = message_and_files("Trucks leave at night.", ("note.txt", b"ivory"))
    html = keep(
        "receipt with codename",
        site.client.post(f"{base}/submit", data=body.body, content_type=body.content_type),
    )
    typed = shown(html, "codename")
    quoted = "codename=" + typed.replace(" ", "+")
    keep("replies none", site.client.post(f"{base}/replies", data=quoted, content_type=form))
    put_reply(site, typed, REVIEWERS_WORDS)
    keep("replies", site.client.post(f"{base}/replies", data=quoted, content_type=form))
    follow = build_multipart(
        [("codename", None, typed.encode(), None), ("message", None, b"More.", None)]
    )
    keep(
        "follow-up receipt",
        site.client.post(f"{base}/follow-up", data=follow.body, content_type=follow.content_type),
    )
    body = message_and_files("No codename here.")
    keep(
        "receipt", site.plain.post(f"{base}/submit", data=body.body, content_type=body.content_type)
    )
    keep(
        "error 400",
        site.client.post(
            f"{base}/submit", data=b"--x\r\nbroken", content_type="multipart/form-data; boundary=x"
        ),
    )
    keep("error 404", site.client.get(f"{base}/no-such-page"))
    keep("error 405", site.client.get(f"{base}/submit"))
    too_big = message_and_files("x", ("big.bin", b"\0" * (site.settings.max_body_bytes + 1)))
    keep(
        "error 413",
        site.client.post(f"{base}/submit", data=too_big.body, content_type=too_big.content_type),
    )
    for status in RENDERED_ERRORS:
        with site.app.test_request_context(f"{base}/submit", method="POST"):
            keep(f"error {status}", error_page(status))
    return pages


@pytest.fixture
def english(site: Site) -> dict[str, tuple[int, str]]:
    return every_page(site, "en")


# Text that is the same in every language by design: names (the codename is English words
# on purpose; the page says so), numbers, and product names kept as they are.
SAME_EVERYWHERE = re.compile(r"^[\d\s.,:;()\-–/|]*$|^Tor Browser$|^Tails$|^Metadata Cleaner$")


@pytest.mark.parametrize("tag", SHIPPED)
def test_every_page_is_wholly_in_its_language_and_keeps_it(
    site: Site, english: dict[str, tuple[int, str]], tag: str
) -> None:
    language = Language(tag)
    pages = every_page(site, tag)
    assert set(pages) == set(english)
    for name, (status, html) in pages.items():
        assert status == english[name][0], name
        page = Page(html)
        assert page.html_attrs.get("lang") == tag, name
        assert page.html_attrs.get("dir") == language.direction, name
        for target, link_lang, in_list in page.links:
            if target.startswith("#"):
                continue
            expected = link_lang if in_list else tag
            assert target.startswith(f"/{expected}/"), f"{tag} {name}: {target}"
        if tag == "en":
            continue
        english_texts = set(Page(english[name][1]).texts)
        left = [
            text
            for text in page.texts
            if text in english_texts
            and text != REVIEWERS_WORDS
            and not SAME_EVERYWHERE.match(text)
            and not re.fullmatch(r"[a-z]+( [a-z]+){7}", text)  # the codename itself
        ]
        assert not left, f"{tag} {name}: still in English: {left}"


def test_pages_showing_a_codename_say_its_words_are_english(site: Site) -> None:
    for tag in ("sw", "ar", "zh-Hans"):
        pages = every_page(site, tag)
        with site.app.test_request_context(f"/{tag}/"):
            from flask_babel import gettext

            sentence = gettext(
                "The codename is always made of English words, whatever the language of this page."
            )
        assert not sentence.startswith("The codename"), tag
        for name in ("receipt with codename", "come-back", "come-back problem"):
            assert sentence in pages[name][1], (tag, name)
        # Shown left to right inside right-to-left text, and marked as English words.
        assert re.search(
            r'<p class="codename" dir="ltr" lang="en">', pages["receipt with codename"][1]
        )
        assert '<p class="receipt-number" dir="ltr">' in pages["receipt"][1]


# --- the language in the URL, and only there ----------------------------------------------


def test_an_unknown_prefix_is_the_calm_404_in_the_default_language(client: FlaskClient) -> None:
    for path in ("/xx/", "/xx/submit", "/FR/", "/fr-FR/", "/zh_Hans/", "/en/en/"):
        response = client.get(path)
        assert response.status_code == 404, path
        page = Page(response.get_data(as_text=True))
        assert page.html_attrs["lang"] == "en"
        assert "Page not found" in page.texts
    # An offered prefix's 404 is in that language.
    assert Page(client.get("/fr/nope").get_data(as_text=True)).html_attrs["lang"] == "fr"


def test_the_first_page_orders_the_list_from_accept_language_and_never_redirects(
    client: FlaskClient,
) -> None:
    response = client.get("/", headers={"Accept-Language": "sw-KE,sw;q=0.9,ar;q=0.5"})
    assert response.status_code == 200
    page = Page(response.get_data(as_text=True))
    assert page.html_attrs["lang"] == "en"  # the default: a header is only a hint
    listed = [lang for _, lang, in_list in page.links if in_list]
    assert listed[:3] == ["sw", "ar", "en"]
    assert sorted(map(str, listed)) == sorted(SHIPPED)
    # Any other page keeps the configured order, whatever the browser says.
    other = Page(client.get("/fr/", headers={"Accept-Language": "sw"}).get_data(as_text=True))
    assert [lang for _, lang, in_list in other.links if in_list] == list(SHIPPED)


def test_the_language_list_keeps_the_visitor_on_the_same_page(site: Site) -> None:
    client = site.client
    page = Page(client.get("/ru/come-back").get_data(as_text=True))
    listed = {lang: target for target, lang, in_list in page.links if in_list}
    assert listed["sw"] == "/sw/come-back" and listed["zh-Hans"] == "/zh-Hans/come-back"
    html = client.get("/ar/come-back").get_data(as_text=True)
    assert '<a href="/ru/come-back" lang="ru" hreflang="ru" dir="ltr">Русский</a>' in html
    assert 'lang="ar" hreflang="ar" dir="rtl" aria-current="page">العربية</a>' in html


def test_unprefixed_paths_are_the_default_language_and_hand_out_prefixed_links(
    make_app: Callable[..., Flask], submission_body: Callable[..., object]
) -> None:
    client = make_app(languages=("en", "sw", "fr"), default_language="sw").test_client()
    page = Page(client.get("/").get_data(as_text=True))
    assert page.html_attrs["lang"] == "sw"
    assert ("/sw/submit", None, False) in page.links
    body = submission_body("sent from a form opened before the upgrade")
    response = client.post("/submit", data=body.body, content_type=body.content_type)  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert Page(response.get_data(as_text=True)).html_attrs["lang"] == "sw"


def test_an_organisation_offers_only_its_languages(make_app: Callable[..., Flask]) -> None:
    client = make_app(languages=("en", "sw", "fr"), default_language="en").test_client()
    page = Page(client.get("/sw/").get_data(as_text=True))
    assert [lang for _, lang, in_list in page.links if in_list] == ["en", "sw", "fr"]
    assert client.get("/ru/").status_code == 404
    assert client.get("/ar/come-back").status_code == 404


def test_numbers_and_plurals_follow_the_page_language(make_app: Callable[..., Flask]) -> None:
    client = make_app(
        max_files=21, max_message_chars=100_000, max_body_bytes=3 * 1024**3 // 2
    ).test_client()

    def text(tag: str) -> str:
        return client.get(f"/{tag}/").get_data(as_text=True)

    assert "Up to 100,000 characters." in text("en")
    assert "Up to 21 files, 1.5 GiB in total." in text("en")
    # French groups digits with a narrow no-break space and writes Gio for GiB.
    assert "100\u202f000 caractères" in text("fr") and "1,5\u00a0Gio" in text("fr")
    assert "До 21 файла" in text("ru")  # the "one" form: 21 ends in 1
    assert "1,5 ГиБ" in text("ru")
    one = make_app(max_files=1).test_client()
    assert "Up to 1 file," in one.get("/en/").get_data(as_text=True)


def test_no_page_sets_a_cookie_or_varies_on_anything_but_the_path(site: Site) -> None:
    for path in ("/", "/sw/", "/ar/come-back", "/xx/"):
        response = site.client.get(path, headers={"Accept-Language": "ar"})
        assert "Set-Cookie" not in response.headers
        assert "lang=" not in response.headers.get("Location", "")


def test_languages_need_no_session(site: Site) -> None:
    # Flask signs a session only with a secret key; there is none, so no page can set one.
    assert site.app.secret_key is None
    assert site.app.config["SECRET_KEY"] is None


# --- the reviewer learns the language, sealed inside the submission -------------------------


def sealed_languages(spool: Path, key: PrivateKey) -> dict[str, str | None]:
    """receipt -> the LANGUAGE record's tag (None without one), for every spool file."""
    found: dict[str, str | None] = {}
    for path in spool.glob("*.sealed"):
        with path.open("rb") as handle:
            payload = crypto.open_payload(handle, key)
            events = list(records.read_payload(payload, payload.version))
        receipt = next(e.receipt for e in events if isinstance(e, records.Receipt))
        tags = [e.tag for e in events if isinstance(e, records.SourceLanguage)]
        assert len(tags) <= 1
        found[receipt] = tags[0] if tags else None
    return found


def test_each_submission_seals_the_language_of_its_pages(
    site: Site, reviewer_key: PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receipts = {}
    for path, tag in (("/sw/submit", "sw"), ("/ar/submit", "ar"), ("/submit", "en")):
        body = message_and_files("Ivory at the north gate.", ("a.txt", b"x"))
        html = site.client.post(path, data=body.body, content_type=body.content_type).get_data(
            as_text=True
        )
        receipts[shown(html, "receipt-number")] = tag
    assert sealed_languages(site.settings.spool_dir, reviewer_key) == receipts
    # Never outside the sealed payload: not in a spool file's name, not in a log line.
    for entry in site.settings.spool_dir.iterdir():
        assert not re.search(r"(?<![0-9a-f])(sw|ar|en)(?![0-9a-f])", entry.name)
    for record_ in caplog.records:
        assert "/sw" not in record_.getMessage() and "/ar" not in record_.getMessage()


def test_the_writer_refuses_a_language_that_is_not_a_tag() -> None:
    for bad in ("", "s", "sw ke", "sw_KE", "-sw", "sw-", "1sw", "sw-abcdefghi", "ñ"):
        with pytest.raises(ValueError, match="BCP 47"):
            records.PayloadWriter(lambda data: None, "2026-12-01", "1", language=bad)
    out = bytearray()
    writer = records.PayloadWriter(out.extend, "2026-12-01", "1", language="zh-Hans")
    writer.message("象牙")
    writer.close()
    events = list(records.read_payload([bytes(out)], 1))
    assert records.SourceLanguage("zh-Hans") in events
    assert events.index(records.SourceLanguage("zh-Hans")) == 2  # before the message


def test_open_shows_the_language_and_reply_says_to_answer_in_it(
    site: Site,
    reviewer_key: PrivateKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    reply_signing_key_file: Path,
) -> None:
    body = message_and_files("Magogo yanapita mtoni alfajiri.")
    html = site.client.post("/sw/submit", data=body.body, content_type=body.content_type)
    typed = shown(html.get_data(as_text=True), "codename")
    follow = build_multipart(
        [("codename", None, typed.encode(), None), ("message", None, b"Zaidi.", None)]
    )
    site.client.post("/ar/follow-up", data=follow.body, content_type=follow.content_type)
    key_file = tmp_path / "offline" / "reviewer.key"
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text(keys.encode_secret_key(reviewer_key, "pw", keys.KdfCost.MIN))
    monkeypatch.setenv("SEALDROP_PASSPHRASE", "pw")
    out = tmp_path / "opened"
    spool = str(site.settings.spool_dir)
    assert cli.main(["open", spool, "--key", str(key_file), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    # Each opened submission's line (on stderr, with the progress), then the summary.
    assert "sw (Swahili, Kiswahili)" in printed.err and "ar (Arabic, العربية)" in printed.err
    assert "Languages of the pages the sources used: ar (Arabic, العربية) 1, sw (Swahili, " in (
        printed.out
    )
    assert "; answer in ar (Arabic, العربية)" in printed.out
    (folder,) = [p for p in out.iterdir() if p.name.startswith("source_")]
    manifests = [json.loads(m.read_text()) for m in folder.glob("*/manifest.json")]
    assert sorted(m["language"]["tag"] for m in manifests) == ["ar", "sw"]
    # No file or folder name says the language.
    for path in out.rglob("*"):
        assert "swahili" not in path.name.lower() and "arabic" not in path.name.lower()
        assert not re.search(r"(^|[_.-])(sw|ar)([_.-]|$)", path.name)

    message = tmp_path / "reply.txt"
    message.write_text("Asante. Which river?\n", encoding="utf-8")
    argv = ["reply", str(folder), "--out", str(tmp_path / "outbox"), "--message-file", str(message)]
    monkeypatch.setenv("SEALDROP_PASSPHRASE", SIGNING_PASSPHRASE)
    assert cli.main([*argv, "--signing-key", str(reply_signing_key_file)]) == 0
    # The latest submission came through the Arabic pages: answer in Arabic.
    assert "Answer in ar (Arabic, العربية)" in capsys.readouterr().err


def test_every_language_is_read_while_the_app_is_built_not_by_a_worker(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each worker builds its app before it serves anything: its first page in a language
    # reads no catalog and no locale file, so how long it takes does not tell whether a
    # page in that language was served before (a source's language narrows where they are).
    import babel.localedata
    import babel.support

    from sealdrop.app import create_app

    app = create_app(settings)

    def no_more_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("read after the app was built")

    monkeypatch.setattr(babel.support.Translations, "load", no_more_reading)
    monkeypatch.setattr(babel.localedata, "resolve_locale_filename", no_more_reading)
    client = app.test_client()
    for tag in SHIPPED:
        page = client.get(f"/{tag}/")
        assert page.status_code == 200
        assert f'<html lang="{tag}"' in page.get_data(as_text=True)
    assert "Envoyer des informations en sécurité" in client.get("/fr/").get_data(as_text=True)


def test_a_missing_catalog_stops_start_up_rather_than_show_english(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sealdrop import languages
    from sealdrop.app import StartupRefused, create_app

    empty = tmp_path / "no-translations"
    empty.mkdir()
    monkeypatch.setattr(languages, "TRANSLATIONS", empty)
    with pytest.raises(StartupRefused, match="translations for fr, sw are not installed"):
        create_app(dataclasses.replace(settings, languages=("en", "fr", "sw")))
    create_app(dataclasses.replace(settings, languages=("en",)))  # English needs none


def test_a_damaged_catalog_stops_start_up_rather_than_fail_its_pages(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sealdrop import languages
    from sealdrop.app import StartupRefused, create_app

    copy = tmp_path / "translations"
    shutil.copytree(languages.TRANSLATIONS, copy)
    (copy / "sw" / "LC_MESSAGES" / "messages.mo").write_bytes(b"\x00" * 64)
    monkeypatch.setattr(languages, "TRANSLATIONS", copy)
    with pytest.raises(StartupRefused, match="translations for sw are not installed or cannot"):
        create_app(dataclasses.replace(settings, languages=("en", "fr", "sw")))
    create_app(dataclasses.replace(settings, languages=("en", "fr")))


@pytest.mark.parametrize("default", ["sw", "ar"])
def test_gunicorns_own_refusals_are_our_page_in_the_default_language(
    tmp_path: Path, default: str
) -> None:
    # A request gunicorn cannot parse never reaches the app; its answer is still ours.
    from sealdrop.tests.reliability import Service, exchange, running

    service = Service.create(tmp_path / "service")
    settings = {"SEALDROP_DEFAULT_LANGUAGE": default}
    with running(service, settings) as server:
        bad_line = exchange(server.port, b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
        too_long = exchange(server.port, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    for response, status in ((bad_line, 400), (too_long, 414)):
        assert response.status_code == status
        assert response.header("Content-Type") == "text/html; charset=utf-8"
        assert response.header("Content-Security-Policy") is not None
        page = Page(response.body.decode("utf-8"))
        assert page.html_attrs == {"lang": default, "dir": Language(default).direction}
        assert f"/{default}/" in {target for target, _, in_list in page.links if not in_list}
        assert "Error" not in " ".join(page.texts)  # no English left, not even gunicorn's
