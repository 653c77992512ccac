"""Celery tasks for refunds (routed to the payments queue): executing one with its provider."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from adapters.locks import LockBusy
from adapters.providers.base import ProviderUnavailable
from services.refunds import CHECK_TASK, EXECUTE_TASK, check_refund, execute_refund
from workers.app import celery
from workers.runtime import resources
from workers.task_ids import checked_id

# Provider or database trouble is retried with exponential backoff (1 s, 2 s ... capped
# at 5 min, full jitter): at most about 23 minutes of waits (1+2+...+256+3x300 s), about
# 12 on average. After that the refund is still pending, and maintenance.resend_refunds
# sends it again, since money is waiting to go back.
MAX_RETRIES = 12


@celery.task(name=EXECUTE_TASK, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, autoretry_for=(ProviderUnavailable, OperationalError),
             retry_backoff=True, retry_backoff_max=300, retry_jitter=True,
             max_retries=MAX_RETRIES)
def execute(raw_id: object) -> str | None:
    """Ask the provider for a refund. Safe to run twice: the provider is asked with the
    refund's own id and answers a repeat with its first answer."""
    refund_id = checked_id(EXECUTE_TASK, raw_id)
    if refund_id is None:
        return None
    return execute_refund(resources(), refund_id)


# A busy payment lock (its callback being applied right now) is retried like the rest.
@celery.task(name=CHECK_TASK, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True,
             autoretry_for=(ProviderUnavailable, OperationalError, LockBusy),
             retry_backoff=True, retry_backoff_max=300, retry_jitter=True,
             max_retries=MAX_RETRIES)
def check(raw_id: object) -> str | None:
    """Ask the provider how a refund it accepted long ago stands (maintenance.check_refunds
    sends it). Safe to repeat: the question is the idempotent refund request."""
    refund_id = checked_id(CHECK_TASK, raw_id)
    if refund_id is None:
        return None
    return check_refund(resources(), refund_id)
