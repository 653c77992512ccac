"""A single merchant event's statement is planned once per connection, not per event.

The outbox statement builds the object's view in SQL (an order's: its totals and history,
in subqueries); PostgreSQL takes ~0.5 ms to plan it. A settlement writes its events one
object at a time, so the statement for one object must reach PostgreSQL's cached generic
plan (services/webhooks/outbox.py, _statement): with `id = ANY(:ids)` an order's never did.
pg_prepared_statements counts, per prepared statement of this connection, how many times
each kind of plan was used.
"""

from __future__ import annotations

from sqlalchemy import text

from domain.webhooks import EventType
from services.webhooks.outbox import record_event, record_events
from tests.support.factories import make_order, make_payment

WRITES = 20  # psycopg prepares a statement at its 5th run; PostgreSQL tries 5 custom plans


def plans_of_order_event_inserts(session) -> list[tuple[int, int]]:
    """This connection's prepared statements of one order's event. Only those: the pooled
    connection may hold other event statements from earlier tests (psycopg prepares the
    outbox's at their first run), another object's or a batch's."""
    return [(int(r.generic_plans), int(r.custom_plans)) for r in session.execute(text(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE '%INSERT INTO events%' "
        "AND statement ~ 'FROM orders o WHERE o\\.id = \\$[0-9]'"))]


def test_one_object_events_reuse_the_generic_plan(clean_db):
    order_ids = [make_order(clean_db, status="paid") for _ in range(WRITES)]
    for order_id in order_ids:
        make_payment(clean_db, order_id, status="succeeded")
    with clean_db.uow() as uow:
        for order_id in order_ids:
            record_event(uow.session, EventType.ORDER_PAID, order_id)
        plans = plans_of_order_event_inserts(uow.session)
        events = uow.session.scalar(text("SELECT count(*) FROM events"))
        uow.commit()
    assert events == WRITES
    assert len(plans) == 1
    generic, custom = plans[0]
    assert generic >= WRITES - 10 and custom <= 5, plans


def test_many_objects_are_still_one_statement(clean_db):
    order_id = make_order(clean_db)
    payment_ids = [make_payment(clean_db, order_id, status="failed") for _ in range(3)]
    with clean_db.uow() as uow:
        record_events(uow.session, EventType.PAYMENT_FAILED, payment_ids)
        objects = uow.session.scalars(text("SELECT object_id FROM events ORDER BY id")).all()
        uow.commit()
    assert objects == payment_ids
