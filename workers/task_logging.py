"""Worker logs: JSON lines (adapters/logging_setup.py) instead of Celery's own format,
and for each task's run a log context with the task's name and id, the request id
it was enqueued under (a message header set by adapters/task_queue.py) and the id
it is about (callback_id, payment_id, ...), so every line of that run carries them.
"""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging, task_postrun, task_prerun

from adapters.log_context import close_log_scope, open_log_scope
from adapters.logging_setup import configure_json_logging
from adapters.task_queue import REQUEST_ID_HEADER
from domain.ids import is_int
from services.callbacks import PROCESS_TASK
from services.payment_start import INITIATE_TASK
from services.refunds import EXECUTE_TASK
from standins.sandbox.delivery import DELIVER_TASK

# What the first argument of these tasks is the id of.
ID_ARGUMENT = {
    PROCESS_TASK: "callback_id",
    INITIATE_TASK: "payment_id",
    EXECUTE_TASK: "refund_id",
    DELIVER_TASK: "sandbox_delivery_id",
}

_scopes: dict[str, Any] = {}


@setup_logging.connect
def _json_logs(loglevel: int | str | None = None, **_: Any) -> None:
    """Connected, this replaces Celery's logging set-up (worker and beat)."""
    configure_json_logging(loglevel or "INFO")


@task_prerun.connect
def _open_task_scope(task_id: str | None = None, task: Any = None,
                     args: Any = None, **_: Any) -> None:
    if not task_id or task is None:
        return
    fields: dict[str, Any] = {"task": task.name, "task_id": task_id,
                              "request_id": _request_id(task.request)}
    id_name = ID_ARGUMENT.get(task.name)
    if id_name and args and is_int(args[0]):
        fields[id_name] = args[0]
    _scopes[task_id] = open_log_scope(**fields)


@task_postrun.connect
def _close_task_scope(task_id: str | None = None, **_: Any) -> None:
    if task_id and task_id in _scopes:
        close_log_scope(_scopes.pop(task_id))


def _request_id(request: Any) -> str | None:
    value = getattr(request, REQUEST_ID_HEADER, None)
    if not value:
        value = (getattr(request, "headers", None) or {}).get(REQUEST_ID_HEADER)
    return str(value)[:128] if value else None
