"""maintenance.expire_orders: pending orders past ORDER_TTL expire; their active payments
are cancelled in the same transaction. Real PostgreSQL and Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from adapters.resources import Resources
from config import Settings
from domain.models import Order, OrderStatusHistory, Payment, PaymentEvent, Refund
from domain.statuses import ACTIVE_PAYMENT_STATUSES, OrderStatus, PaymentStatus
from services.expiry import EXPIRE_ORDERS_ACTOR
from services.maintenance import expire_stale_orders
from services.transitions import NOW, lock_payment_status, transition_order, transition_payment
from tests.support.factories import make_order, make_payment
from tests.support.processes import wait_until

SHORT_ORDER_TTL = 300


@pytest.fixture
def short_ttl(settings: Settings, clean_db: Resources) -> Iterator[Resources]:
    """Resources whose ORDER_TTL is five minutes."""
    res = Resources(replace(settings, order_ttl_seconds=SHORT_ORDER_TTL))
    yield res
    res.close()


def ago(**kwargs: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kwargs)


def order_status(res: Resources, order_id: int) -> str:
    with res.uow() as uow:
        return uow.session.execute(select(Order.status).where(Order.id == order_id)).scalar_one()


def payment_status(res: Resources, payment_id: int) -> str:
    with res.uow() as uow:
        return uow.session.execute(
            select(Payment.status).where(Payment.id == payment_id)).scalar_one()


def history_of(res: Resources, order_id: int) -> list[tuple[str | None, str, str | None, str]]:
    with res.uow() as uow:
        rows = uow.session.execute(
            select(OrderStatusHistory.from_status, OrderStatusHistory.to_status,
                   OrderStatusHistory.reason, OrderStatusHistory.actor)
            .where(OrderStatusHistory.order_id == order_id).order_by(OrderStatusHistory.id)).all()
    return [tuple(r) for r in rows]


def events_of(res: Resources, payment_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    with res.uow() as uow:
        rows = uow.session.execute(
            select(PaymentEvent.event, PaymentEvent.actor, PaymentEvent.detail)
            .where(PaymentEvent.payment_id == payment_id).order_by(PaymentEvent.id)).all()
    return [(r.event, r.actor, r.detail) for r in rows]


def test_an_order_past_its_ttl_expires_and_its_active_payment_is_cancelled(short_ttl):
    res = short_ttl
    old = make_order(res, created_at=ago(minutes=10))
    active = make_payment(res, old, created_at=ago(minutes=2))  # still within its own TTL
    earlier_failed = make_payment(res, old, status="failed",
                                  created_at=ago(minutes=9))
    young = make_order(res, created_at=ago(minutes=1))
    young_payment = make_payment(res, young)
    old_paid = make_order(res, status="paid", created_at=ago(minutes=10))

    result = expire_stale_orders(res)

    assert result["orders_expired"] == 1 and result["payments_cancelled"] == 1
    assert result["changed"] == 2 and result["complete"] is True
    assert order_status(res, old) == "expired"
    assert history_of(res, old) == [("pending", "expired", "order ttl elapsed",
                                     EXPIRE_ORDERS_ACTOR)]
    assert payment_status(res, active) == "cancelled"
    [(event, actor, detail)] = events_of(res, active)
    assert (event, actor) == ("payment_cancelled", EXPIRE_ORDERS_ACTOR)
    assert detail == {"from_status": "init", "to_status": "cancelled",
                      "reason": "order expired", "order_id": old}
    assert payment_status(res, earlier_failed) == "failed"
    assert events_of(res, earlier_failed) == []

    assert (order_status(res, young), payment_status(res, young_payment)) == ("pending", "init")
    assert order_status(res, old_paid) == "paid"
    assert history_of(res, young) == [] and history_of(res, old_paid) == []

    assert expire_stale_orders(res)["changed"] == 0  # a repeat finds nothing to do


def test_the_default_ttl_is_a_day_and_orders_go_in_batches(clean_db):
    res = clean_db  # ORDER_TTL_SECONDS = 86400
    stale = [make_order(res, created_at=ago(hours=25)) for _ in range(5)]
    processing = make_payment(res, stale[0], status="processing", created_at=ago(minutes=5))
    within_a_day = make_order(res, created_at=ago(hours=23))

    result = expire_stale_orders(res, batch_size=2)

    assert result["orders_expired"] == 5 and result["batches"] == 3
    assert {order_status(res, o) for o in stale} == {"expired"}
    assert payment_status(res, processing) == "cancelled"
    assert events_of(res, processing)[0][2]["from_status"] == "processing"
    assert order_status(res, within_a_day) == "pending"


def test_an_expired_order_takes_no_new_payment(api, admin_key, short_ttl):
    old = make_order(short_ttl, created_at=ago(minutes=10))
    assert expire_stale_orders(short_ttl)["orders_expired"] == 1

    response = api.as_key(admin_key).post("/api/v1/payments",
                                          json={"order_id": old, "method": "wechat"})

    assert response.status_code == 409, response.text
    assert response.json()["code"] == "order_not_payable"


def test_an_order_whose_payment_a_callback_is_settling_is_skipped_and_the_success_stands(
        short_ttl):
    res = short_ttl
    old = make_order(res, created_at=ago(minutes=10))
    payment = make_payment(res, old, created_at=ago(minutes=1))
    other = make_order(res, created_at=ago(minutes=10))

    # A success callback holds the payment row (it locks payment, then order). The sweep
    # must neither wait for it nor deadlock with it: it leaves that order for later.
    with res.uow() as callback:
        assert lock_payment_status(callback.session, payment) == PaymentStatus.INIT
        started = time.monotonic()
        result = expire_stale_orders(res)
        assert time.monotonic() - started < 5
        assert result["orders_expired"] == 1 and result["orders_left_busy"] == 1
        transition_payment(callback.session, payment, PaymentStatus.SUCCEEDED,
                           actor="test:callback", event="payment_succeeded",
                           values={"paid_at": NOW}, allowed_from=ACTIVE_PAYMENT_STATUSES)
        transition_order(callback.session, old, OrderStatus.PAID, actor="test:callback",
                         reason="payment succeeded")
        callback.commit()

    assert order_status(res, other) == "expired"
    assert expire_stale_orders(res)["changed"] == 0
    assert (order_status(res, old), payment_status(res, payment)) == ("paid", "succeeded")
    assert [e for e, _, _ in events_of(res, payment)] == ["payment_succeeded"]


def test_a_success_arriving_after_the_order_expired_is_refunded_never_dropped(
        api, celery_worker, short_ttl):
    """§6's late-payment rule, end to end: the sweep cancelled the payment with its order;
    the provider's signed success still arrives over HTTP and a real worker applies it."""
    from tests.support.callbacks import event_body, post_callback

    res = short_ttl
    old = make_order(res, created_at=ago(minutes=10))
    payment = make_payment(res, old, created_at=ago(minutes=1))
    assert expire_stale_orders(res)["payments_cancelled"] == 1

    answer = post_callback(api.base_url, event_body(payment, transaction_id=f"txn_late_{old}"))
    assert answer.status_code == 200, answer.text

    wait_until(lambda: payment_status(res, payment) == "succeeded", timeout=30,
               message="the late success to be applied")
    assert order_status(res, old) == "expired"  # the order does not come back to life
    assert [e for e, _, _ in events_of(res, payment)] == [
        "payment_cancelled", "late_payment_received", "refund_requested"]
    with res.uow() as uow:
        refunds = uow.session.execute(
            select(Refund.amount, Refund.currency).where(Refund.payment_id == payment)).all()
    assert [tuple(r) for r in refunds] == [(Decimal("100.00"), "CNY")]
