"""The security and privacy headers every response carries, set in one place."""

from __future__ import annotations

from flask import Response

# No script at all: the pages work with JavaScript off (Tor Browser "Safest").
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "ambient-light-sensor",
        "autoplay",
        "battery",
        "camera",
        "display-capture",
        "document-domain",
        "encrypted-media",
        "fullscreen",
        "geolocation",
        "gyroscope",
        "interest-cohort",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "picture-in-picture",
        "publickey-credentials-get",
        "screen-wake-lock",
        "serial",
        "sync-xhr",
        "usb",
        "xr-spatial-tracking",
    )
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": PERMISSIONS_POLICY,
    # Nothing a source saw may stay in the browser's cache (a receipt page above all).
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}

# Headers that could tell a visitor's browser, or an observer, more than it needs.
_REMOVED = ("Server", "X-Powered-By", "Last-Modified", "ETag")


def add_security_headers(response: Response) -> Response:
    """`after_request` hook: set the policy headers, drop revealing ones."""
    for name in _REMOVED:
        response.headers.pop(name, None)
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    # no-store already forbids caching; Pragma covers HTTP/1.0 caches in between.
    response.headers["Pragma"] = "no-cache"
    return response
