"""adapters/prepared.py on real PostgreSQL: a statement run by psycopg itself still looks,
to everything around it, like one SQLAlchemy ran: the engine's listeners hear of it, its
errors are SQLAlchemy's (a dead connection's is the 503 of web/errors.py), and a
connection found dead is not handed out again."""

from __future__ import annotations

from typing import NamedTuple

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError

from adapters.prepared import Prepared, fetch_one
from adapters.resources import Resources
from tests.support.factories import make_order


class _Pair(NamedTuple):
    number: int
    word: str


_PAIR = Prepared("SELECT %(number)s::int, %(word)s::text", _Pair)
_NOTHING = Prepared("SELECT 1 WHERE false", _Pair)
_ORDER = Prepared("SELECT id FROM orders WHERE id = %(order_id)s", int)


def _terminate_backend(res: Resources, pid: int) -> None:
    with res.db.engine.connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_a_row_is_made_into_its_class_and_no_row_is_none(resources):
    with resources.db.engine.connect() as conn:
        assert fetch_one(conn, _PAIR, {"number": 7, "word": "seven"}) == _Pair(7, "seven")
        assert fetch_one(conn, _NOTHING, {}) is None


def test_it_runs_in_the_connections_transaction(clean_db):
    order_id = make_order(clean_db)
    with clean_db.uow() as uow:
        uow.session.execute(text("DELETE FROM orders WHERE id = :id"), {"id": order_id})
        # The delete is not committed: only this transaction sees the order gone.
        assert fetch_one(uow.session.connection(), _ORDER, {"order_id": order_id}) is None
    with clean_db.db.engine.connect() as conn:
        assert fetch_one(conn, _ORDER, {"order_id": order_id}) == order_id


def test_the_engines_listeners_hear_of_it(resources):
    heard: list[tuple[str, str]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        heard.append(("before", statement))

    def after(conn, cursor, statement, parameters, context, executemany):
        heard.append(("after", statement))

    event.listen(resources.db.engine, "before_cursor_execute", before)
    event.listen(resources.db.engine, "after_cursor_execute", after)
    try:
        with resources.db.engine.connect() as conn:
            fetch_one(conn, _PAIR, {"number": 1, "word": "one"})
    finally:
        event.remove(resources.db.engine, "before_cursor_execute", before)
        event.remove(resources.db.engine, "after_cursor_execute", after)
    assert heard == [("before", _PAIR.sql), ("after", _PAIR.sql)]


def test_a_statement_error_is_sqlalchemys_and_the_transaction_can_roll_back(clean_db):
    duplicate = Prepared("INSERT INTO orders (id, order_number, user_id, total_amount, "
                         "currency, status) SELECT id, order_number, user_id, total_amount,"
                         " currency, status FROM orders LIMIT 1 RETURNING id", int)
    make_order(clean_db)
    with clean_db.db.engine.connect() as conn:
        with pytest.raises(IntegrityError) as raised:
            fetch_one(conn, duplicate, {})
        assert isinstance(raised.value.orig, psycopg.errors.UniqueViolation)
        assert not conn.invalidated
        conn.rollback()
        assert fetch_one(conn, _PAIR, {"number": 2, "word": "two"}) == _Pair(2, "two")


def test_a_dead_connection_is_operational_error_and_invalidated(settings):
    res = Resources(settings, db_pool_size=1)
    try:
        with res.db.engine.connect() as conn:
            pid = conn.connection.driver_connection.info.backend_pid
            _terminate_backend(res, pid)
            with pytest.raises(OperationalError) as raised:
                fetch_one(conn, _PAIR, {"number": 3, "word": "three"})
            assert raised.value.connection_invalidated and conn.invalidated
        with res.db.engine.connect() as conn:  # the pool's only connection: a new one
            assert conn.connection.driver_connection.info.backend_pid != pid
            assert fetch_one(conn, _PAIR, {"number": 4, "word": "four"}) == _Pair(4, "four")
    finally:
        res.close()


def test_a_creation_whose_connection_dies_is_503_and_the_next_one_is_created(
        api, make_user_key, resources, clean_db):
    client = api.as_key(make_user_key(1))
    doomed, next_order = make_order(clean_db, user_id=1), make_order(clean_db, user_id=1)

    def kill_at_the_lock(conn, cursor, statement, *_):
        if "FROM orders" in statement and "FOR UPDATE" in statement:
            _terminate_backend(resources, conn.connection.driver_connection.info.backend_pid)

    event.listen(resources.db.engine, "before_cursor_execute", kill_at_the_lock)
    try:
        refused = client.post("/api/v1/payments", json={"order_id": doomed})
    finally:
        event.remove(resources.db.engine, "before_cursor_execute", kill_at_the_lock)

    assert refused.status_code == 503
    assert refused.json()["code"] == "database_unavailable"
    created = client.post("/api/v1/payments", json={"order_id": next_order})
    assert created.status_code == 201
    assert client.post("/api/v1/payments", json={"order_id": doomed}).status_code == 201
