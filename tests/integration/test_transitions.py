"""services/transitions: each compare-and-set and its history or audit row, one statement.

Real PostgreSQL. The moves run as psycopg prepared statements, with their extra columns
written into the SQL by name, so what they accept is checked here.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from adapters.resources import Resources
from domain.models import Order, OrderStatusHistory, Payment, PaymentEvent
from domain.statuses import OrderStatus, PaymentStatus
from services.transitions import NOW, transition_order, transition_payment
from tests.support.factories import make_order, make_payment


def _audit(res: Resources, payment_id: int) -> list[tuple[str, dict[str, str]]]:
    with res.uow() as uow:
        return [(r.event, r.detail) for r in uow.session.execute(
            select(PaymentEvent.event, PaymentEvent.detail)
            .where(PaymentEvent.payment_id == payment_id).order_by(PaymentEvent.id))]


def test_a_payment_move_sets_its_columns_and_writes_its_audit_row_in_the_same_commit(
        clean_db):
    res = clean_db
    payment_id = make_payment(res, make_order(res))
    with res.uow() as uow:
        before = transition_payment(
            uow.session, payment_id, PaymentStatus.SUCCEEDED, actor="test:callback",
            event="payment_succeeded", values={"paid_at": NOW, "transaction_id": "txn-1"},
            transaction_id="txn-1")
        now = uow.session.execute(select(func.now())).scalar_one()
        uow.commit()

    assert before == PaymentStatus.INIT
    with res.uow() as uow:
        row = uow.session.execute(select(Payment.status, Payment.paid_at, Payment.updated_at,
                                         Payment.transaction_id)
                                  .where(Payment.id == payment_id)).one()
    # NOW is the database's clock at the transaction's start, as updated_at is.
    assert (row.status, row.transaction_id) == ("succeeded", "txn-1")
    assert row.paid_at == row.updated_at == now
    assert _audit(res, payment_id) == [("payment_succeeded", {
        "from_status": "init", "to_status": "succeeded", "transaction_id": "txn-1"})]


def test_a_payment_no_longer_in_the_status_read_is_not_moved_and_gets_no_audit_row(clean_db):
    res = clean_db
    payment_id = make_payment(res, make_order(res), status="failed")
    with res.uow() as uow:
        # The caller says it read init under the lock: the compare-and-set still refuses.
        moved = transition_payment(uow.session, payment_id, PaymentStatus.SUCCEEDED,
                                   actor="test:callback", event="payment_succeeded",
                                   locked=PaymentStatus.INIT)
        uow.commit()
    assert moved is None
    assert _audit(res, payment_id) == []


def test_an_order_move_writes_its_history_row_and_a_refused_one_writes_none(clean_db):
    res = clean_db
    order_id = make_order(res)
    with res.uow() as uow:
        assert transition_order(uow.session, order_id, OrderStatus.PAID, actor="test:callback",
                                reason="payment succeeded") == OrderStatus.PENDING
        # Read as pending, but it is paid now: the compare-and-set refuses, no history.
        assert transition_order(uow.session, order_id, OrderStatus.CANCELLED, actor="test",
                                locked=OrderStatus.PENDING) is None
        uow.commit()
    with res.uow() as uow:
        assert uow.session.execute(select(Order.status).where(Order.id == order_id)
                                   ).scalar_one() == "paid"
        history = uow.session.execute(
            select(OrderStatusHistory.from_status, OrderStatusHistory.to_status,
                   OrderStatusHistory.reason, OrderStatusHistory.actor)
            .where(OrderStatusHistory.order_id == order_id)).all()
    assert [tuple(h) for h in history] == [
        ("pending", "paid", "payment succeeded", "test:callback")]


def test_an_sql_expression_or_a_column_payments_lacks_is_refused_and_nothing_moves(clean_db):
    res = clean_db
    payment_id = make_payment(res, make_order(res))
    with res.uow() as uow:
        with pytest.raises(TypeError, match="NOW"):
            transition_payment(uow.session, payment_id, PaymentStatus.SUCCEEDED,
                               actor="test", event="payment_succeeded",
                               values={"paid_at": func.now()})
        with pytest.raises(ValueError, match="no column"):
            transition_payment(uow.session, payment_id, PaymentStatus.SUCCEEDED,
                               actor="test", event="payment_succeeded",
                               values={"paid_at; DROP TABLE payments; --": "x"})
    with res.uow() as uow:
        assert uow.session.execute(select(Payment.status).where(Payment.id == payment_id)
                                   ).scalar_one() == "init"
    assert _audit(res, payment_id) == []



def test_a_change_pending_in_the_session_is_flushed_before_the_move(clean_db):
    """The moves bypass the session; they flush it first, as session.execute would, so the
    database sees the caller's changes in the order the caller made them."""
    res = clean_db
    payment_id = make_payment(res, make_order(res))
    with res.uow() as uow:
        payment = uow.session.get(Payment, payment_id)
        assert payment is not None
        payment.needs_review = True  # pending in the session: no UPDATE sent yet
        transition_payment(uow.session, payment_id, PaymentStatus.CANCELLED, actor="test",
                           event="payment_cancelled")
        # Asked on the connection itself, which does not flush: it was sent already.
        flagged = uow.session.connection().execute(
            text("SELECT needs_review FROM payments WHERE id = :id"), {"id": payment_id}
        ).scalar_one()
        uow.commit()
    assert flagged is True
