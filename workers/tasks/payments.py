"""Celery tasks for the payments queue: starting a payment at its provider."""

from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError

from adapters.providers.base import ProviderUnavailable
from services.payment_start import INITIATE_TASK, start_payment_processing
from workers.app import celery
from workers.runtime import resources

log = logging.getLogger(__name__)

# Provider or database trouble is retried with exponential backoff (1 s, 2 s ... 60 s,
# full jitter): at most about three minutes of waits (1+2+...+32+60+60 s), usually half
# that. After that the payment is still processing without a provider payment, and
# maintenance.resend_payment_starts sends a fresh start; nothing is failed for an outage.
MAX_RETRIES = 8


@celery.task(name=INITIATE_TASK, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, autoretry_for=(ProviderUnavailable, OperationalError),
             retry_backoff=True, retry_backoff_max=60, retry_jitter=True,
             max_retries=MAX_RETRIES)
def initiate_payment(payment_id: object) -> str | None:
    """Start a payment at the provider. Safe to run twice: the provider call is idempotent
    per payment and the status change a compare-and-set."""
    if isinstance(payment_id, bool) or not isinstance(payment_id, int):
        log.error("%s: ignoring a message with a non-integer payment id %r",
                  INITIATE_TASK, payment_id)
        return None
    return start_payment_processing(resources(), payment_id)
