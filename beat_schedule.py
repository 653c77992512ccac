"""The periodic jobs (DESIGN.md §7): names and intervals from Settings.

Each periodic message expires within its interval, so a backlog built while
workers were down never replays a pile of stale ticks. The daily reconciliation
(issue #17) runs at RECONCILE_AT in RECONCILE_TZ instead; its tick keeps for a few
hours, and a run that fails is retried by its task (workers/tasks/maintenance.py).
"""

from __future__ import annotations

from typing import Any

from adapters.daily_schedule import daily_at
from config import Settings

FIVE_MINUTES = 300
ONE_HOUR = 3600
# A reconciliation tick not taken within this is dropped: the next day's run, or an
# operator's `payments reconcile --date`, covers the day.
RECONCILE_TICK_EXPIRES = 6 * ONE_HOUR


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    sweep = settings.sweep_interval_seconds

    def job(task: str, every: int) -> dict[str, Any]:
        return {"task": task, "schedule": float(every),
                "options": {"expires": float(every), "queue": "maintenance"}}

    schedule = {
        "expire-payments": job("maintenance.expire_payments", sweep),
        "expire-orders": job("maintenance.expire_orders", FIVE_MINUTES),
        "redeliver-callbacks": job("maintenance.redeliver_callbacks", sweep),
        "sync-pending": job("maintenance.sync_pending", FIVE_MINUTES),
        "resend-refunds": job("maintenance.resend_refunds", sweep),
        "resend-payment-starts": job("maintenance.resend_payment_starts", sweep),
        "purge-idempotency-keys": job("maintenance.purge_idempotency_keys", ONE_HOUR),
        "redeliver-webhooks": job("maintenance.redeliver_webhooks", sweep),
        "check-refunds": job("maintenance.check_refunds", FIVE_MINUTES),
        "reconcile": {"task": "maintenance.reconcile",
                      "schedule": daily_at(*settings.reconcile_at, settings.reconcile_tz),
                      "options": {"expires": float(RECONCILE_TICK_EXPIRES),
                                  "queue": "maintenance"}},
    }
    if settings.is_dev:
        # The stand-ins (mounted in dev and test only) keep their retries on our broker;
        # this sends again the ones a Redis that lost its data dropped (standins/resume.py).
        schedule["resume-standin-deliveries"] = {
            "task": "standins.resume_deliveries", "schedule": float(sweep),
            "options": {"expires": float(sweep), "queue": "maintenance"}}
    return schedule
