"""Redis-backed rate limits on what anonymous clients can make us do (Flask-Limiter).

Provider callbacks carry no API key, so anyone can post junk to /callbacks/<provider>;
each refused signature costs a verification, a log line and an aggregate row. Past
CALLBACK_AUTH_FAILURE_LIMIT refusals from one client address, that address gets 429
until the window passes. Only refusals count (a provider's genuine callbacks are never
slowed), and a Redis outage lets every request through: storing a genuine callback
matters more than refusing junk.

Behind a proxy, TRUSTED_PROXIES says how many set X-Forwarded-For, so the limit keys on
the real client rather than on the proxy (werkzeug's ProxyFix).
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Settings

KEY_PREFIX = "rate-limit"


def install_rate_limits(app: Flask, settings: Settings, callbacks_bp: Blueprint) -> Limiter:
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    limiter = Limiter(get_remote_address, app=app, storage_uri=settings.redis_url,
                      key_prefix=KEY_PREFIX, swallow_errors=True,
                      # No X-RateLimit-* headers: reading them back is one more Redis round
                      # trip on every genuine callback (B1); a 429 says Retry-After itself.
                      headers_enabled=False,
                      in_memory_fallback_enabled=False)
    limiter.limit(settings.callback_auth_failure_limit,
                  deduct_when=_refused_signature)(callbacks_bp)
    return limiter


def _refused_signature(response: Response) -> bool:
    return response.status_code == 401
