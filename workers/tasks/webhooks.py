"""Merchant webhook deliveries (queue `webhooks`) and the sweep that re-sends lost ones.

Id in, one attempt (services/webhooks/delivery.py), a retry decision: the attempt says
when the next is due (WEBHOOK_RETRY_SCHEDULE_SECONDS) and the task reschedules itself
for then when that is near. A far-off retry (the schedule runs to a day) is not held
as a countdown message (held longer than the broker's visibility timeout, it would be
handed out twice): the beat sweep sends it when it is due. The attempt counter lives
in the delivery row, so a message redelivered after a worker died neither loses nor
repeats an attempt's count.
"""

from __future__ import annotations

import logging
import random

from celery import Task

from services.webhooks.delivery import (
    REDELIVER_AFTER_SECONDS,
    REDELIVER_TASK,
    attempt_delivery,
    redeliver_lost,
)
from services.webhooks.outbox import DELIVER_TASK
from workers.app import celery
from workers.runtime import resources

log = logging.getLogger(__name__)

MAX_RETRIES = 50  # database hiccups and near retries; the row bounds real attempts
ERROR_BACKOFF_MAX_SECONDS = 60.0
MAX_COUNTDOWN_SECONDS = 300.0
# The 10 s POST timeout, with room for the claim and the record around it.
DELIVER_SOFT_TIME_LIMIT_SECONDS = 45
DELIVER_TIME_LIMIT_SECONDS = 60


@celery.task(name=DELIVER_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, max_retries=MAX_RETRIES,
             soft_time_limit=DELIVER_SOFT_TIME_LIMIT_SECONDS,
             time_limit=DELIVER_TIME_LIMIT_SECONDS)
def deliver(self: Task, delivery_id: object) -> str | None:
    if isinstance(delivery_id, bool) or not isinstance(delivery_id, int):
        log.error("%s: ignoring a message with a non-integer id %r", DELIVER_TASK, delivery_id)
        return None
    try:
        outcome = attempt_delivery(resources(), delivery_id)
    except Exception as exc:
        if self.request.retries >= MAX_RETRIES:
            log.error("webhook delivery %s: giving up on this message after %s; the sweep "
                      "sends it again", delivery_id, exc)
            return None
        countdown = min(ERROR_BACKOFF_MAX_SECONDS, 2 ** min(self.request.retries, 6))
        log.warning("webhook delivery %s: retrying after %s", delivery_id, exc)
        raise self.retry(exc=exc, countdown=countdown + random.uniform(0, 0.5)) from exc
    if outcome.retry_in is not None and outcome.retry_in <= MAX_COUNTDOWN_SECONDS:
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return outcome.state


@celery.task(name=REDELIVER_TASK, acks_late=True, ignore_result=True)
def redeliver_webhooks(older_than_seconds: object = None) -> int:
    """The beat job: pending deliveries overdue by a minute are sent again.

    Beat sends no argument; an operator (or a test) may pass a shorter age."""
    age = float(REDELIVER_AFTER_SECONDS)
    if isinstance(older_than_seconds, int | float) and not isinstance(older_than_seconds, bool):
        age = max(float(older_than_seconds), 0.0)
    return redeliver_lost(resources(), older_than_seconds=age)
