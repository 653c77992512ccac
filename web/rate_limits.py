"""A Redis-backed limit on refused callback signatures, per client address (issue #19).

Provider callbacks carry no API key, so anyone can post junk to /callbacks/<provider>;
each refused signature costs a verification, a log line and an aggregate row. Past
CALLBACK_AUTH_FAILURE_LIMIT refusals from one client address within a window, that
address's refusals are answered 429 (with Retry-After) instead of 401, and are no longer
logged or aggregated.

The limit is consulted only once a signature has been refused (`on_refused` of
services.callbacks.ingest_callback): a callback whose signature verifies never touches it,
no Redis round trip and no bookkeeping (issue #21, B1). What that costs: an address over
the limit still gets one HMAC check per request before its 429. What it buys besides
speed: a genuine provider behind the same address as an attacker (a shared NAT or proxy)
keeps delivering while the attacker is refused. A Redis outage lets every request
through (answered 401 as usual): storing a genuine callback matters more than refusing
junk.

Counters are fixed windows, one Redis key per address and rate,
`rate-limit/callback-refusals/<amount>/<seconds>/<address>`, counted with INCR; the
window starts at an address's first refusal and the key expires with it. (Flask-Limiter,
used before, counted in `LIMITS:rate-limit/...` keys before every callback; the prefix is
still `rate-limit`, the storage's `LIMITS:` is gone.)

Behind a proxy, TRUSTED_PROXIES says how many set X-Forwarded-For, so the limit keys on
the real client rather than on the proxy (werkzeug's ProxyFix).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from flask import Flask, current_app, request
from limits import parse_many
from werkzeug.exceptions import TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Settings
from domain.callback_auth import SignatureRejected

log = logging.getLogger(__name__)

KEY_PREFIX = "rate-limit"
_EXTENSION = "callback_refusal_limit"


@dataclass(frozen=True)
class _Window:
    amount: int
    seconds: int


class RefusalLimit:
    """Fixed-window counts of refused signatures per client address."""

    def __init__(self, client: redis.Redis, rate: str) -> None:
        self._redis = client
        # "30 per minute" or several, "30 per minute; 200 per hour": each is its own window.
        self._windows = [_Window(item.amount, item.get_expiry()) for item in parse_many(rate)]

    def _key(self, window: _Window, address: str) -> str:
        return f"{KEY_PREFIX}/callback-refusals/{window.amount}/{window.seconds}/{address}"

    def count_refusal(self, address: str) -> int | None:
        """Count one refusal from `address`. Past the limit: the seconds until the address
        may be heard again; else None (also when Redis cannot be reached)."""
        keys = [self._key(window, address) for window in self._windows]
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.incr(key)
                pipe.ttl(key)
            replies = pipe.execute()
            # A new key has no expiry yet (-1); neither has one whose EXPIRE was lost. Only
            # the first refusal of a window pays this second round trip.
            unexpiring = [(key, window) for key, window, ttl
                          in zip(keys, self._windows, replies[1::2], strict=True) if ttl < 0]
            if unexpiring:
                pipe = self._redis.pipeline(transaction=False)
                for key, window in unexpiring:
                    pipe.expire(key, window.seconds)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("callback refusal limit not checked, Redis error: %s", exc)
            return None
        waits = [ttl if ttl > 0 else window.seconds for window, count, ttl
                 in zip(self._windows, replies[0::2], replies[1::2], strict=True)
                 if count > window.amount]
        return max(waits) if waits else None


def install_rate_limits(app: Flask, settings: Settings) -> None:
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    # The app's own Redis client (no connection until the first refusal).
    app.extensions[_EXTENSION] = RefusalLimit(app.extensions["payments"].redis,
                                              settings.callback_auth_failure_limit)


def refuse_past_the_limit(exc: SignatureRejected) -> None:
    """ingest_callback's on_refused: count this refusal against the client's address, and
    raise 429 instead of the 401 once the address is past the limit."""
    limit: RefusalLimit = current_app.extensions[_EXTENSION]
    retry_after = limit.count_refusal(request.remote_addr or "unknown")
    if retry_after is not None:
        raise TooManyRequests(retry_after=retry_after) from exc
