"""Celery tasks for the payments queue: starting a payment at its provider."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from adapters.providers.base import ProviderUnavailable
from services.payment_start import INITIATE_TASK, start_payment_processing
from workers.app import celery
from workers.runtime import resources
from workers.task_ids import checked_id

# Provider or database trouble is retried with exponential backoff (1 s, 2 s ... 60 s,
# full jitter): at most about three minutes of waits (1+2+...+32+60+60 s), usually half
# that. After that the payment is still processing without a provider payment, and
# maintenance.resend_payment_starts sends a fresh start; nothing is failed for an outage.
MAX_RETRIES = 8


@celery.task(name=INITIATE_TASK, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, autoretry_for=(ProviderUnavailable, OperationalError),
             retry_backoff=True, retry_backoff_max=60, retry_jitter=True,
             max_retries=MAX_RETRIES)
def initiate_payment(raw_id: object) -> str | None:
    """Start a payment at the provider. Safe to run twice: the provider call is idempotent
    per payment and the status change a compare-and-set."""
    payment_id = checked_id(INITIATE_TASK, raw_id)
    if payment_id is None:
        return None
    return start_payment_processing(resources(), payment_id)
