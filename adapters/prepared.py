"""A statement run by psycopg itself, as a prepared statement, on a SQLAlchemy connection
(inside its transaction, if it has one).

For the few statements that run on every payment creation (B5): SQLAlchemy's work around
each execution (its execution context, the cursor's description it asks for, the result
it sets up, the Row it builds) cost more Python than the statement's round trip did. Here
psycopg hands each row straight to the caller's row class.

What SQLAlchemy would have done around the statement still happens, so that nothing
watching the engine can tell the difference:
- the engine's before/after_cursor_execute listeners hear of it (the tests that count a
  creation's statements listen there);
- a database error is raised as SQLAlchemy raises it (OperationalError is what
  web/errors.py answers with a 503), through SQLAlchemy's own handler, which also
  invalidates a connection found dead so that the pool does not hand it out again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import args_row
from sqlalchemy import Connection
from sqlalchemy.orm import Session

T = TypeVar("T")


class Prepared(Generic[T]):
    """SQL with psycopg's `%(name)s` placeholders, and the class each row is made into
    (called with the row's values in the order the statement returns them)."""

    def __init__(self, sql: str, row_class: Callable[..., T]) -> None:
        self.sql = sql
        self.row_factory = args_row(row_class)


def flushed_connection(session: Session) -> Connection:
    """The session's connection, its pending ORM changes flushed first, as session.execute
    would do (autoflush), for statements run here past the session. Free when nothing is
    pending."""
    session.flush()
    return session.connection()


def fetch_one(conn: Connection, statement: Prepared[T], params: Mapping[str, Any]) -> T | None:
    """The statement's first row (None when it returned none), run on `conn`."""
    sql: str = statement.sql
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    cursor = driver.cursor(row_factory=statement.row_factory)
    # As Connection._execute_context fires them; a listener may rewrite both (retval).
    for before in conn.dispatch.before_cursor_execute:
        sql, params = before(conn, cursor, sql, params, None, False)
    try:
        cursor.execute(sql, params, prepare=True)
        row = cursor.fetchone()
    except psycopg.Error as exc:
        # SQLAlchemy's own handler (a private method, hence the <2.2 pin in
        # pyproject.toml): wraps the error, runs handle_error listeners, invalidates a
        # dead connection and the pool's older ones. It always raises.
        conn._handle_dbapi_exception(exc, sql, params, cursor,  # type: ignore[arg-type]
                                     None)  # (psycopg's Cursor is a DBAPI cursor)
    finally:
        cursor.close()
    conn.dispatch.after_cursor_execute(conn, cursor, sql, params, None, False)
    return row
