"""The web application factory: settings in, a ready Flask app out, nothing at import time."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask
from nacl.signing import VerifyKey

from .codename import CodenameError
from .keys import KeyFileError
from .languages import Languages, UnknownLanguage
from .recipients import ReviewerKey, load_recipients
from .settings import Settings
from .signing import load_signing_public_keys
from .storage.counters import FailureCounters
from .storage.replies import RepliesFolderUnusable, ReplyBox
from .storage.spool import Spool, StorageError
from .storage.sweep import Sweeper
from .web.body import READ_SIZE
from .web.crosssite import register_cross_site_refusal
from .web.errors import SealdropFlask, register_error_handlers
from .web.followup import Codenames
from .web.headers import add_security_headers
from .web.idle import register_idle_timeout
from .web.language import missing_catalogs, register_languages
from .web.request import SealingRequest
from .web.routes import register_routes
from .web.static import register_static_files

# Where `serve` finds the app's sweeper, to run it once, in the gunicorn master.
SWEEPER = "sealdrop.sweeper"
# Where `serve` finds the labels of the reviewer keys, to say at start what it seals to.
REVIEWER_KEYS = "sealdrop.reviewer_keys"
# What each worker process runs once its event loop is set up (server.worker).
WORKER_STARTS = "sealdrop.worker_starts"


class StartupRefused(Exception):
    """The service must not start: a reviewer public key or the spool folder is unusable.

    Raised by `create_app`; the message names the setting and the fix.
    """


def create_app(settings: Settings) -> Flask:
    """Check the key and the spool, clear crash leftovers, and build the app."""
    reviewers = _load_keys(settings)
    spool = Spool(
        settings.spool_dir, [r.key for r in reviewers], reserve_bytes=settings.reserve_bytes
    )
    try:
        spool.check()
        spool.remove_stale_parts()
    except StorageError as err:
        raise StartupRefused(f"{err} (setting spool_dir / SEALDROP_SPOOL_DIR / --spool)") from None

    # No Flask static view: web.static answers with nothing that depends on a time.
    app = SealdropFlask("sealdrop", static_folder=None, template_folder="templates")
    app.request_class = SealingRequest
    app.config.update(
        # Enforced by Werkzeug on the declared length and on chunked bodies, in addition
        # to upload.py's own count.
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        # Only reached if something parsed the body as a form, which SealingRequest
        # refuses; set small anyway so that no default could ever apply.
        MAX_FORM_MEMORY_SIZE=READ_SIZE,
        MAX_FORM_PARTS=settings.max_files + 2,
        # Templates change only with a release; no per-request stat of the files.
        TEMPLATES_AUTO_RELOAD=False,
    )
    # No SECRET_KEY, on purpose: without one Flask cannot write a session, so it never
    # sets a cookie.
    register_static_files(app, Path(app.root_path) / "static")
    codenames = _codenames(settings)
    counters = FailureCounters()
    register_routes(app, settings, spool, codenames)
    # After the routes: every one of them is served under each language's prefix too.
    languages = _languages(settings)
    if missing := missing_catalogs(app, languages):
        raise StartupRefused(
            f"the compiled translations for {', '.join(missing)} are not installed (no "
            "translations/<language>/LC_MESSAGES/messages.mo in the package); reinstall "
            "sealdrop, or leave those out of the setting languages / SEALDROP_LANGUAGES"
        )
    register_languages(app, languages)
    register_error_handlers(app, counters)
    app.extensions[REVIEWER_KEYS] = tuple(r.label for r in reviewers)
    app.extensions[WORKER_STARTS] = [codenames.queue.renew_lock] if codenames else []
    app.extensions[SWEEPER] = Sweeper(
        spool,
        settings.sweep_interval_seconds,
        replies=ReplyBox(settings.replies_dir) if codenames and settings.replies_dir else None,
        state_dir=settings.state_dir,
        counters=counters,
    )
    register_idle_timeout(app, settings.body_idle_seconds)
    register_cross_site_refusal(app)
    app.after_request(add_security_headers)
    return app


def _codenames(settings: Settings) -> Codenames | None:
    """Codenames and replies, when both their folders are set: salt made, folder checked."""
    if settings.state_dir is None or settings.replies_dir is None:
        return None
    try:
        ReplyBox(settings.replies_dir).check()
        codenames = Codenames.from_settings(settings)
    except RepliesFolderUnusable as err:
        raise StartupRefused(f"{err} (setting replies_dir / SEALDROP_REPLIES_DIR)") from None
    except CodenameError as err:
        raise StartupRefused(f"{err} (setting state_dir / SEALDROP_STATE_DIR)") from None
    codenames.reply_signers = _reply_signers(settings)
    return codenames


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
