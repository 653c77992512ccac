"""maintenance.expire_payments: unpaid payments past expires_at become expired, set-based.

Real PostgreSQL and Redis. Short TTLs come from rows created in the past.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, select

from adapters.resources import Resources
from domain.models import Payment, PaymentEvent
from domain.statuses import ACTIVE_PAYMENT_STATUSES, PaymentStatus
from services.expiry import EXPIRE_PAYMENTS_ACTOR, SWEEP_CONNECTIONS
from services.maintenance import expire_stale_orders, expire_stale_payments
from services.transitions import NOW, lock_payment_status, transition_payment
from tests.support.factories import make_order, make_payment


def ago(**kwargs: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kwargs)


def status_of(res: Resources, payment_id: int) -> str:
    with res.uow() as uow:
        return uow.session.execute(
            select(Payment.status).where(Payment.id == payment_id)).scalar_one()


def events_of(res: Resources, payment_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    with res.uow() as uow:
        rows = uow.session.execute(
            select(PaymentEvent.event, PaymentEvent.actor, PaymentEvent.detail)
            .where(PaymentEvent.payment_id == payment_id).order_by(PaymentEvent.id)).all()
    return [(r.event, r.actor, r.detail) for r in rows]


def test_an_unpaid_payment_expires_in_one_run_with_its_audit_event_and_the_order_stays_payable(
        api, admin_key, clean_db):
    res = clean_db
    order_id = make_order(res, created_at=ago(minutes=31))
    due = make_payment(res, order_id, created_at=ago(minutes=31))  # expired a minute ago
    fresh = make_payment(res, make_order(res))  # expires in 30 minutes

    result = expire_stale_payments(res)

    assert result["changed"] == 1 and result["complete"] is True
    assert result["seconds"] >= 0
    assert status_of(res, due) == "expired"
    [(event, actor, detail)] = events_of(res, due)
    assert (event, actor) == ("payment_expired", EXPIRE_PAYMENTS_ACTOR)
    assert detail["from_status"] == "init" and detail["to_status"] == "expired"
    assert detail["reason"] == "payment ttl elapsed" and detail["expires_at"]
    assert status_of(res, fresh) == "init" and events_of(res, fresh) == []

    # The order is still pending and takes a new payment: the partial unique index
    # only covers init/processing payments.
    created = api.as_key(admin_key).post("/api/v1/payments",
                                         json={"order_id": order_id, "method": "wechat"})
    assert created.status_code == 201, created.text
    assert created.json()["id"] != due and created.json()["status"] == "init"

    assert expire_stale_payments(res)["changed"] == 0  # a repeat finds nothing to do


def test_processing_payments_expire_through_the_provider_seam_and_finished_ones_are_untouched(
        clean_db):
    res = clean_db
    long_ago = ago(hours=2)
    processing = make_payment(res, make_order(res), status="processing", created_at=long_ago)
    finished = {status: make_payment(res, make_order(res), status=status, created_at=long_ago)
                for status in ("succeeded", "failed", "cancelled", "expired", "refunded")}

    result = expire_stale_payments(res)

    # provider_status_check knows no provider yet and answers "unknown": the payment expires.
    assert result["changed"] == 1 and result["processing_expired"] == 1
    assert status_of(res, processing) == "expired"
    [(event, _, detail)] = events_of(res, processing)
    assert event == "payment_expired" and detail["from_status"] == "processing"
    for status, payment_id in finished.items():
        assert status_of(res, payment_id) == status
        assert events_of(res, payment_id) == []


def test_a_large_backlog_is_taken_in_batches_each_loop_ending_with_a_short_one(clean_db):
    res = clean_db
    due = [make_payment(res, make_order(res), created_at=ago(hours=1)) for _ in range(5)]
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "SKIP LOCKED" in statement:
            statements.append(statement)

    event.listen(res.db.engine, "after_cursor_execute", count)
    try:
        result = expire_stale_payments(res, batch_size=2)
    finally:
        event.remove(res.db.engine, "after_cursor_execute", count)

    assert result["changed"] == 5 and result["batches"] == 3
    assert {status_of(res, p) for p in due} == {"expired"}
    assert all(len(events_of(res, p)) == 1 for p in due)
    # Two full batches, then one short batch per connection (the one of 1, and one of 0);
    # stopping at an empty batch instead took one more whole-table scan per connection.
    assert len(statements) == 2 + SWEEP_CONNECTIONS


def test_a_payment_a_callback_holds_is_skipped_not_waited_for_and_its_success_stands(clean_db):
    res = clean_db
    held = make_payment(res, make_order(res), created_at=ago(hours=1))
    other = make_payment(res, make_order(res), created_at=ago(hours=1))

    with res.uow() as callback:  # a success callback mid-transaction: it holds the row lock
        assert lock_payment_status(callback.session, held) == PaymentStatus.INIT
        started = time.monotonic()
        result = expire_stale_payments(res)
        assert time.monotonic() - started < 5  # SKIP LOCKED: the sweep did not queue behind it
        assert result["changed"] == 1
        transition_payment(callback.session, held, PaymentStatus.SUCCEEDED, actor="test:callback",
                           event="payment_succeeded", values={"paid_at": NOW},
                           allowed_from=ACTIVE_PAYMENT_STATUSES)
        callback.commit()

    assert status_of(res, other) == "expired"
    assert expire_stale_payments(res)["changed"] == 0
    assert status_of(res, held) == "succeeded"
    assert [e for e, _, _ in events_of(res, held)] == ["payment_succeeded"]


@contextmanager
def settings_seen(res: Resources) -> Iterator[tuple[list[tuple[str, str]], list[str]]]:
    """(synchronous_commit, statement_timeout) as each locking statement of a sweep batch
    saw them, and synchronous_commit on every connection handed back to the pool."""
    in_batches: list[tuple[str, str]] = []
    returned: list[str] = []

    def after_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "SKIP LOCKED" in statement:
            in_batches.append(tuple(cursor.connection.execute(
                "SELECT current_setting('synchronous_commit'), "
                "current_setting('statement_timeout')").fetchone()))

    def on_checkin(dbapi_conn: Any, record: Any) -> None:
        if dbapi_conn is not None:
            returned.append(dbapi_conn.execute(
                "SELECT current_setting('synchronous_commit')").fetchone()[0])
            dbapi_conn.rollback()

    event.listen(res.db.engine, "after_cursor_execute", after_execute)
    event.listen(res.db.engine.pool, "checkin", on_checkin)
    try:
        yield in_batches, returned
    finally:
        event.remove(res.db.engine, "after_cursor_execute", after_execute)
        event.remove(res.db.engine.pool, "checkin", on_checkin)


def test_sweep_batches_commit_asynchronously_and_nothing_else_inherits_it(clean_db):
    """synchronous_commit = off is for the expiry batches' own transactions only (see
    services.expiry._begin_sweep_batch): a pooled connection that kept it would let a
    success callback's commit go unflushed."""
    res = clean_db
    make_payment(res, make_order(res), created_at=ago(hours=1))
    make_payment(res, make_order(res), status="processing", created_at=ago(hours=1))
    order_id = make_order(res, created_at=ago(days=2))  # past the default ORDER_TTL (a day)
    make_payment(res, order_id)

    with settings_seen(res) as (in_batches, returned):
        assert expire_stale_payments(res)["changed"] == 2
        assert expire_stale_orders(res)["changed"] == 2

    # init batch, processing batch, orders batch (its orders, then its payments)
    assert len(in_batches) >= 4 and set(in_batches) == {("off", "30s")}
    assert returned and set(returned) == {"on"}
