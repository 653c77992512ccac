"""Waking the batch appliers after a callback is stored (services/callback_batches.py).

One Celery message per callback costs more than applying most callbacks, so ingest
sends a wake-up only when none is on its way: a Redis flag (SET NX PX) says one is.
A drain keeps the flag set while it runs and clears it before its last claim, so a
callback committed after that clear sends the next wake-up, and one committed before it
is seen by that claim (services/callback_batches.py, drain_inbox).
"""

from __future__ import annotations

import logging

import redis

from adapters.resources import Resources

log = logging.getLogger(__name__)

APPLY_BATCH_TASK = "callbacks.apply_batch"
WAKE_KEY = "callbacks:apply-wake"
# How long a wake-up that was lost (broker down) can hold back the next one.
WAKE_TTL_MS = 2000


def wake_appliers(res: Resources) -> None:
    """After a callback's commit: make sure a batch will run. One Redis round trip in the
    common case; never raises: the row is stored, and the redelivery sweep finds what a
    lost wake-up leaves behind."""
    try:
        if not res.redis.set(WAKE_KEY, 1, nx=True, px=WAKE_TTL_MS):
            return
    except redis.RedisError as exc:
        log.warning("wake-up flag unavailable (%s); sending the wake-up anyway", exc)
    res.queue.send(APPLY_BATCH_TASK)


def keep_wake_flag(res: Resources) -> None:
    """While a drain runs: the flag set again for WAKE_TTL_MS, so that it does not run out
    under a long drain and let the next callback wake a second drain beside it (two
    drains halve each other's batches; a full batch asks for a second one itself)."""
    try:
        res.redis.set(WAKE_KEY, 1, px=WAKE_TTL_MS)
    except redis.RedisError as exc:
        log.warning("could not keep the wake-up flag: %s", exc)


def clear_wake_flag(res: Resources) -> None:
    """At a batch's start, before it claims."""
    try:
        res.redis.delete(WAKE_KEY)
    except redis.RedisError as exc:
        log.warning("could not clear the wake-up flag: %s", exc)
