"""The ids every log line carries while they are known: request_id, callback_id,
payment_id (and a task's name and id in workers), kept in a contextvar.

The web sets request_id per request (web/request_context.py); a task enqueued
during the request carries it as a message header and the worker sets it for
the task's run (workers/task_logging.py). Services add the ids they discover
with `bind_log_context`, inside a scope someone else opened (a request, a task,
or `log_context`), so the ids end with that scope.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

_FIELDS: ContextVar[Mapping[str, Any]] = ContextVar(
    "payments_log_fields", default=MappingProxyType({}))


def current_log_context() -> Mapping[str, Any]:
    return _FIELDS.get()


def bind_log_context(**fields: Any) -> None:
    """Add fields to the current scope (None values are ignored)."""
    new = {k: v for k, v in fields.items() if v is not None}
    if new:
        _FIELDS.set({**_FIELDS.get(), **new})


def open_log_scope(**fields: Any) -> Token[Mapping[str, Any]]:
    """A fresh scope with just `fields`; close it with `close_log_scope(token)`."""
    return _FIELDS.set({k: v for k, v in fields.items() if v is not None})


def close_log_scope(token: Token[Mapping[str, Any]] | None) -> None:
    try:
        if token is not None:
            _FIELDS.reset(token)
            return
    except ValueError:  # the token belongs to another context (a different thread)
        pass
    _FIELDS.set({})


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """`with log_context(callback_id=7): ...` - these ids on every line inside."""
    token = _FIELDS.set({**_FIELDS.get(), **{k: v for k, v in fields.items()
                                              if v is not None}})
    try:
        yield
    finally:
        _FIELDS.reset(token)
