"""Database.run_prepared (the callback inbox insert's way to PostgreSQL, B1) on a real
server: durable on return, prepared, a dead connection retried once on a fresh one, and
every driver error raised as SQLAlchemy's DBAPIError, the one kind the callers handle."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from adapters.db import Database, make_engine
from adapters.providers.base import CallbackRequest
from devstack.embedded import free_port
from domain.models import ProviderCallback
from services.callbacks import callback_connector, ingest_callback
from tests.support.callbacks import event_body, signed_headers
from tests.support.factories import make_order, make_payment


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    db = Database(database_url, pool_size=1)
    yield db
    db.dispose()


def _backend_pid(db: Database) -> int:
    return db.run_prepared(lambda conn: conn.info.backend_pid)


def _answer_recording_backend(calls: list[int]) -> Callable[[psycopg.Connection], int]:
    """Work that answers 42 by a prepared statement, noting each backend it ran on."""
    def work(conn: psycopg.Connection) -> int:
        calls.append(conn.info.backend_pid)
        row = conn.execute("SELECT 41 + 1", prepare=True).fetchone()
        assert row is not None
        return int(row[0])
    return work


def _terminate(database_url: str, pid: int) -> None:
    observer = make_engine(database_url, pool_size=1)
    try:
        with observer.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"),
                                {"pid": pid}).scalar_one()
    finally:
        observer.dispose()


def test_a_statement_is_committed_when_it_returns_with_no_transaction_around_it(
        db, database_url):
    pid = _backend_pid(db)
    db.run_prepared(lambda conn: conn.execute("SELECT 'mark-prepared'", prepare=True))
    observer = make_engine(database_url, pool_size=1)
    try:
        with observer.connect() as conn:
            state, query = conn.execute(text(
                "SELECT state, query FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid}).one()
    finally:
        observer.dispose()
    # Idle, not idle in transaction; and no COMMIT (nor ROLLBACK) sent after it.
    assert (state, query) == ("idle", "SELECT 'mark-prepared'")


def test_the_inbox_insert_is_a_prepared_statement_of_its_connection(clean_db):
    payment_id = make_payment(clean_db, make_order(clean_db), status="processing")
    body = event_body(payment_id)
    result = ingest_callback(clean_db, callback_connector(clean_db, "sandbox"),
                             CallbackRequest(headers=signed_headers(body), body=body))
    assert result.callback_id is not None
    prepared = clean_db.db.run_prepared(lambda conn: [row[0] for row in conn.execute(
        "SELECT statement FROM pg_prepared_statements").fetchall()])
    assert any(statement.startswith(f"INSERT INTO {ProviderCallback.__tablename__}")
               for statement in prepared), prepared


def test_a_connection_the_server_dropped_is_replaced_and_the_work_runs_again(
        db, database_url):
    pid = _backend_pid(db)
    _terminate(database_url, pid)
    calls: list[int] = []
    assert db.run_prepared(_answer_recording_backend(calls)) == 42
    assert calls[0] == pid and calls[1] != pid and len(calls) == 2


def test_after_one_dead_connection_the_others_of_the_pool_are_replaced_too(database_url):
    """A restart kills every connection at once: the retry must not meet the next dead one."""
    db = Database(database_url, pool_size=2)
    try:
        pids = db.run_prepared(lambda conn: (conn.info.backend_pid, _backend_pid(db)))
        assert pids[0] != pids[1]  # two connections in the pool
        for pid in pids:
            _terminate(database_url, pid)
        calls: list[int] = []
        assert db.run_prepared(_answer_recording_backend(calls)) == 42
        assert len(calls) == 2 and calls[1] not in pids
    finally:
        db.dispose()


def test_any_other_error_is_raised_once_as_sqlalchemys_and_the_connection_kept(db):
    pid = _backend_pid(db)
    calls = []

    def work(conn: psycopg.Connection) -> None:
        calls.append(1)
        conn.execute("SELECT 1 / 0")

    with pytest.raises(DBAPIError) as raised:
        db.run_prepared(work)
    assert isinstance(raised.value.orig, psycopg.errors.DivisionByZero)
    assert not raised.value.connection_invalidated
    assert calls == [1]  # not retried: the connection was fine
    assert _backend_pid(db) == pid


def test_an_unreachable_server_is_sqlalchemys_error_too():
    db = Database(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    try:
        with pytest.raises(DBAPIError) as raised:
            db.run_prepared(lambda conn: conn.execute("SELECT 1"))
        assert isinstance(raised.value.orig, psycopg.OperationalError)
    finally:
        db.dispose()
