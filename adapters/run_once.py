"""One run of a job at a time, across processes and machines: `maintenance-lock:<job>`.

Two beats started by mistake, or a beat tick and an operator's `payments sweep`,
must not do the same job side by side. The lock is adapters.locks.redis_lock
taken without waiting: a random token per holder, a TTL, and a token-checked
release, so a run that outlived its TTL cannot delete the lock of the run after it.

The lock is an optimisation: every job is also safe when two runs do overlap
(the SQL skips rows another transaction holds and re-checks statuses), which
is what the TTL relies on when a crashed run leaves its lock behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from adapters.locks import LockBusy, redis_lock

log = logging.getLogger(__name__)

KEY_PREFIX = "maintenance-lock:"
SKIPPED = {"skipped": "already running"}


def lock_key(job: str) -> str:
    return KEY_PREFIX + job


def run_once(client: redis.Redis, job: str, ttl_seconds: int,
             work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`work()`'s result, or {"skipped": "already running"} while another run holds the job.

    `ttl_seconds` must exceed the job's longest run: the lock then only lapses
    on its own when its holder died.
    """
    key = lock_key(job)
    try:
        with redis_lock(client, key, ttl_seconds=ttl_seconds, blocking_timeout=0):
            return work()
    except LockBusy as busy:
        if busy.name != key:  # raised by the work itself, about some other lock
            raise
        log.info("maintenance %s: skipped, another run holds %s", job, key)
        return dict(SKIPPED)
