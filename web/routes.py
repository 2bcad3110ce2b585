"""The routes: the form, and the upload that seals a submission as it arrives.

No CSRF token, on purpose: a token would need a cookie or server state, one more
thing that could link a source's visits. A forged cross-site POST is refused
instead from the headers browsers send (web.crosssite): with a codename in it, it
could otherwise put a source on someone else's replies page.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, Response, render_template, request

from ..settings import Settings
from ..storage.spool import Spool
from .derivations import DERIVE_AFTER_BYTES
from .errors import SERVICE_UNAVAILABLE, error_page
from .followup import Codenames, register_followup_routes
from .language import current_language
from .refusals import UploadLimits
from .upload import UploadBody, boundary_from


@dataclass(frozen=True)
class PageLimits:
    """What the form tells a source about the limits."""

    max_files: int
    max_message_chars: int
    max_body_bytes: int  # shown in the page's language (web.language.size_text)


def register_routes(
    app: Flask, settings: Settings, spool: Spool, codenames: Codenames | None = None
) -> None:
    """The form and the upload; with `codenames`, also codenames, replies and follow-ups."""
    page_limits = PageLimits(
        max_files=settings.max_files,
        max_message_chars=settings.max_message_chars,
        max_body_bytes=settings.max_body_bytes,
    )
    upload_limits = UploadLimits.from_settings(settings)

    if codenames is not None:
        register_followup_routes(app, settings, spool, codenames, upload_limits, page_limits)

    @app.get("/")
    def index() -> str:
        return render_template("index.html", limits=page_limits, replies=codenames is not None)

    @app.post("/submit")
    def submit() -> Response | str:
        if not settings.accepting:
            return error_page(SERVICE_UNAVAILABLE)
        boundary = boundary_from(request.mimetype, request.mimetype_params)
        with UploadBody(request.stream, boundary, request.content_length, upload_limits) as body:
            codename, source = None, None
            if codenames is not None:
                # Waits for a derivation slot ahead of every other kind, once the body
                # shows it is arriving, and is never refused for lack of one: the body
                # is on its way (web.derivations).
                rank = body.read_ahead(DERIVE_AFTER_BYTES)
                if not body.ends_cut:
                    codename, source = codenames.new_source(rank)
                # An upload that can only be kept cut is never answered with a
                # codename: it is sealed with no reply key and costs no derivation
                # (held bodies that an attacker drops would otherwise each take one).
            with spool.begin(source, current_language().tag) as submission:
                body.seal_into(submission)
                receipt = submission.commit()
        # Only now, with the file fsync'd and renamed, is the source told it arrived.
        return render_template("received.html", receipt=receipt, codename=codename)
