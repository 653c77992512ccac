"""Database engine and the unit of work: one transaction per service call.

The unit of work rolls back on exit unless commit() was called, and runs
after-commit hooks (enqueueing tasks) only once the transaction is durable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from types import TracebackType
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from adapters.metrics import AFTER_COMMIT_FAILURES
from adapters.pool_health import ping_idle_connections

log = logging.getLogger(__name__)
T = TypeVar("T")

# Tasks asked for deep inside a transaction, by code that has the session but no unit of
# work (services/webhooks/outbox.py: a delivery per event): commit() sends them.
_DEFERRED_TASKS = "deferred_tasks"
TaskSender = Callable[..., bool]


def defer_task(session: Session, task_name: str, *args: Any) -> None:
    """Send `task_name(*args)` once this session's transaction commits (a rollback drops
    it). Only a unit of work given a task sender sends; the work must be stored so that
    a sweep can send it again anyway."""
    session.info.setdefault(_DEFERRED_TASKS, []).append((task_name, args))


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """A SAVEPOINT around the block: an exception rolls back only the block's statements,
    and also forgets what the block asked to do at commit (deferred tasks, counters held
    in session.info), so a rolled-back change is neither sent nor counted."""
    marks = {key: len(value) for key, value in session.info.items() if isinstance(value, list)}
    nested = session.begin_nested()
    try:
        yield
    except BaseException:
        nested.rollback()
        for key, value in list(session.info.items()):
            if isinstance(value, list):
                del value[marks.get(key, 0):]
        raise
    nested.commit()


def make_engine(database_url: str, pool_size: int = 5, *, pre_ping: bool = True,
                autocommit: bool = False) -> Engine:
    """`pre_ping=False` for a caller that retries a statement whose connection turned out
    dead (Database.run_prepared): no ping at all. Otherwise a connection is pinged on
    checkout only after it idled (adapters/pool_health.py: SQLAlchemy's pool_pre_ping, a
    round trip on every checkout, is not used). `autocommit`: every connection of the
    pool is in autocommit from its connect on."""
    engine = create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=10,
        # A database error's message must not carry the statement's values into the
        # logs (tokens, amounts, callback bodies).
        hide_parameters=True,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )
    if pre_ping:
        ping_idle_connections(engine)
    return engine


class UnitOfWork:
    """`with uow: ...; uow.commit()`; the session is `uow.session`."""

    def __init__(self, session_factory: sessionmaker[Session],
                 task_sender: TaskSender | None = None, *,
                 connection: Connection | None = None) -> None:
        self._session_factory = session_factory
        self._task_sender = task_sender
        # A connection the caller checked out and closes (held_connection): the Session
        # begins and commits its transaction there and leaves the connection open.
        self._connection = connection
        self._after_commit: list[Callable[[], None]] = []
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = (self._session_factory() if self._connection is None
                        else self._session_factory(bind=self._connection))
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

    def held_connection(self) -> Connection:
        """A pooled connection outside the unit of work, for the caller to close: for the
        API key lookup, which runs in autocommit without a Session on every request (a
        Session's begin, connection and rollback bookkeeping cost more Python than the
        statement, B5), and may then hand the connection to the request's unit of work
        (`on(conn)`): one pool checkout for both."""
        engine: Engine = self._session_factory.kw["bind"]
        return engine.connect()

    def on(self, connection: Connection) -> UnitOfWork:
        """This unit of work's transaction on `connection`, which the caller closes."""
        return UnitOfWork(self._session_factory, self._task_sender, connection=connection)


@contextmanager
def autocommit_on(conn: Connection) -> Iterator[Connection]:
    """`conn` in autocommit for the block (each statement durable on its own, no BEGIN
    sent), then transactional again, for a unit of work's Session on it. Set on the
    driver itself, not through SQLAlchemy's isolation_level option: that path switched
    the driver's two settings back and forth four times a request, to and fro and again
    at the pool's return (about 4% of a creation's instructions, B5). A block that fails
    invalidates the connection, so that it never goes back to the pool in autocommit."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    driver.autocommit = True
    try:
        yield conn
    except BaseException:
        conn.invalidate()
        raise
    driver.autocommit = False


def _as_dbapi_error(exc: psycopg.Error, *, invalidated: bool) -> DBAPIError:
    """A driver error as SQLAlchemy would have raised it: the callers (the callbacks
    view's 503, the ingest's `not_stored` count) handle SQLAlchemy's errors only."""
    wrapped = DBAPIError.instance(None, None, exc, psycopg.Error, hide_parameters=True,
                                  connection_invalidated=invalidated)
    assert isinstance(wrapped, DBAPIError)
    return wrapped


def _sender(send: TaskSender, name: str, args: tuple[Any, ...]) -> Callable[[], None]:
    def hook() -> None:
        send(name, *args)  # False (logged by the sender) leaves it to the work's sweep
    return hook


class Database:
    """Owns the engine; hands out units of work. Connects lazily, on first use."""

    def __init__(self, database_url: str, pool_size: int = 5) -> None:
        self._url, self._pool_size = database_url, pool_size
        self.engine = make_engine(database_url, pool_size=pool_size)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)

    @cached_property
    def _driver_engine(self) -> Engine:
        """The pool behind run_prepared: autocommit from the connect on (set once per
        connection, never reset), no ping on checkout."""
        return make_engine(self._url, pool_size=self._pool_size, pre_ping=False,
                           autocommit=True)

    def run_prepared(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`work(driver connection)` on a pooled psycopg connection in autocommit: each
        statement is its own transaction, committed when it returns. For the one statement
        that runs on every callback (the inbox insert, B1), where SQLAlchemy's execution
        around it cost more Python than the statement: `work` runs it with psycopg's
        `prepare=True` (parsed and planned once per connection). Without a SQLAlchemy
        Connection at all: for a statement inside a SQLAlchemy transaction there is
        adapters/prepared.fetch_one, which keeps one (B1 measured it 3-5% more CPU per
        callback than this).

        Prepared statements live in the server session, so this needs a direct connection
        to PostgreSQL (or a pooler that keeps them: pgbouncer in transaction mode only
        with max_prepared_statements set). A connection the server had dropped (a
        restart, pg_terminate_backend) fails its first statement; as SQLAlchemy does for
        its own connections, the pool then replaces every connection as old, and the work
        runs once more on a fresh one, so `work` must be safe to run twice (an `INSERT ...
        ON CONFLICT DO NOTHING` is). Any driver error is raised as SQLAlchemy's DBAPIError
        (parameters hidden), the one kind of database failure the callers handle."""
        try:
            return self._run_on_driver(work)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            log.warning("database connection was gone; running the statement again")
        return self._run_on_driver(work)

    def _run_on_driver(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        engine = self._driver_engine
        try:
            pooled = engine.raw_connection()
        except psycopg.Error as exc:  # the server is unreachable: no connection to retry
            raise _as_dbapi_error(exc, invalidated=False) from exc
        driver: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        try:
            result = work(driver)
        except psycopg.Error as exc:
            gone = engine.dialect.is_disconnect(exc, driver, None)  # type: ignore[arg-type]
            if gone:
                # What SQLAlchemy's Connection does on a disconnect: every connection made
                # before now is replaced at its next checkout (they died together), and
                # this one is closed and handed back.
                engine.pool._invalidate(pooled, exc)
            else:
                pooled.close()
            raise _as_dbapi_error(exc, invalidated=gone) from exc
        except BaseException:
            pooled.close()
            raise
        pooled.close()
        return result

    def uow(self, task_sender: TaskSender | None = None) -> UnitOfWork:
        return UnitOfWork(self.session_factory, task_sender)

    def dispose(self) -> None:
        self.engine.dispose()
        if "_driver_engine" in self.__dict__:
            self._driver_engine.dispose()
