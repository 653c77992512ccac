"""Celery tasks for the maintenance queue, sent by beat (beat_schedule.py).

No retries: a failed run is simply the next tick's work, and each run is safe
to repeat. maintenance.redeliver_callbacks lives in workers/tasks/callbacks.py.
"""

from __future__ import annotations

from services.maintenance import (
    check_processing_refunds,
    expire_stale_orders,
    expire_stale_payments,
    purge_idempotency_keys,
    resend_lost_payment_starts,
    resend_lost_refunds,
    sync_processing_payments,
)
from workers.app import celery
from workers.runtime import resources
from workers.task_ids import seconds_argument


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
