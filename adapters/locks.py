"""Redis locks (redis-py's Lock): a random token per holder, released only by that holder.

A lock here is an optimisation in front of the database's compare-and-set, never
the guarantee: it keeps two workers from doing the same work at once, and the
TTL is above the longest a holder can run, so a holder that dies frees the
lock by expiry instead of blocking forever.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError, LockNotOwnedError

log = logging.getLogger(__name__)


class LockBusy(Exception):
    """Someone else holds the lock; try again later."""

    def __init__(self, name: str) -> None:
        super().__init__(f"lock {name} is held by another worker")
        self.name = name


def payment_lock_name(payment_id: int) -> str:
    return f"payment-lock:{payment_id}"


@contextmanager
def redis_lock(client: redis.Redis, name: str, *, ttl_seconds: float,
               blocking_timeout: float) -> Iterator[None]:
    """Hold `name` for the block; LockBusy if it cannot be had within blocking_timeout.

    The release is token-checked (a Lua script in redis-py): a holder whose TTL ran
    out cannot delete a lock that a newer holder took meanwhile.
    """
    lock = client.lock(name, timeout=ttl_seconds, blocking=blocking_timeout > 0,
                       blocking_timeout=blocking_timeout or None, sleep=0.05,
                       thread_local=False)
    if not lock.acquire():
        raise LockBusy(name)
    try:
        yield
    finally:
        try:
            lock.release()
        except LockNotOwnedError:
            log.warning("lock %s expired before its holder finished", name)
        except (LockError, redis.RedisError) as exc:
            # The work is done (and committed); the TTL frees the lock.
            log.warning("could not release lock %s: %s", name, exc)


@contextmanager
def payment_lock(client: redis.Redis, payment_id: int, *, ttl_seconds: float,
                 blocking_timeout: float) -> Iterator[None]:
    with redis_lock(client, payment_lock_name(payment_id), ttl_seconds=ttl_seconds,
                    blocking_timeout=blocking_timeout):
        yield
