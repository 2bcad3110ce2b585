"""What is checked and prepared once, before the web app exists: keys, folders, languages.

`sealdrop serve` runs `prepare` in gunicorn's master, so that a bad key or folder stops
start-up with a plain message before any worker exists, and each worker then builds
the web app itself (app.create_app) from the `Startup` it inherits. Nothing here
imports Flask: every page the master holds is counted again in the worker it forks,
and a master that built the app too carried Flask, the templates and every language's
catalog twice (docs/PERFORMANCE.md, "The master holds no app").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nacl.signing import VerifyKey

from .codename import CodenameError, load_installation_salt, word_list
from .keys import KeyFileError
from .languages import Languages, UnknownLanguage, missing_catalogs
from .recipients import ReviewerKey, load_recipients
from .settings import Settings
from .signing import load_signing_public_keys
from .storage.counters import FailureCounters
from .storage.replies import RepliesFolderUnusable, ReplyBox
from .storage.spool import Spool, StorageError
from .storage.sweep import Sweeper

# Where the app keeps the sweeper (the master runs it; tests read its counters).
SWEEPER = "sealdrop.sweeper"


class StartupRefused(Exception):
    """The service must not start: a reviewer public key, a folder or a language is
    unusable. The message names the setting and the fix."""


@dataclass(frozen=True)
class Startup:
    """What the web app is built from, checked."""

    reviewers: tuple[ReviewerKey, ...]
    spool: Spool
    languages: Languages
    # Counts what the logs withhold; shared by the master and its workers.
    counters: FailureCounters
    # Runs once per server, in the master (serve's when_ready).
    sweeper: Sweeper
    # The installation's codename salt; None when codenames and replies are off.
    codename_salt: bytes | None
    reply_signers: tuple[VerifyKey, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """The reviewer keys' labels, to say at start what submissions are sealed to."""
        return tuple(reviewer.label for reviewer in self.reviewers)


def prepare(settings: Settings) -> Startup:
    """Check the keys, the folders and the languages, clear crash leftovers in the spool,
    make the codename salt on first start; StartupRefused naming the fix otherwise."""
    reviewers = _load_keys(settings)
    spool = Spool(
        settings.spool_dir, [r.key for r in reviewers], reserve_bytes=settings.reserve_bytes
    )
    try:
        spool.check()
        spool.remove_stale_parts()
    except StorageError as err:
        raise StartupRefused(f"{err} (setting spool_dir / SEALDROP_SPOOL_DIR / --spool)") from None
    salt = _codename_salt(settings)
    reply_signers = _reply_signers(settings) if salt is not None else ()
    languages = _languages(settings)
    if missing := missing_catalogs(languages):
        raise StartupRefused(
            f"the compiled translations for {', '.join(missing)} are not installed or "
            "cannot be read (translations/<language>/LC_MESSAGES/messages.mo in the "
            "package); reinstall "
            "sealdrop, or leave those out of the setting languages / SEALDROP_LANGUAGES"
        )
    counters = FailureCounters()
    replies = settings.replies_dir if salt is not None else None
    return Startup(
        reviewers=tuple(reviewers),
        spool=spool,
        languages=languages,
        counters=counters,
        sweeper=Sweeper(
            spool,
            settings.sweep_interval_seconds,
            replies=ReplyBox(replies) if replies is not None else None,
            state_dir=settings.state_dir,
            counters=counters,
        ),
        codename_salt=salt,
        reply_signers=reply_signers,
    )


def _codename_salt(settings: Settings) -> bytes | None:
    """The salt, when codenames and replies are on (both their folders set), with the
    replies folder and the word list checked."""
    if settings.state_dir is None or settings.replies_dir is None:
        return None
    try:
        ReplyBox(settings.replies_dir).check()
        word_list()  # a changed word list must stop start-up, not fail a source later
        return load_installation_salt(settings.state_dir)
    except RepliesFolderUnusable as err:
        raise StartupRefused(f"{err} (setting replies_dir / SEALDROP_REPLIES_DIR)") from None
    except CodenameError as err:
        raise StartupRefused(f"{err} (setting state_dir / SEALDROP_STATE_DIR)") from None


def _reply_signers(settings: Settings) -> tuple[VerifyKey, ...]:
    """The reviewer's reply-signing public keys; none configured means no reply is shown."""
    if settings.reply_signing_key_file is None:
        logging.getLogger("sealdrop").warning(
            "replies are on but reply_signing_key_file is not set: no reply will be shown "
            "to sources until it names the reviewer's reply-signing.pub (docs/OPERATOR.md, "
            "'Signed replies')"
        )
        return ()
    try:
        return load_signing_public_keys(settings.reply_signing_key_file)
    except KeyFileError as err:
        raise StartupRefused(
            f"{err} (setting reply_signing_key_file / SEALDROP_REPLY_SIGNING_KEY_FILE)"
        ) from None


def _load_keys(settings: Settings) -> list[ReviewerKey]:
    try:
        return load_recipients(settings.public_key_file)
    except KeyFileError as err:
        raise StartupRefused(
            f"{err} (setting public_key_file / SEALDROP_PUBLIC_KEY_FILE / --public-key)"
        ) from None


def _languages(settings: Settings) -> Languages:
    try:
        return Languages.from_tags(settings.languages, settings.page_default_language)
    except UnknownLanguage as err:
        raise StartupRefused(
            f"{err} (settings languages / default_language, SEALDROP_LANGUAGES / "
            "SEALDROP_DEFAULT_LANGUAGE)"
        ) from None
