"""The languages sealdrop has pages in, named by BCP 47 tags: pure, Babel's locale data only.

The tag (``sw``, ``zh-Hans``) is what URLs, settings and the sealed LANGUAGE record
carry; Babel's locale name (``zh_Hans``) only names a catalog folder. The web glue is
web/language.py; the reviewer's commands use this module to name a submission's language.
"""

from __future__ import annotations

import gettext
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from babel import Locale, UnknownLocaleError

# English (the msgids) and every language with a catalog in translations/;
# tests/test_i18n.py checks that this list and the folder agree.
SHIPPED = ("en", "fr", "es", "pt", "sw", "id", "zh-Hans", "vi", "ru", "ar")
SOURCE_LANGUAGE = "en"
# The compiled catalogs, in the package: translations/<catalog>/LC_MESSAGES/messages.mo.
TRANSLATIONS_FOLDER = "translations"
TRANSLATIONS = Path(__file__).parent / TRANSLATIONS_FOLDER
# The translations a native speaker has reviewed (docs/TRANSLATIONS.md's table and each
# catalog's header say the same; tests/test_i18n.py checks the three agree). None yet:
# `sealdrop check` warns about every other one a deployment offers.
REVIEWED: frozenset[str] = frozenset({SOURCE_LANGUAGE})


class UnknownLanguage(ValueError):
    """A language tag that is not one of the shipped catalogs.

    Raised while settings are read (the operator reads it) and by `Languages.from_tags`;
    the message names the known tags.
    """


@dataclass(frozen=True)
class Language:
    """One language: its tag and what Babel's locale data says about it."""

    tag: str

    @cached_property
    def locale(self) -> Locale:
        # Parsed once per Language: every page asks each offered one for its name.
        return Locale.parse(self.tag, sep="-")

    @property
    def catalog(self) -> str:
        """Babel's locale name, the catalog folder's: ``zh_Hans``. Spelt from the tag,
        not from the locale data, which a start-up check need not load."""
        return self.tag.replace("-", "_")

    @cached_property
    def name(self) -> str:
        """The language's name in its own script, as CLDR spells it, capitalised."""
        name = self.locale.get_display_name(self.locale) or self.tag
        return name[:1].upper() + name[1:]

    @property
    def english_name(self) -> str:
        return self.locale.get_display_name("en") or self.tag

    @cached_property
    def direction(self) -> str:
        return "rtl" if self.locale.text_direction == "rtl" else "ltr"


def normalise_tag(raw: str) -> str:
    """A shipped language's tag from ``zh-Hans``, ``zh_Hans`` or ``ZH-hans``."""
    wanted = raw.strip().replace("_", "-").lower()
    for tag in SHIPPED:
        if tag.lower() == wanted:
            return tag
    raise UnknownLanguage(f"{raw!r} is not a language sealdrop has pages in ({', '.join(SHIPPED)})")


def describe_tag(tag: str) -> str:
    """``sw (Swahili, Kiswahili)`` for a reviewer; an unknown but well-formed tag as it is."""
    try:
        language = Language(normalise_tag(tag))
    except UnknownLanguage:
        return tag
    if language.name.lower() == language.english_name.lower():
        return f"{language.tag} ({language.english_name})"
    return f"{language.tag} ({language.english_name}, {language.name})"


@dataclass(frozen=True)
class Languages:
    """The languages one deployment offers, in the order its pages list them."""

    offered: tuple[Language, ...]
    default: Language

    @classmethod
    def from_tags(cls, offered: Iterable[str], default: str) -> Languages:
        tags = tuple(dict.fromkeys(normalise_tag(tag) for tag in offered))
        chosen = normalise_tag(default)
        if chosen not in tags:
            raise UnknownLanguage(
                f"the default language {chosen!r} is not among those offered ({', '.join(tags)})"
            )
        return cls(tuple(Language(tag) for tag in tags), Language(chosen))

    def get(self, tag: str) -> Language | None:
        return next((lang for lang in self.offered if lang.tag == tag), None)

    def by_preference(self, accept: Iterable[str]) -> tuple[Language, ...]:
        """The offered languages, those the browser asks for first, the rest in order."""
        asked: list[Language] = []
        for value in accept:
            try:
                wanted = Locale.parse(value.replace("-", "_"))
            except (ValueError, UnknownLocaleError):
                continue
            for lang in self.offered:
                if lang.locale.language == wanted.language and lang not in asked:
                    asked.append(lang)
        return (*asked, *(lang for lang in self.offered if lang not in asked))


def missing_catalogs(languages: Languages) -> list[str]:
    """The offered languages whose compiled catalog is not installed or cannot be read.
    Flask-Babel would show those pages in English without a word, or fail them: the
    caller refuses to start instead. Read with the standard library's parser, so that
    the check loads neither Babel's catalogs nor its locale data."""
    return [
        lang.tag
        for lang in languages.offered
        if lang.tag != SOURCE_LANGUAGE
        and not _catalog_reads(TRANSLATIONS / lang.catalog / "LC_MESSAGES" / "messages.mo")
    ]


def _catalog_reads(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            gettext.GNUTranslations(handle)
    except (OSError, ValueError, LookupError, struct.error):
        return False
    return True
