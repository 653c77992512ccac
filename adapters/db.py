"""Database engine and the unit of work: one transaction per service call.

The unit of work rolls back on exit unless commit() was called, and runs
after-commit hooks (enqueueing tasks) only once the transaction is durable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.metrics import AFTER_COMMIT_FAILURES
from adapters.pool_health import ping_idle_connections

log = logging.getLogger(__name__)

# Tasks asked for deep inside a transaction, by code that has the session but no unit of
# work (services/webhooks/outbox.py: a delivery per event): commit() sends them.
_DEFERRED_TASKS = "deferred_tasks"
TaskSender = Callable[..., bool]


def defer_task(session: Session, task_name: str, *args: Any) -> None:
    """Send `task_name(*args)` once this session's transaction commits (a rollback drops
    it). Only a unit of work given a task sender sends; the work must be stored so that
    a sweep can send it again anyway."""
    session.info.setdefault(_DEFERRED_TASKS, []).append((task_name, args))


def make_engine(database_url: str, pool_size: int = 5) -> Engine:
    engine = create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=10,
        # Not pool_pre_ping: it pings on every checkout; ours only after idling (why:
        # adapters/pool_health.py).
        # A database error's message must not carry the statement's values into the
        # logs (tokens, amounts, callback bodies).
        hide_parameters=True,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )
    ping_idle_connections(engine)
    return engine


class UnitOfWork:
    """`with uow: ...; uow.commit()`; the session is `uow.session`."""

    def __init__(self, session_factory: sessionmaker[Session],
                 task_sender: TaskSender | None = None) -> None:
        self._session_factory = session_factory
        self._task_sender = task_sender
        self._after_commit: list[Callable[[], None]] = []
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = self._session_factory()
        self._after_commit = []
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.session.info.pop(_DEFERRED_TASKS, None)
            self.session.rollback()
        finally:
            self.session.close()

    def commit(self) -> None:
        tasks = self.session.info.pop(_DEFERRED_TASKS, [])
        self.session.commit()
        hooks, self._after_commit = self._after_commit, []
        if self._task_sender is not None:
            hooks += [_sender(self._task_sender, name, args) for name, args in tasks]
        for hook in hooks:
            try:
                hook()
            except Exception:
                # The data is committed whatever a hook does; the hooks send tasks, whose
                # lost messages the sweeps send again (README, Periodic jobs). Counted, so
                # that hooks failing is seen, not only logged.
                AFTER_COMMIT_FAILURES.inc()
                log.exception("after-commit hook failed")

    def after_commit(self, hook: Callable[[], None]) -> None:
        self._after_commit.append(hook)


def _sender(send: TaskSender, name: str, args: tuple[Any, ...]) -> Callable[[], None]:
    def hook() -> None:
        send(name, *args)  # False (logged by the sender) leaves it to the work's sweep
    return hook


class Database:
    """Owns the engine; hands out units of work. Connects lazily, on first use."""

    def __init__(self, database_url: str, pool_size: int = 5) -> None:
        self.engine = make_engine(database_url, pool_size=pool_size)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)

    def uow(self, task_sender: TaskSender | None = None) -> UnitOfWork:
        return UnitOfWork(self.session_factory, task_sender)

    def dispose(self) -> None:
        self.engine.dispose()
