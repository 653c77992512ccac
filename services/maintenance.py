"""The maintenance jobs (DESIGN.md §7), as run by beat's tasks and `payments sweep <job>`.

Each entry point takes the job's Redis lock `maintenance-lock:<job>` (one run
at a time, even if two beats run by mistake; the redelivery sweep uses the
callbacks service's own lock), runs until the work is done or its time budget is spent,
logs how many rows it changed and how long it took, and returns a JSON-able
summary such as {"changed": 3, "batches": 1, "complete": true, "seconds": 0.021}.
A second run while one is going returns {"skipped": "already running"}.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from adapters.metrics import SWEEP_COMPLETED
from adapters.resources import Resources
from adapters.run_once import run_once
from services import expiry, resend

log = logging.getLogger(__name__)

# A run stops starting new batches after this; the next tick carries on. It sits
# well inside Celery's task time limit (adapters/celery_app.py).
MAX_RUN_SECONDS = 240
# Longer than the longest run (its budget plus one batch, whose statement is capped
# at expiry.BATCH_STATEMENT_TIMEOUT), so the lock only lapses when its holder died.
LOCK_TTL_SECONDS = MAX_RUN_SECONDS + 60

Summary = dict[str, Any]

# The jobs run by _run_job, by the name their lock, log lines and the sweep metrics use;
# beat sends each as the task "maintenance.<job>".
SWEEP_JOBS = ("expire_payments", "expire_orders", "sync_pending", "resend_refunds",
              "resend_payment_starts", "check_refunds")


def expire_stale_payments(res: Resources, *,
                          batch_size: int = expiry.SWEEP_BATCH_SIZE) -> Summary:
    """init/processing payments past expires_at -> expired (maintenance.expire_payments)."""
    return _run_job(res, "expire_payments", lambda deadline: expiry.expire_due_payments(
        res, batch_size=batch_size, deadline=deadline).as_dict())


def expire_stale_orders(res: Resources, *, batch_size: int = expiry.SWEEP_BATCH_SIZE) -> Summary:
    """pending orders past ORDER_TTL -> expired, their active payments cancelled
    (maintenance.expire_orders)."""
    return _run_job(res, "expire_orders", lambda deadline: expiry.expire_due_orders(
        res, batch_size=batch_size, deadline=deadline).as_dict())


def sync_processing_payments(res: Resources, *,
                             batch_size: int = expiry.SWEEP_BATCH_SIZE) -> Summary:
    """The janitor: processing payments quiet for a minute are asked of their provider;
    paid/failed answers are applied through settlement (maintenance.sync_pending).
    See expiry.provider_status_check.
    """
    return _run_job(res, "sync_pending", lambda deadline: expiry.check_processing_payments(
        res, batch_size=batch_size, deadline=deadline).as_dict())


def resend_lost_refunds(res: Resources, *,
                        older_than_seconds: float = resend.REFUND_QUIET_SECONDS) -> Summary:
    """Refunds still pending and quiet for 10 minutes -> refunds.execute sent again
    (maintenance.resend_refunds). See services/resend.py."""
    return _run_job(res, "resend_refunds", lambda deadline: resend.resend_lost_refunds(
        res, older_than_seconds=older_than_seconds, deadline=deadline).as_dict())


def check_processing_refunds(res: Resources, *,
                             older_than_seconds: float = resend.REFUND_CHECK_QUIET_SECONDS
                             ) -> Summary:
    """Refunds the provider accepted but never confirmed, quiet for 30 minutes ->
    refunds.check, which queries the provider's refund status (maintenance.check_refunds).
    See services/resend.py and services/refunds.check_refund."""
    return _run_job(res, "check_refunds", lambda deadline: resend.check_processing_refunds(
        res, older_than_seconds=older_than_seconds, deadline=deadline).as_dict())


def resend_lost_payment_starts(res: Resources, *,
                               older_than_seconds: float = resend.START_QUIET_SECONDS
                               ) -> Summary:
    """Payments accepted for paying (processing) with no provider payment after 3 minutes
    -> payments.initiate sent again (maintenance.resend_payment_starts)."""
    return _run_job(res, "resend_payment_starts",
                    lambda deadline: resend.resend_lost_payment_starts(
                        res, older_than_seconds=older_than_seconds,
                        deadline=deadline).as_dict())


def purge_idempotency_keys(res: Resources) -> Summary:
    """Idempotency-Key claims older than 24 h deleted (maintenance.purge_idempotency_keys):
    they can no longer be replayed, and their stored answers hold checkout links."""
    from services.idempotency import purge_expired_keys  # noqa: PLC0415

    return _run_job(res, "purge_idempotency_keys", lambda deadline: {
        "changed": purge_expired_keys(res.uow, deadline=deadline)})


def redeliver_stuck_callbacks(res: Resources) -> Summary:
    """Inbox rows still `received` after a minute -> enqueued again.

    The work and its one-run-at-a-time lock belong to the callbacks service
    (services.callbacks.redeliver_stuck, also run by the callbacks' own beat task
    maintenance.redeliver_callbacks); this adds the timing and the log line. A run
    that finds another one going reports {"changed": 0}.
    """
    from services.callbacks import redeliver_stuck  # noqa: PLC0415 - the callbacks' module

    started = time.monotonic()
    sent = redeliver_stuck(res)
    summary: Summary = {"changed": sent, "seconds": round(time.monotonic() - started, 3)}
    log.info("maintenance redeliver_callbacks: enqueued %s callbacks again in %.3f s",
             sent, summary["seconds"])
    return summary


def _run_job(res: Resources, job: str, work: Callable[[float], Summary]) -> Summary:
    def timed() -> Summary:
        started = time.monotonic()
        summary = work(started + MAX_RUN_SECONDS)
        summary["seconds"] = round(time.monotonic() - started, 3)
        SWEEP_COMPLETED.labels(job).set(time.time())  # a skipped run never gets here
        log.info("maintenance %s: changed %s rows in %s batches in %.3f s%s", job,
                 summary.get("changed", 0), summary.get("batches", "?"), summary["seconds"],
                 "" if summary.get("complete", True) else "; stopped at its time budget, "
                 "the next run carries on")
        return summary

    return run_once(res.redis, job, LOCK_TTL_SECONDS, timed)
