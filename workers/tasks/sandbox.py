"""The sandbox provider's callback deliveries, on the payments queue.

Id in, one attempt (standins.sandbox.delivery), a retry decision: the service
says when the next attempt is due (the backoff, delay_seconds) and the task
reschedules itself for then. The attempt counter lives in the database row, so
a message redelivered after a worker died neither loses nor repeats the count.
"""

from __future__ import annotations

import logging
import random

from celery import Task

from standins.sandbox.delivery import DELIVER_TASK, attempt_delivery
from workers.app import celery
from workers.runtime import resources
from workers.task_ids import checked_id

log = logging.getLogger(__name__)

# The delivery row bounds real attempts (20); retries here also cover waiting for a
# due time and database hiccups, so the limit only stops a message that loops.
MAX_RETRIES = 200
ERROR_BACKOFF_MAX_SECONDS = 60.0
# A far-off due time (delay_seconds up to an hour) is reached in hops: a message held
# by a worker longer than the broker's visibility timeout would be handed out twice.
MAX_COUNTDOWN_SECONDS = 300.0


@celery.task(name=DELIVER_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, max_retries=MAX_RETRIES)
def deliver_callback(self: Task, raw_id: object) -> str | None:
    delivery_id = checked_id(DELIVER_TASK, raw_id)
    if delivery_id is None:
        return None
    try:
        outcome = attempt_delivery(resources(), delivery_id)
    except Exception as exc:
        if self.request.retries >= MAX_RETRIES:
            log.error("sandbox delivery %s: giving up after %s", delivery_id, exc)
            return None
        countdown = min(ERROR_BACKOFF_MAX_SECONDS, 2 ** min(self.request.retries, 6))
        log.warning("sandbox delivery %s: retrying after %s", delivery_id, exc)
        raise self.retry(exc=exc, countdown=countdown + random.uniform(0, 0.5)) from exc
    if outcome.retry_in is not None:
        raise self.retry(countdown=min(outcome.retry_in, MAX_COUNTDOWN_SECONDS))
    return outcome.state
