"""Celery tasks for the callbacks queue (and the redelivery sweep that feeds it).

Ids in, one service call, a retry decision. The service is safe to run any
number of times for one callback (the inbox row is settled under a row lock and
a compare-and-set), which is what makes acks_late + reject_on_worker_lost safe:
a worker killed mid-task has its message delivered again, never lost.
"""

from __future__ import annotations

import logging
import random

from celery import Task

from adapters.locks import LockBusy
from services.callback_batches import BATCH_BUDGET_SECONDS, DRAIN_BUDGET_SECONDS, drain_inbox
from services.callback_wakeup import APPLY_BATCH_TASK
from services.callbacks import (
    PROCESS_SOFT_TIME_LIMIT_SECONDS,
    PROCESS_TASK,
    PROCESS_TIME_LIMIT_SECONDS,
    REDELIVER_AFTER_SECONDS,
    redeliver_stuck,
)
from services.callbacks import process_callback as process_stored_callback
from workers.app import celery
from workers.runtime import resources
from workers.task_ids import checked_id, seconds_argument

log = logging.getLogger(__name__)

REDELIVER_TASK = "maintenance.redeliver_callbacks"
# Retries cover a busy lock and transient failures (database or Redis hiccups). When
# they run out the inbox row is still `received`, so the redelivery sweep sends it
# again later; a callback that keeps failing is stopped by the attempt counter.
MAX_RETRIES = 12
MAX_BACKOFF_SECONDS = 30.0


def backoff_seconds(retries: int) -> float:
    """0.5 s, 1 s, 2 s ... capped at 30 s, with jitter so retries do not move in step."""
    return min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** retries) + random.uniform(0, 0.5)


@celery.task(name=PROCESS_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, max_retries=MAX_RETRIES,
             soft_time_limit=PROCESS_SOFT_TIME_LIMIT_SECONDS,
             time_limit=PROCESS_TIME_LIMIT_SECONDS)
def process_callback(self: Task, raw_id: object) -> str | None:
    callback_id = checked_id(PROCESS_TASK, raw_id)
    if callback_id is None:
        return None
    try:
        return process_stored_callback(resources(), callback_id)
    except Exception as exc:
        if self.request.retries >= MAX_RETRIES:
            log.error("callback %s: retries exhausted (%s); the redelivery sweep will send "
                      "it again", callback_id, exc)
            return None
        level = logging.INFO if isinstance(exc, LockBusy) else logging.WARNING
        log.log(level, "callback %s: retrying after %s", callback_id, exc)
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc


# A drain starts no batch past its budget, and a batch takes no callback past its own.
DRAIN_LIMIT_SECONDS = DRAIN_BUDGET_SECONDS + BATCH_BUDGET_SECONDS


@celery.task(name=APPLY_BATCH_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, max_retries=MAX_RETRIES,
             soft_time_limit=DRAIN_LIMIT_SECONDS + PROCESS_SOFT_TIME_LIMIT_SECONDS,
             time_limit=DRAIN_LIMIT_SECONDS + PROCESS_TIME_LIMIT_SECONDS)
def apply_batch(self: Task) -> dict[str, object] | None:
    """A wake-up: apply the callbacks waiting in the inbox, a batch at a time
    (services/callback_batches.py). No arguments: which rows is the inbox's to say."""
    try:
        return drain_inbox(resources()).summary()
    except Exception as exc:
        if self.request.retries >= MAX_RETRIES:
            log.error("callback batch: retries exhausted (%s); the redelivery sweep sends "
                      "what waits", exc)
            return None
        log.warning("callback batch: retrying after %s", exc)
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc


@celery.task(name=REDELIVER_TASK, acks_late=True, ignore_result=True)
def redeliver_callbacks(older_than_seconds: object = None) -> int:
    """The beat job: inbox rows still `received` after a minute are enqueued again.

    Beat sends no argument; an operator (or a test) may pass a shorter age."""
    age = seconds_argument(older_than_seconds)
    return redeliver_stuck(resources(), older_than_seconds=(
        float(REDELIVER_AFTER_SECONDS) if age is None else age))
