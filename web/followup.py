"""Codenames on the web: give one out, read replies with one, send a follow-up with one.

No cookie and no session: every request that needs the source's keys carries the
codename itself (typed on the come-back page, then in a hidden field of the
replies page's forms), and the keys are derived again, in memory, for that one
request. A follow-up's codename is the multipart body's FIRST part, so the keys
are known before the first byte of the message is sealed; the rest of the body
streams through web.upload exactly like a first submission.

Why the codename and not the derived mailbox id or key in the hidden fields: the
server would then accept whatever values a request names. Someone who seized the
server sees mailbox ids (reply file names) and could send follow-ups the reviewer
files with that source. Deriving from the codename means only its holder can.

Argon2id costs CPU and memory on purpose, so at most `codename_max_concurrent`
derivations run at once per worker; the others wait in web.derivations' queue, where
uploads go first and are never refused, and a visit to the replies page may get the
calm 429 page when the queue is full or its wait too long.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from flask import Flask, Response, render_template, request
from nacl.signing import VerifyKey

from ..blocking import off_loop
from ..codename import (
    BadCodename,
    SourceKeys,
    derive,
    ending,
    new_codename,
)
from ..codename import normalise as normalise_codename
from ..keys import KdfCost
from ..records.source import FIRST_CONTACT, FOLLOW_UP, SourceIdentity
from ..settings import Settings
from ..storage.replies import ReplyBox
from ..storage.spool import Spool
from ..wipe import zero
from .body import RateFloor, watch_socket_reads
from .derivations import DERIVE_AFTER_BYTES, DerivationQueue, DerivationsBusy, Kind
from .errors import SERVICE_UNAVAILABLE, error_page, refusal_page
from .language import current_language
from .refusals import MalformedUpload, UploadLimits
from .upload import UploadBody, boundary_from

CODENAME_FIELD = "codename"
REPLY_FIELD = "reply"
TOO_MANY_REQUESTS = 429
# A codename is under 100 characters; a small form never needs more than this.
MAX_SMALL_FORM_BYTES = 2048
# A codename is under 100 characters (at most 4 bytes each in UTF-8).
MAX_CODENAME_BYTES = 512


@dataclass
class Codenames:
    """The derivation policy of one app: salt, cost, and the queue for the slots."""

    salt: bytes
    cost: KdfCost
    queue: DerivationQueue
    # The reviewer's reply-signing public keys: only replies one of them signed are shown.
    reply_signers: tuple[VerifyKey, ...] = ()

    @classmethod
    def from_settings(
        cls, settings: Settings, salt: bytes, reply_signers: tuple[VerifyKey, ...] = ()
    ) -> Codenames:
        """With the installation's `salt` (made and checked by startup.prepare)."""
        cost = KdfCost(settings.codename_kdf_passes, settings.codename_kdf_memory)
        queue = DerivationQueue(
            settings.codename_max_concurrent,
            settings.codename_queue_length,
            settings.codename_wait_seconds,
        )
        return cls(salt, cost, queue, reply_signers)

    def derive(self, codename: str, kind: Kind, rank: float = 0.0) -> SourceKeys:
        """Derive once a slot is free (web.derivations: DerivationsBusy only for a visit;
        `rank` orders uploads of a kind)."""
        with self.queue.slot(kind, rank):
            # A quarter of a second of CPU on purpose: never on the event loop.
            return off_loop(derive, codename, self.salt, self.cost)

    def new_source(self, rank: float = 0.0) -> tuple[str, SourceIdentity]:
        """A fresh codename for a first submission, and the identity it stands for."""
        codename = new_codename()
        keys = self.derive(codename, Kind.FIRST_SUBMISSION, rank)
        return codename, SourceIdentity.for_key(FIRST_CONTACT, bytes(keys.reply_public_key))


def register_followup_routes(
    app: Flask,
    settings: Settings,
    spool: Spool,
    codenames: Codenames,
    limits: UploadLimits,
    page_limits: object,
) -> None:
    """The come-back page, the replies page and its two forms (delete, follow-up)."""
    assert settings.replies_dir is not None

    @app.errorhandler(DerivationsBusy)
    def busy(error: DerivationsBusy) -> Response:
        # Only a visit gets here (its small form already read); refusal_page still
        # reads whatever a hand-made request sent after it, so the page is seen.
        return refusal_page(TOO_MANY_REQUESTS)

    box = ReplyBox(settings.replies_dir, codenames.reply_signers)
    _register_replies_pages(app, codenames, box, limits, page_limits)
    _register_follow_up(app, settings, spool, codenames, limits)


def _register_replies_pages(
    app: Flask, codenames: Codenames, box: ReplyBox, limits: UploadLimits, page_limits: object
) -> None:
    """Entering a codename, and the replies it is shown (or deletes)."""

    @app.get("/come-back")
    def come_back() -> str:
        return render_template("come_back.html", problem=False)

    @app.post("/replies")
    def show_replies() -> Response | str:
        typed = _small_form(limits).get(CODENAME_FIELD, "")
        try:
            codename = normalise_codename(typed)
        except BadCodename:
            return Response(render_template("come_back.html", problem=True), status=400)
        return _page(codename, codenames.derive(codename, Kind.VISIT), deleted=False)

    @app.post("/replies/delete")
    def delete_reply() -> Response | str:
        form = _small_form(limits)
        try:
            codename = normalise_codename(form.get(CODENAME_FIELD, ""))
        except BadCodename:
            return Response(render_template("come_back.html", problem=True), status=400)
        keys = codenames.derive(codename, Kind.VISIT)
        box.delete(keys.mailbox, form.get(REPLY_FIELD, ""))
        return _page(codename, keys, deleted=True)

    def _page(codename: str, keys: SourceKeys, *, deleted: bool) -> str:
        shown = box.replies_for(keys.mailbox, keys.reply_key)
        return render_template(
            "replies.html",
            codename=codename,
            codename_ending=ending(codename),
            replies=shown,
            deleted=deleted,
            limits=page_limits,
        )


def _register_follow_up(
    app: Flask, settings: Settings, spool: Spool, codenames: Codenames, limits: UploadLimits
) -> None:
    """A follow-up: the codename is the body's first part, so the source's keys are
    known before the first byte of the message is sealed."""

    @app.post("/follow-up")
    def follow_up() -> Response | str:
        if not settings.accepting:
            return error_page(SERVICE_UNAVAILABLE)
        boundary = boundary_from(request.mimetype, request.mimetype_params)
        with UploadBody(request.stream, boundary, request.content_length, limits) as body:
            codename = _typed_codename(body.first_field(CODENAME_FIELD, MAX_CODENAME_BYTES))
            # Never refused for lack of a slot: the rest of the body is on its way.
            rank = body.read_ahead(DERIVE_AFTER_BYTES)
            keys = codenames.derive(codename, Kind.FOLLOW_UP, rank)
            source = SourceIdentity.for_key(FOLLOW_UP, bytes(keys.reply_public_key))
            with spool.begin(source, current_language().tag) as submission:
                body.seal_into(submission)
                receipt = submission.commit()
        return render_template("received.html", receipt=receipt, follow_up=True)


def _typed_codename(typed: bytearray) -> str:
    """The codename a follow-up sent (its bytes zeroed once read)."""
    try:
        return normalise_codename(typed.decode("utf-8"))
    except (UnicodeDecodeError, BadCodename):
        # The form sends the codename the replies page was shown with: only a
        # hand-made request gets here, and it gets the generic refusal (400, after
        # the rest of the body was read: web.errors, UploadRejected).
        raise MalformedUpload("the follow-up's codename is not valid") from None
    finally:
        zero(typed)


def _small_form(limits: UploadLimits) -> dict[str, str]:
    """Parse a small urlencoded form by hand: request.form is refused (web.request).

    The body is read under the uploads' rate floor: without it a client trickling a
    byte just inside `body_idle_seconds` held the connection for days (a hostile
    review). A form a browser sends arrives at once; one still arriving after a
    window is dropped (the socket reader reports its end: a short form, refused)."""
    if request.mimetype != "application/x-www-form-urlencoded":
        raise MalformedUpload("not a urlencoded form")
    floor = None
    if limits.body_min_rate:
        floor = RateFloor(limits.body_min_rate, limits.body_rate_window)
        watch_socket_reads(request.environ.get("wsgi.input"), floor)
    try:
        body = request.stream.read(MAX_SMALL_FORM_BYTES + 1)
    finally:
        if floor is not None:
            floor.unwatch()
    if len(body) > MAX_SMALL_FORM_BYTES:
        raise MalformedUpload("the form is too large")
    try:
        fields = parse_qs(body.decode("ascii"), max_num_fields=4, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise MalformedUpload("the form is not urlencoded ASCII") from None
    return {name: values[0] for name, values in fields.items() if values}
