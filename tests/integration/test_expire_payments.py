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
from services.expiry import (
    EXPIRE_PAYMENTS_ACTOR,
    SWEEP_CONNECTIONS,
    _expire_due_init,
    _Lane,
    _Lanes,
)
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


def test_a_lane_is_taken_in_batches_from_its_cursor_and_ends_with_its_first_short_one(
        clean_db):
    res = clean_db
    # All due at the same instant: a cursor that excluded its last row's expires_at would
    # skip the three left after the first batch.
    expires_at = ago(minutes=5)
    due = [make_payment(res, make_order(res), expires_at=expires_at) for _ in range(5)]
    lanes = _Lanes.over_due_init(res, 1)
    assert lanes is not None
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "SKIP LOCKED" in statement:
            statements.append(statement)

    event.listen(res.db.engine, "after_cursor_execute", count)
    try:
        tally = _expire_due_init(res, lanes, 0, 2, None)
    finally:
        event.remove(res.db.engine, "after_cursor_execute", count)

    assert tally.changed == 5 and tally.batches == 3
    assert {status_of(res, p) for p in due} == {"expired"}
    assert all(len(events_of(res, p)) == 1 for p in due)
    # Two full batches and the short one of 1; stopping at an empty batch instead took one
    # more scan of the lane.
    assert len(statements) == 3


def test_the_lanes_cut_the_backlog_by_expiry_time_and_take_a_row_on_a_boundary(clean_db):
    res = clean_db
    now = datetime.now(UTC)
    oldest, middle, newest = (now - timedelta(hours=h) for h in (3, 2, 1))
    payments = {at: make_payment(res, make_order(res), expires_at=at)
                for at in (oldest, middle, newest)}
    make_payment(res, make_order(res))  # not due: no lane reaches it
    lanes = _Lanes.over_due_init(res, 2)
    assert lanes is not None
    first, second = lanes.lane(0), lanes.lane(1)
    assert (first.cursor, first.end) == (oldest, middle)
    assert (second.cursor, second.end) == (middle, None)  # the last lane runs up to now()

    result = expire_stale_payments(res)

    assert result["changed"] == 3
    assert {status_of(res, p) for p in payments.values()} == {"expired"}


def test_no_lanes_when_nothing_is_due(clean_db):
    res = clean_db
    make_payment(res, make_order(res))
    assert _Lanes.over_due_init(res, SWEEP_CONNECTIONS) is None


def test_a_loop_whose_lane_is_done_joins_the_next_open_lane_round_the_end():
    at = datetime(2026, 12, 1, tzinfo=UTC)
    lanes = _Lanes([_Lane(at, at + timedelta(hours=k + 1)) for k in range(3)])
    first, second, third = (lanes.lane(k) for k in range(3))

    assert lanes.advance(first, at + timedelta(minutes=5), short=False) is first
    assert first.cursor == at + timedelta(minutes=5)
    assert lanes.advance(first, at, short=False) is first  # a cursor never moves back
    assert first.cursor == at + timedelta(minutes=5)
    assert lanes.advance(second, None, short=True) is third  # done: the next open lane
    assert lanes.advance(third, None, short=True) is first  # round the end
    assert lanes.advance(first, None, short=True) is None  # all done: the loop ends
    assert lanes.advance(second, None, short=False) is None  # a done lane stays done


def test_a_backlog_in_one_lane_is_swept_by_every_loop_each_payment_once(clean_db):
    res = clean_db
    # One payment in the first lane, the rest at the end of the second: the loop that
    # starts on the first lane runs out at once and joins the second.
    lonely = make_payment(res, make_order(res), expires_at=ago(hours=2))
    crowd = [make_payment(res, make_order(res), expires_at=ago(minutes=1, seconds=k))
             for k in range(30)]

    result = expire_stale_payments(res, batch_size=3)

    assert result["changed"] == 31
    assert {status_of(res, p) for p in [lonely, *crowd]} == {"expired"}
    assert all(len(events_of(res, p)) == 1 for p in [lonely, *crowd])


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
