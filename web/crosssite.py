"""Refuse a form that another web page sent: a cross-site POST would move a source.

The service has no cookie and no session, so a forged POST carries no credential;
but it can carry a *codename*. A hostile page (no script needed: a form and a
button) that posts its own codename to `/replies` lands a source on the attacker's
replies page, and a follow-up sent from there is filed with the attacker's first
contact. So every state-changing request must come from one of this service's own
pages, and browsers say where a request comes from in two headers:

- ``Sec-Fetch-Site``: ``same-origin`` for our own pages, ``none`` for what the user
  did themselves (the address bar); ``same-site`` or ``cross-site`` for another
  page. Only the first two pass. (Another port of the same host is ``same-site``.)
- ``Origin``: the sending page's scheme, host and port, which must be the Host this
  request came to. ``null`` is what a browser sends for our own forms too, since
  every page says ``Referrer-Policy: no-referrer`` (Fetch: "serializing a request
  origin"), so ``null`` passes only when ``Sec-Fetch-Site`` vouches for the request.

A request with neither header (curl, a script) cannot be a page's forged request and
passes. A refused request gets the calm 403 page, after its body was read and thrown
away like any refusal's (web.errors.refusal_page), so a browser still sending shows it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Request, Response, request

from .errors import FORBIDDEN, refusal_page

# Methods that change nothing: every other one must come from one of our pages.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_TRUSTED_SITES = frozenset({"same-origin", "none"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def register_cross_site_refusal(app: Flask) -> None:
    @app.before_request
    def refuse_cross_site() -> Response | None:
        if request.method in _SAFE_METHODS or sent_by_this_service(request):
            return None
        return refusal_page(FORBIDDEN)


def sent_by_this_service(req: Request) -> bool:
    """False if the browser says another page sent `req` (see the module docstring)."""
    site = req.headers.get("Sec-Fetch-Site")
    origin = req.headers.get("Origin")
    if site is not None and site.strip().lower() not in _TRUSTED_SITES:
        return False
    if origin is None:
        return True
    if origin.strip() == "null":
        return site is not None
    return _same_origin(origin, req.scheme, req.host)


def _same_origin(origin: str, scheme: str, host: str) -> bool:
    """True if `origin` names this scheme and Host header (default ports made explicit)."""
    try:
        theirs = urlsplit(origin.strip())
        ours = urlsplit(f"{scheme}://{host}")
        their_port = theirs.port or _DEFAULT_PORTS.get(theirs.scheme)
        our_port = ours.port or _DEFAULT_PORTS.get(ours.scheme)
    except ValueError:
        return False  # a port that is not a number, a broken IPv6 literal
    if theirs.path or theirs.query or theirs.fragment or theirs.username is not None:
        return False  # an origin is scheme, host and port; anything else is forged
    return (
        theirs.scheme.lower() == ours.scheme.lower()
        and theirs.hostname is not None
        and theirs.hostname == ours.hostname
        and their_port == our_port
    )
