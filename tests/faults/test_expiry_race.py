"""A success callback racing the expiry of the same payment (DESIGN.md §6, §7).

The expiry side is the sweep's compare-and-set (transition_payment to expired,
only from init/processing), run on its own connection while the callback's
settlement is in flight. The test decides who wins instead of hoping for it: it
holds the contested row lock on a connection of its own, starts the side that
should win, waits until PostgreSQL shows that side waiting on the lock, starts the
other, waits until both wait, then lets go. PostgreSQL grants a row's waiters in
the order they queued, so each outcome is produced on purpose and checked:
- the callback first: the payment succeeds, the sweep finds nothing to expire;
- the expiry first: the success arrives late and is still applied (a payment's
  expiry) or refunded in full (an order's expiry).
Either way the money is never lost nor counted twice.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from sqlalchemy import select, text

from adapters.resources import Resources
from domain.models import Order, OrderStatusHistory, Payment, PaymentEvent, Refund
from domain.statuses import ACTIVE_PAYMENT_STATUSES, OrderStatus, PaymentStatus
from services.callbacks import process_callback
from services.transitions import transition_order, transition_payment
from tests.support.callbacks import event_body, store_callback
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import settings_with

pytestmark = pytest.mark.slow

ROUNDS = 5  # per outcome; each round's order of events is fixed, so a few suffice


@pytest.fixture
def res(clean_db, settings, private_redis):
    """Resources whose broker (and locks) are this test's own Redis: the refunds this
    test makes are queued where no worker executes them, and can be counted."""
    private = Resources(settings_with(settings, redis_url=private_redis.url))
    yield private
    private.close()


_WAITING_ON_LOCKS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")


def _race(res: Resources, pool: ThreadPoolExecutor, table: str, row_id: int,
          first, second) -> tuple[object, object]:
    """Run `first` and `second` concurrently; `first` is granted `table`'s row first."""
    with res.db.engine.connect() as gate:
        gate.execute(text(f"SELECT 1 FROM {table} WHERE id = :id FOR UPDATE"), {"id": row_id})
        first_done = pool.submit(first)
        _wait_for_lock_waiters(res, 1, first_done)
        second_done = pool.submit(second)
        _wait_for_lock_waiters(res, 2, second_done)
        gate.rollback()  # lets go: the waiters are granted the row in the order they queued
    return first_done.result(timeout=30), second_done.result(timeout=30)


def _wait_for_lock_waiters(res: Resources, count: int, started: Future) -> None:
    deadline = time.monotonic() + 10
    with res.db.engine.connect() as probe:
        while probe.execute(_WAITING_ON_LOCKS).scalar_one() < count:
            probe.rollback()
            if started.done():  # it finished without waiting: the interleaving is lost
                raise AssertionError(f"did not wait on the row lock: {started.result()!r}")
            assert time.monotonic() < deadline, f"{count} lock waiter(s) never appeared"
            time.sleep(0.005)


def _facts(res, payment_id: int, order_id: int):
    with res.uow() as uow:
        s = uow.session
        payment = s.execute(select(Payment.status).where(Payment.id == payment_id)).scalar_one()
        order = s.execute(select(Order.status).where(Order.id == order_id)).scalar_one()
        events = list(s.execute(select(PaymentEvent.event).where(
            PaymentEvent.payment_id == payment_id).order_by(PaymentEvent.id)).scalars())
        history = [(h.from_status, h.to_status) for h in s.execute(
            select(OrderStatusHistory).where(OrderStatusHistory.order_id == order_id)
            .order_by(OrderStatusHistory.id)).scalars()]
        refunds = [(str(amount), status) for amount, status in s.execute(
            select(Refund.amount, Refund.status).where(Refund.payment_id == payment_id))]
    return payment, order, events, history, refunds


def _expire_payment(res: Resources, payment_id: int):
    with res.uow() as uow:
        previous = transition_payment(
            uow.session, payment_id, PaymentStatus.EXPIRED, actor="sweep",
            event="payment_expired", allowed_from=ACTIVE_PAYMENT_STATUSES)
        uow.commit()
    return previous


def _expire_order(res: Resources, order_id: int, payment_id: int):
    """What the order sweep does to one order: expired, its active payment cancelled."""
    with res.uow() as uow:
        previous = transition_order(uow.session, order_id, OrderStatus.EXPIRED,
                                    actor="sweep", reason="order TTL")
        if previous is not None:
            transition_payment(uow.session, payment_id, PaymentStatus.CANCELLED,
                               actor="sweep", event="payment_cancelled",
                               allowed_from=ACTIVE_PAYMENT_STATUSES)
        uow.commit()
    return previous


@pytest.mark.parametrize("winner", ["callback", "expiry"])
def test_success_racing_payment_expiry(res, private_redis, winner):
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(ROUNDS):
            order_id = make_order(res)
            payment_id = make_payment(res, order_id, status="processing")
            callback_id = store_callback(res, event_body(payment_id))

            def callback(callback_id=callback_id):
                return process_callback(res, callback_id)

            def expiry(payment_id=payment_id):
                return _expire_payment(res, payment_id)

            if winner == "callback":
                outcome, expired_from = _race(res, pool, "payments", payment_id,
                                              callback, expiry)
            else:
                expired_from, outcome = _race(res, pool, "payments", payment_id,
                                              expiry, callback)

            payment, order, events, history, refunds = _facts(res, payment_id, order_id)
            assert outcome == "processed"
            assert payment == "succeeded"  # never expired at the end, never both
            assert order == "paid" and history == [("pending", "paid")]
            assert refunds == []
            if winner == "callback":  # the sweep found nothing to expire
                assert expired_from is None
                assert events == ["payment_succeeded"]
            else:  # the sweep expired it; the success arrives late and is still applied
                assert expired_from == PaymentStatus.PROCESSING
                assert events == ["payment_expired", "late_payment_received"]
    assert private_redis.queued("payments") == []  # no refund anywhere


@pytest.mark.parametrize("winner", ["callback", "expiry"])
def test_success_racing_order_expiry_refunds_or_pays_never_both(res, private_redis, winner):
    """The order sweep expires the order and cancels its active payment; a success that
    lands after it is refunded in full, one that lands before it keeps the order paid.
    Both take the order's row lock first, so that is the contested row."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(ROUNDS):
            order_id = make_order(res, total="50.00")
            payment_id = make_payment(res, order_id, amount="50.00", status="processing")
            callback_id = store_callback(res, event_body(payment_id, amount="50.00"))

            def callback(callback_id=callback_id):
                return process_callback(res, callback_id)

            def expiry(order_id=order_id, payment_id=payment_id):
                return _expire_order(res, order_id, payment_id)

            if winner == "callback":
                outcome, expired_from = _race(res, pool, "orders", order_id, callback, expiry)
            else:
                expired_from, outcome = _race(res, pool, "orders", order_id, expiry, callback)

            payment, order, events, history, refunds = _facts(res, payment_id, order_id)
            assert outcome == "processed" and payment == "succeeded"
            if winner == "callback":
                assert expired_from is None
                assert order == "paid" and history == [("pending", "paid")]
                assert events == ["payment_succeeded"] and refunds == []
            else:
                assert expired_from == OrderStatus.PENDING
                assert order == "expired" and history == [("pending", "expired")]
                assert events == ["payment_cancelled", "late_payment_received",
                                  "refund_requested"]
                assert refunds == [("50.00", "pending")]
    refunds_queued = [m for m in private_redis.queued("payments")
                      if m["task"] == "refunds.execute"]
    assert len(refunds_queued) == (ROUNDS if winner == "expiry" else 0)  # one per late success
