"""Celery tasks for the payments queue."""

from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError

from services.payments import INITIATE_TASK, start_payment_processing
from workers.app import celery
from workers.runtime import resources

log = logging.getLogger(__name__)


@celery.task(name=INITIATE_TASK, acks_late=True, ignore_result=True,
             autoretry_for=(OperationalError,), retry_backoff=True, retry_backoff_max=60,
             max_retries=8)
def initiate_payment(payment_id: object) -> None:
    """Start a payment at the provider. Safe to run twice: the service is a compare-and-set."""
    if isinstance(payment_id, bool) or not isinstance(payment_id, int):
        log.error("%s: ignoring a message with a non-integer payment id %r",
                  INITIATE_TASK, payment_id)
        return
    start_payment_processing(resources(), payment_id)
