"""The page's language: the URL's first segment, never a cookie, a session or a guess.

Every page a source sees exists under ``/<tag>/`` (``/fr/submit``, ``/zh-Hans/come-back``),
and every link and form action is built by `url_for`, which puts the current tag back
in: a source who chose Kiswahili keeps it through to the receipt with nothing stored in
the browser or on the server. The un-prefixed paths (``/``, ``/submit``, ``/replies``,
...) stay as the default language's pages, answered in place and never redirected: a
redirect chosen from ``Accept-Language`` would guess (Tor Browser usually sends
``en-US`` whatever its user reads), and a redirected POST would lose its body, so a
form opened before an upgrade still delivers.

Catalogs are gettext files under ``translations/`` read through Flask-Babel; the
language tag is BCP 47 (``zh-Hans``) in URLs, settings and the sealed LANGUAGE record,
and Babel's name for it (``zh_Hans``) only for the catalog folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from flask import Flask, current_app, g, has_request_context, request, url_for
from flask_babel import Babel, format_date, format_decimal, get_translations, gettext

from ..languages import SOURCE_LANGUAGE, TRANSLATIONS_FOLDER, Language, Languages
from ..units import in_largest_unit

_EXTENSION = "sealdrop.languages"
_TAG_ARG = "lang"


def languages_of(app: Flask) -> Languages:
    languages: Languages = app.extensions[_EXTENSION]
    return languages


def current_language() -> Language:
    """The page's language: the URL's prefix if it names an offered language, else the
    deployment's default (an un-prefixed path, an error before routing, no request)."""
    languages = languages_of(current_app)
    if not has_request_context():
        return languages.default
    chosen = g.get("language")
    if isinstance(chosen, Language):
        return chosen
    # No route matched (a 404 or 405): the prefix still says which language to answer in.
    first = request.path.lstrip("/").split("/", 1)[0]
    return languages.get(first) or languages.default


def size_text(size: int) -> str:
    """A size as `units.human_size` writes it, in the page's language: ``1,5 Gio``."""
    number, unit = in_largest_unit(size)
    shown = format_decimal(number, format="#,##0.#")
    # One msgid per unit, so a translator can write the unit as the language does;
    # only the one shown is looked up.
    texts = {
        "TiB": lambda: gettext("%(number)s TiB", number=shown),
        "GiB": lambda: gettext("%(number)s GiB", number=shown),
        "MiB": lambda: gettext("%(number)s MiB", number=shown),
        "KiB": lambda: gettext("%(number)s KiB", number=shown),
        "B": lambda: gettext("%(number)s bytes", number=shown),
    }
    return str(texts[unit]())


def day_text(iso_day: str) -> str:
    """A reply's day (``2026-11-30``) as the page's language writes a date."""
    try:
        return str(format_date(date.fromisoformat(iso_day), format="long"))
    except ValueError:
        return iso_day


@dataclass(frozen=True)
class LanguageLink:
    language: Language
    href: str
    current: bool


def language_links() -> list[LanguageLink]:
    """The language list for this page: each offered language, linking to this page in
    it when this page is a plain GET of ours, else to the first page in it (an error page
    never links back to the path the visitor sent)."""
    languages = languages_of(current_app)
    here = current_language()
    endpoint = request.endpoint if request.method == "GET" and request.url_rule else None
    localized: set[str] = current_app.extensions[_EXTENSION + ".endpoints"]
    target = endpoint if endpoint in localized else "index"
    order = languages.offered
    if target == "index" and endpoint == "index" and g.get("language") is None:
        # Only `/` may order the list from the browser's languages; it never redirects.
        order = languages.by_preference(request.accept_languages.values())
    return [LanguageLink(lang, url_for(target, lang=lang.tag), lang == here) for lang in order]


def register_languages(app: Flask, languages: Languages) -> None:
    """Serve every route registered so far under each offered language's prefix too.

    Call after the routes: each rule gets a twin ``/<lang>/...`` rule whose `lang`
    is limited to the offered tags, so an unknown prefix matches nothing (the calm
    404 page) rather than reaching a view.
    """
    app.extensions[_EXTENSION] = languages
    tags = ",".join(f'"{lang.tag}"' for lang in languages.offered)
    localized: set[str] = set()
    for rule in list(app.url_map.iter_rules()):
        if rule.endpoint == "static":
            continue
        app.add_url_rule(
            f"/<any({tags}):{_TAG_ARG}>{rule.rule}",
            endpoint=rule.endpoint,
            methods=rule.methods,
        )
        localized.add(rule.endpoint)
    app.extensions[_EXTENSION + ".endpoints"] = localized

    @app.url_value_preprocessor
    def take_language(endpoint: str | None, values: dict[str, Any] | None) -> None:
        tag = values.pop(_TAG_ARG, None) if values else None
        g.language = languages.get(tag) if tag else None

    @app.url_defaults
    def keep_language(endpoint: str, values: dict[str, Any]) -> None:
        # Every link and form action stays in the page's language, the default one too,
        # so a page reached without a prefix hands the source prefixed links.
        if endpoint in localized and _TAG_ARG not in values:
            values[_TAG_ARG] = current_language().tag

    @app.context_processor
    def page_language() -> dict[str, Any]:
        return {
            "page_language": current_language(),
            "language_links": language_links,
            "size_text": size_text,
            "reply_day": day_text,
        }

    # One folder, Babel's layout (<catalog>/LC_MESSAGES/messages.mo), as Weblate writes it.
    Babel(
        app,
        locale_selector=lambda: current_language().catalog,
        default_locale=SOURCE_LANGUAGE,
        default_translation_directories=TRANSLATIONS_FOLDER,
    )
    # `{% trans %}` blocks collapse their line breaks, so a msgid is one line of text.
    app.jinja_env.policies["ext.i18n.trimmed"] = True

    def translations() -> Any:
        # Flask-Babel finds the catalog again for every string (some 40 a page: most of a
        # page's render time, measured in docs/PERFORMANCE.md); within one request it
        # cannot change, so it is found once.
        found = g.get("_page_translations")
        if found is None:
            found = g._page_translations = get_translations()
        return found

    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda text: translations().ugettext(text),
        ngettext=lambda one, many, n: translations().ungettext(one, many, n),
        newstyle=True,
    )
    load_every_language(app, languages)


def load_every_language(app: Flask, languages: Languages) -> None:
    """Read each offered language's catalog and CLDR data now, while the app is built.

    Each worker builds its app (startup.py says why the master holds none) before it
    serves anything. Read later, on each language's first page, a worker's first page
    in a language takes 10-45 ms longer than the next ones: a visitor could time
    whether anyone was served in that language since the worker started, and a
    source's language narrows where they are (docs/PERFORMANCE.md, "Translated
    pages"). Only plain data is made: Flask-Babel's catalog cache and Babel's locale
    data, dictionaries of strings; no lock, thread or file stays open.
    """
    for lang in languages.offered:
        # The prefix picks the language (`current_language`) without routing or a view.
        with app.test_request_context(f"/{lang.tag}/"):
            get_translations()
            # The locale data a page reads: the language list's names and directions,
            # numbers (`size_text`, the limits) and a reply's day.
            _ = lang.name, lang.direction
            format_decimal(1.5)
            format_date(date(2026, 1, 1), format="long")
