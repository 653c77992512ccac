"""The provider doubles' notifications (standins/notifications.py), on the payments queue.

Id in, one attempt, a retry decision: the attempt says when the next is due (the
provider's schedule) and the task reschedules itself for then. A stand-in, not our
service: it runs in dev and test stacks only (the doubles are mounted only there).
"""

from __future__ import annotations

import logging
import random

from celery import Task

from standins.notifications import DELIVER_TASK, attempt_notification
from workers.app import celery
from workers.runtime import resources
from workers.task_ids import checked_id

log = logging.getLogger(__name__)

MAX_RETRIES = 200
ERROR_BACKOFF_MAX_SECONDS = 60.0
# Far-off attempts (WeChat Pay waits up to 6 h) are reached in hops: a message held by a
# worker longer than the broker's visibility timeout would be handed out twice.
MAX_COUNTDOWN_SECONDS = 300.0


@celery.task(name=DELIVER_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, max_retries=MAX_RETRIES)
def deliver_notification(self: Task, raw_id: object) -> str | None:
    notification_id = checked_id(DELIVER_TASK, raw_id)
    if notification_id is None:
        return None
    try:
        outcome = attempt_notification(resources(), notification_id)
    except Exception as exc:
        if self.request.retries >= MAX_RETRIES:
            log.error("notification %s: giving up after %s", notification_id, exc)
            return None
        countdown = min(ERROR_BACKOFF_MAX_SECONDS, 2 ** min(self.request.retries, 6))
        log.warning("notification %s: retrying after %s", notification_id, exc)
        raise self.retry(exc=exc, countdown=countdown + random.uniform(0, 0.5)) from exc
    if outcome.retry_in is not None:
        raise self.retry(countdown=min(outcome.retry_in, MAX_COUNTDOWN_SECONDS))
    return outcome.state
