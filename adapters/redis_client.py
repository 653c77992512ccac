"""Redis connections. Short timeouts: a dead Redis must fail fast, not hang a request."""

from __future__ import annotations

import redis


def make_redis(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5,
                                health_check_interval=30)
