"""Task durations and failures by task name, from Celery's signals."""

from __future__ import annotations

import time
from typing import Any

from celery.signals import task_failure, task_postrun, task_prerun

from adapters.metrics import TASK_DURATION, TASK_FAILURES

_started: dict[str, float] = {}


@task_prerun.connect
def _start_clock(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.monotonic()


@task_postrun.connect
def _observe_duration(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    started = _started.pop(task_id or "", None)
    if started is not None and task is not None:
        TASK_DURATION.labels(task.name).observe(time.monotonic() - started)


@task_failure.connect
def _count_failure(sender: Any = None, **_: Any) -> None:
    if sender is not None:
        TASK_FAILURES.labels(sender.name).inc()
