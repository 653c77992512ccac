"""Redis locks (redis-py's Lock): a random token per holder, released only by that holder.

A lock here is an optimisation in front of the database's compare-and-set, never
the guarantee: it keeps two workers from doing the same work at once, and the
TTL is above the longest a holder can run, so a holder that dies frees the
lock by expiry instead of blocking forever.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping
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


# Many locks in one command each way (a pipeline of a command per lock cost more in
# redis-py's packing than the round trip saved; issue #21, B3). Sent as EVALSHA once
# Redis has the script. The keys need not share a hash slot: no Redis Cluster here.
_TAKE_EACH = """
local taken = {}
for i, key in ipairs(KEYS) do
    taken[i] = redis.call('set', key, ARGV[i], 'NX', 'PX', ARGV[#KEYS + 1]) and 1 or 0
end
return taken
"""
# The same token-checked delete as redis-py's Lock.release, for each lock.
_RELEASE_EACH_IF_OURS = """
local released = 0
for i, key in ipairs(KEYS) do
    if redis.call('get', key) == ARGV[i] then released = released + redis.call('del', key) end
end
return released
"""


def acquire_many(client: redis.Redis, names: Iterable[str], *,
                 ttl_seconds: float) -> dict[str, str]:
    """Try every lock at once, without waiting (SET NX PX each, in one script: one round
    trip): {name: token} of those taken; a busy one is simply not in it. Held locks are
    compatible with redis_lock's (same keys, a random token as the value)."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return {}
    tokens = [uuid.uuid4().hex for _ in wanted]
    taken = client.register_script(_TAKE_EACH)(
        keys=wanted, args=[*tokens, int(ttl_seconds * 1000)])
    return {name: token for name, token, ok in zip(wanted, tokens, taken, strict=True) if ok}


def release_many(client: redis.Redis, held: Mapping[str, str]) -> None:
    """Release what acquire_many took, each only if still ours (one round trip). Best
    effort: the work is committed (or rolled back) already, and the TTL frees the rest."""
    if not held:
        return
    try:
        released = client.register_script(_RELEASE_EACH_IF_OURS)(
            keys=list(held), args=list(held.values()))
    except redis.RedisError as exc:
        log.warning("could not release %d locks: %s", len(held), exc)
        return
    expired = len(held) - int(released)
    if expired:
        log.warning("%d locks expired before their holder finished", expired)
