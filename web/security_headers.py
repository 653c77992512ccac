"""Security headers on every answer, HTML and JSON alike.

The pages (cashier, docs, the stand-ins' pages) load nothing but their own static files,
so `default-src 'self'` costs nothing and stops injected script and style; nothing of
ours may be framed (clickjacking of the Pay button), and browsers must not guess types
or leak the checkout link's token in a Referer.
"""

from __future__ import annotations

from flask import Flask, Response

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
}


# Header names compare without case; lowered once here, not on every answer.
_BY_LOWER_NAME = tuple((name.lower(), name, value) for name, value in HEADERS.items())


def install_security_headers(app: Flask) -> None:
    app.after_request(_add)


def _add(response: Response) -> Response:
    """Each header unless the view set its own (the cashier page sets two). One pass over
    the answer's headers: setdefault, per header, looked through them twice (B1)."""
    headers = response.headers
    present = {name.lower() for name, _ in headers}
    for lower, name, value in _BY_LOWER_NAME:
        if lower not in present:
            headers.add(name, value)
    return response
