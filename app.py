"""The web application factory: settings in, a ready Flask app out, nothing at import time."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from .settings import Settings
from .startup import SWEEPER, Startup, StartupRefused, prepare
from .web.body import READ_SIZE
from .web.crosssite import register_cross_site_refusal
from .web.errors import SealdropFlask, register_error_handlers
from .web.followup import Codenames
from .web.headers import add_security_headers
from .web.idle import register_idle_timeout
from .web.language import register_languages
from .web.request import SealingRequest
from .web.routes import register_routes
from .web.static import register_static_files

__all__ = ["SWEEPER", "StartupRefused", "create_app"]


def create_app(settings: Settings, startup: Startup | None = None) -> Flask:
    """Build the app from what `startup.prepare` checked and prepared (run here if not
    given: StartupRefused names what is wrong)."""
    if startup is None:
        startup = prepare(settings)
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
    codenames = None
    if startup.codename_salt is not None:
        codenames = Codenames.from_settings(settings, startup.codename_salt, startup.reply_signers)
    register_routes(app, settings, startup.spool, codenames)
    # After the routes: every one of them is served under each language's prefix too.
    register_languages(app, startup.languages)
    register_error_handlers(app, startup.counters)
    app.extensions[SWEEPER] = startup.sweeper
    register_idle_timeout(app, settings.body_idle_seconds)
    register_cross_site_refusal(app)
    app.after_request(add_security_headers)
    return app
