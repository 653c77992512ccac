"""The stand-ins' deliveries to us, on the payments queue: the sandbox's callbacks
(standins.sandbox.delivery) and the provider doubles' notifications
(standins/notifications.py).

Id in, one attempt, a retry decision: the attempt says when the next is due (the
sandbox's backoff and delay_seconds, a provider's published schedule) and the task
reschedules itself for then. The attempt counter lives in the database row, so a message
redelivered after a worker died neither loses nor repeats the count. Stand-ins, not our
service: they run in dev and test stacks only (where they are mounted).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

from celery import Task

from adapters.resources import Resources
from standins import notifications, resume
from standins.sandbox import delivery
from workers.app import celery
from workers.runtime import resources
from workers.task_ids import checked_id, seconds_argument

log = logging.getLogger(__name__)

# The rows bound real attempts; retries here also cover waiting for a due time and
# database hiccups, so the limit only stops a message that loops.
MAX_RETRIES = 200
ERROR_BACKOFF_MAX_SECONDS = 60.0
# A far-off due time (delay_seconds up to an hour, WeChat Pay's 6 h) is reached in hops: a
# message held by a worker longer than the broker's visibility timeout is handed out twice.
MAX_COUNTDOWN_SECONDS = 300.0


class _Outcome(Protocol):
    state: str
    retry_in: float | None


def _attempt(task: Task, name: str, raw_id: object,
             attempt: Callable[[Resources, int], Any]) -> str | None:
    item_id = checked_id(name, raw_id)
    if item_id is None:
        return None
    try:
        outcome: _Outcome = attempt(resources(), item_id)
    except Exception as exc:
        if task.request.retries >= MAX_RETRIES:
            log.error("%s %s: giving up after %s", name, item_id, exc)
            return None
        countdown = min(ERROR_BACKOFF_MAX_SECONDS, 2 ** min(task.request.retries, 6))
        log.warning("%s %s: retrying after %s", name, item_id, exc)
        raise task.retry(exc=exc, countdown=countdown + random.uniform(0, 0.5)) from exc
    if outcome.retry_in is not None:
        raise task.retry(countdown=min(outcome.retry_in, MAX_COUNTDOWN_SECONDS))
    return outcome.state


@celery.task(name=delivery.DELIVER_TASK, bind=True, acks_late=True,
             reject_on_worker_lost=True, ignore_result=True, max_retries=MAX_RETRIES)
def deliver_callback(self: Task, raw_id: object) -> str | None:
    return _attempt(self, delivery.DELIVER_TASK, raw_id, delivery.attempt_delivery)


@celery.task(name=notifications.DELIVER_TASK, bind=True, acks_late=True,
             reject_on_worker_lost=True, ignore_result=True, max_retries=MAX_RETRIES)
def deliver_notification(self: Task, raw_id: object) -> str | None:
    return _attempt(self, notifications.DELIVER_TASK, raw_id,
                    notifications.attempt_notification)


@celery.task(name=resume.RESUME_TASK, acks_late=True, ignore_result=True)
def resume_deliveries(older_than_seconds: object = None) -> dict[str, int]:
    """Beat's job where the stand-ins run: their deliveries whose message was lost (a Redis
    that lost its data) are sent again. Beat sends no argument; a test may pass an age."""
    age = seconds_argument(older_than_seconds)
    return resume.resume_lost_deliveries(
        resources(), **({} if age is None else {"older_than_seconds": age}))
