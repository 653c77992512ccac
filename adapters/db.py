"""Database engine and the unit of work: one transaction per service call.

The unit of work rolls back on exit unless commit() was called, and runs
after-commit hooks (enqueueing tasks) only once the transaction is durable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.metrics import AFTER_COMMIT_FAILURES

log = logging.getLogger(__name__)


def make_engine(database_url: str, pool_size: int = 5) -> Engine:
    return create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        # A database error's message must not carry the statement's values into the
        # logs (tokens, amounts, callback bodies).
        hide_parameters=True,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


class UnitOfWork:
    """`with uow: ...; uow.commit()`; the session is `uow.session`."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory
        self._after_commit: list[Callable[[], None]] = []
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = self._session_factory()
        self._after_commit = []
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.session.rollback()
        finally:
            self.session.close()

    def commit(self) -> None:
        self.session.commit()
        hooks, self._after_commit = self._after_commit, []
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


class Database:
    """Owns the engine; hands out units of work. Connects lazily, on first use."""

    def __init__(self, database_url: str, pool_size: int = 5) -> None:
        self.engine = make_engine(database_url, pool_size=pool_size)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)

    def dispose(self) -> None:
        self.engine.dispose()
