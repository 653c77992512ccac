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


def install_security_headers(app: Flask) -> None:
    @app.after_request
    def _add(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response
