"""The languages offered to sources: are their translations reviewed?"""

from __future__ import annotations

from ..languages import REVIEWED
from .findings import Finding, ok, warning


def check_languages(offered: tuple[str, ...]) -> Finding:
    """A warning for each offered language no native speaker has reviewed: a wrong
    sentence about metadata or the codename could put a source at risk."""
    unreviewed = [tag for tag in offered if tag not in REVIEWED]
    if not unreviewed:
        return ok(f"languages: {' '.join(offered)}, every translation reviewed")
    return warning(
        f"languages: {' '.join(unreviewed)} offered to sources, but no native speaker has "
        "reviewed those translations (docs/TRANSLATIONS.md)",
        "have each reviewed before sources rely on it, or offer only reviewed ones "
        '(setting languages, e.g. languages = ["en"])',
    )
