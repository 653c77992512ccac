"""Sending tasks by name, so the web never imports worker code."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from adapters.log_context import current_log_context
from adapters.metrics import ENQUEUE_FAILURES

# The message header that carries the enqueueing request's id to the worker
# (read back in workers/task_logging.py).
REQUEST_ID_HEADER = "request_id"

log = logging.getLogger(__name__)


class TaskQueue:
    def __init__(self, celery_app: Celery) -> None:
        self._celery = celery_app

    def send(self, task_name: str, *args: Any, countdown: float | None = None) -> bool:
        """Publish; False (logged, counted in payments_enqueue_failures_total) when the
        broker is unreachable. Callers that must not lose the work have stored it first,
        so a sweep sends it again (README, Periodic jobs)."""
        try:
            request_id = current_log_context().get("request_id")
            headers = {REQUEST_ID_HEADER: request_id} if request_id else None
            self._celery.send_task(task_name, args=list(args), headers=headers,
                                   countdown=countdown)
            return True
        except Exception as exc:  # kombu raises several connection error types
            ENQUEUE_FAILURES.labels(task_name).inc()
            log.warning("could not enqueue %s%r: %s", task_name, args, exc)
            return False
