"""The pool pings a connection only after it idled (adapters/pool_health.py), on a real
PostgreSQL whose backends are killed under the pool's feet."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from adapters.db import make_engine
from adapters.pool_health import IDLE_PING_SECONDS


@pytest.fixture
def engine(database_url: str):
    engine = make_engine(database_url, pool_size=1)
    yield engine
    engine.dispose()


def _pid_and_mark(engine: Engine, mark: str) -> int:
    """The connection's server pid, its last statement a mark (autocommit: no ROLLBACK
    follows it when the connection goes back to the pool)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        conn.execute(text(f"SELECT '{mark}'"))
    return pid


def _last_query(observer: Engine, pid: int) -> str:
    with observer.connect() as conn:
        return str(conn.execute(text("SELECT query FROM pg_stat_activity WHERE pid = :pid"),
                                {"pid": pid}).scalar_one())


def test_a_connection_used_a_moment_ago_is_not_pinged(engine, database_url):
    observer = make_engine(database_url, pool_size=1)
    try:
        pid = _pid_and_mark(engine, "mark-1")
        with engine.connect():  # checked out again at once: nothing sent before use
            assert _last_query(observer, pid) == "SELECT 'mark-1'"
        time.sleep(IDLE_PING_SECONDS + 0.1)
        with engine.connect():  # idle long enough: pinged on checkout (SQLAlchemy's ping)
            assert _last_query(observer, pid) != "SELECT 'mark-1'"
    finally:
        observer.dispose()


def test_a_dead_connection_idle_for_a_while_is_replaced_unseen(engine, database_url):
    observer = make_engine(database_url, pool_size=1)
    try:
        pid = _pid_and_mark(engine, "mark-2")
        with observer.connect() as conn:  # its server process dies (as in a restart)
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"),
                                {"pid": pid}).scalar_one()
        time.sleep(IDLE_PING_SECONDS + 0.1)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        observer.dispose()


def test_a_dead_connection_used_just_before_fails_once_then_the_pool_recovers(
        engine, database_url):
    """The trade-off the module states: inside IDLE_PING_SECONDS no ping, one error."""
    observer = make_engine(database_url, pool_size=1)
    try:
        pid = _pid_and_mark(engine, "mark-3")
        with observer.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(OperationalError), engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        observer.dispose()
