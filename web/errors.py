"""Error pages and error logging that never repeat what a visitor sent.

A page names only the status; the template holds calm text for each one. A log
line for an unexpected failure names only the exception's type and where it was
raised: not the request's path, query, headers or address, not the exception's
message (which can quote input, like a UnicodeDecodeError's bytes) and not the
traceback's source lines or locals.
"""

from __future__ import annotations

import traceback
from types import TracebackType

from flask import Flask, Response, render_template, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import HTTPException

from ..storage.counters import LOST, REFUSED_FULL, FailureCounters
from ..storage.spool import StorageError, StorageFull
from .discard import discard_refused_body
from .refusals import BodyTooSlow, UploadRejected

FORBIDDEN = 403
INSUFFICIENT_STORAGE = 507
SERVICE_UNAVAILABLE = 503


# What gunicorn answers itself, before the app sees a request it cannot parse
# (gunicorn/workers/base.py): 400, 403, 414, 417, 431, 500 and 501.
SERVER_REFUSALS = (400, 403, 414, 417, 431, 500, 501)


def error_page(status: int) -> Response:
    response = Response(render_template("error.html", status=status), status=status)
    return response


def server_refusal_pages(app: Flask) -> dict[int, bytes]:
    """The pages gunicorn writes for requests it cannot parse, rendered once, in the
    deployment's default language (nothing of such a request can be trusted to choose
    another). A 400 or 500 gets our own words for it; the rest, which a browser never
    causes, the generic page with its code (our 403 text is about cross-site forms)."""
    pages = {}
    for status in SERVER_REFUSALS:
        with app.test_request_context("/"):
            generic = status not in (400, 500)
            html = render_template("error.html", status=status, generic=generic)
        pages[status] = html.encode("utf-8")
    return pages


def refusal_page(status: int) -> Response:
    """The error page for a request whose body was not (wholly) read: the rest of the
    body is read and discarded first, so that a browser still sending can show the page;
    if it could not all be read, the answer asks to close the connection."""
    whole = discard_refused_body(request)
    response = error_page(status)
    if not whole:
        response.headers["Connection"] = "close"
    return response


def describe_exception(error: BaseException) -> str:
    """``TypeName at file.py:123 in function``: enough to find the bug, nothing of the input."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return f"{type(error).__qualname__}{where}"


class SealdropFlask(Flask):
    """Flask, with an exception log that carries no request data."""

    def log_exception(
        self,
        exc_info: tuple[type, BaseException, TracebackType] | tuple[None, None, None],
    ) -> None:
        error = exc_info[1]
        if error is None:
            return
        # The route's rule (like "/submit"), not the requested path: the rule is ours.
        rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
        self.logger.error("unexpected %s (route %s)", describe_exception(error), rule)


def register_error_handlers(app: Flask, counters: FailureCounters) -> None:
    """The pages for every refusal. A refusal or failure caused by a request is never
    logged (a timestamped line would date the visit): the spool's are counted, per
    day, for `sealdrop check` (storage/counters.py)."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        response = refusal_page(status) if status == 413 else error_page(status)
        if status == 405:
            # The Allow header lists our own methods, nothing the visitor sent.
            for name, value in error.get_headers():
                if name == "Allow":
                    response.headers[name] = value
        return response

    @app.errorhandler(UploadRejected)
    def upload_rejected(error: UploadRejected) -> Response:
        # The submission was aborted when the error left the route's ``with`` block.
        return refusal_page(error.status)

    @app.errorhandler(BodyTooSlow)
    def body_too_slow(error: BodyTooSlow) -> Response:
        # Nothing of it was kept (web.upload). Reading the rest at the rate that got the
        # body dropped would hold the connection again: answer now, and close.
        response = error_page(error.status)
        response.headers["Connection"] = "close"
        return response

    @app.errorhandler(ParseException)
    def broken_body_framing(error: ParseException) -> Response:
        # gunicorn's chunked-body reader found broken framing (a bad chunk size, a missing
        # CRLF) while the upload read the body: a malformed request, not our failure. The
        # submission was aborted with the ``with`` block; nothing more of the body can be
        # read, so the connection ends with the answer.
        response = error_page(400)
        response.headers["Connection"] = "close"
        return response

    @app.errorhandler(StorageFull)
    def storage_full(error: StorageFull) -> Response:
        counters.add(REFUSED_FULL)
        return refusal_page(INSUFFICIENT_STORAGE)

    @app.errorhandler(StorageError)
    def storage_failed(error: StorageError) -> Response:
        counters.add(LOST)
        return error_page(500)
