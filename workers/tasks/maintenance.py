"""Celery tasks for the maintenance queue, sent by beat (beat_schedule.py).

No retries: a failed run is simply the next tick's work, and each run is safe
to repeat. maintenance.redeliver_callbacks lives in workers/tasks/callbacks.py.
The daily reconciliation is the exception: its day comes once, so a provider whose
statement could not be had is tried again with backoff (5 min doubling, 6 times: the
last about 5 h 15 min after the first), for that provider and day only.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from services.maintenance import (
    check_processing_refunds,
    expire_stale_orders,
    expire_stale_payments,
    purge_idempotency_keys,
    resend_lost_payment_starts,
    resend_lost_refunds,
    sync_processing_payments,
)
from services.reconciliation.run import reconcile, reconcile_daily
from workers.app import celery
from workers.runtime import resources
from workers.task_ids import seconds_argument

log = logging.getLogger(__name__)

RECONCILE_RETRY_SECONDS = 300
RECONCILE_MAX_RETRIES = 6


@celery.task(name="maintenance.expire_payments", acks_late=True, ignore_result=True)
def expire_payments() -> None:
    expire_stale_payments(resources())


@celery.task(name="maintenance.expire_orders", acks_late=True, ignore_result=True)
def expire_orders() -> None:
    expire_stale_orders(resources())


@celery.task(name="maintenance.sync_pending", acks_late=True, ignore_result=True)
def sync_pending() -> None:
    sync_processing_payments(resources())


# Beat sends no argument; an operator (or a test) may pass a shorter quiet period.
@celery.task(name="maintenance.resend_refunds", acks_late=True, ignore_result=True)
def resend_refunds(older_than_seconds: object = None) -> None:
    resend_lost_refunds(resources(), **_quiet_period(older_than_seconds))


@celery.task(name="maintenance.resend_payment_starts", acks_late=True, ignore_result=True)
def resend_payment_starts(older_than_seconds: object = None) -> None:
    resend_lost_payment_starts(resources(), **_quiet_period(older_than_seconds))


@celery.task(name="maintenance.check_refunds", acks_late=True, ignore_result=True)
def check_refunds(older_than_seconds: object = None) -> None:
    check_processing_refunds(resources(), **_quiet_period(older_than_seconds))


def _quiet_period(value: object) -> dict[str, float]:
    seconds = seconds_argument(value)
    return {} if seconds is None else {"older_than_seconds": seconds}


@celery.task(name="maintenance.purge_idempotency_keys", acks_late=True, ignore_result=True)
def purge_idempotency_keys_task() -> None:
    purge_idempotency_keys(resources())


@celery.task(name="maintenance.reconcile", bind=True, acks_late=True, ignore_result=True,
             max_retries=RECONCILE_MAX_RETRIES)
def reconcile_statements(self: Any, day: object = None, providers: object = None,
                         retry_seconds: object = None) -> None:
    """Beat sends no argument: yesterday for every routed provider, and the past week's
    days whose run never succeeded. A retry names the day and the providers that failed,
    so it never drifts to another day past midnight. A test may pass a shorter
    `retry_seconds`."""
    the_day = _day_argument(day)
    names = ([str(p) for p in providers] if isinstance(providers, list) and providers
             else None)
    if the_day is None and names is None:
        _, failed = reconcile_daily(resources())
    else:
        _, failed = reconcile(resources(), day=the_day, providers=names)
    if not failed:
        return
    base = seconds_argument(retry_seconds) or RECONCILE_RETRY_SECONDS
    countdown = base * 2 ** self.request.retries
    log.warning("maintenance.reconcile: %s failed; trying again in %.0f s",
                ", ".join(f.provider for f in failed), countdown)
    # One retry per failed day (the tick's catch-up may have failed on several).
    by_day: dict[date, list[str]] = {}
    for failure in failed:
        by_day.setdefault(failure.day, []).append(failure.provider)
    first_day, *other_days = sorted(by_day)
    for other in other_days:
        reconcile_statements.apply_async(
            kwargs={"day": other.isoformat(), "providers": by_day[other],
                    "retry_seconds": retry_seconds}, countdown=countdown)
    raise self.retry(kwargs={"day": first_day.isoformat(), "providers": by_day[first_day],
                             "retry_seconds": retry_seconds},
                     countdown=countdown, exc=failed[0])


def _day_argument(value: object) -> date | None:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            log.error("maintenance.reconcile: ignoring a malformed day %r", value)
    return None
