"""A success callback racing the expiry of the same payment (DESIGN.md §6, §7).

The expiry side is the sweep's compare-and-set (transition_payment to expired,
only from init/processing), run on its own connection at the same instant as
the callback's settlement. Whichever wins, the money is never lost nor counted
twice: the payment ends succeeded with exactly one success event, and the order
is paid, or refunded in full when it can no longer take the money.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from adapters.resources import Resources
from domain.models import Order, OrderStatusHistory, Payment, PaymentEvent, Refund
from domain.statuses import ACTIVE_PAYMENT_STATUSES, OrderStatus, PaymentStatus
from services.callbacks import process_callback
from services.transitions import transition_order, transition_payment
from tests.support.callbacks import event_body, store_callback
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import settings_with

pytestmark = pytest.mark.slow


@pytest.fixture
def res(clean_db, settings, private_redis):
    """Resources whose broker (and locks) are this test's own Redis: the refunds this
    test makes are queued where no worker executes them, and can be counted."""
    private = Resources(settings_with(settings, redis_url=private_redis.url))
    yield private
    private.close()


def _with_retries(call, attempts: int = 10):
    """What the task (or the sweep's next run) does on a deadlock or lock timeout."""
    for attempt in range(attempts):
        try:
            return call()
        except OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
    return None


# The callback does a few round trips (inbox read, Redis lock, attempt count) before it
# locks the payment row; the expiry side starts up to this much later, so both orders,
# and the interleavings in between, all happen over the runs.
EXPIRY_MAX_DELAY = 0.015


def _race(pool: ThreadPoolExecutor, callback, expiry):
    barrier = threading.Barrier(2)

    def run(call, max_delay: float):
        barrier.wait(timeout=30)
        time.sleep(random.uniform(0, max_delay))
        return _with_retries(call)

    a, b = pool.submit(run, callback, 0.002), pool.submit(run, expiry, EXPIRY_MAX_DELAY)
    return a.result(timeout=60), b.result(timeout=60)


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
        refunds = list(s.execute(select(Refund.amount, Refund.status)
                                 .where(Refund.payment_id == payment_id)))
    return payment, order, events, history, refunds


def test_success_racing_payment_expiry_200_times(res, private_redis):
    winners: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(200):
            order_id = make_order(res)
            payment_id = make_payment(res, order_id, status="processing")
            callback_id = store_callback(res, event_body(payment_id))

            def expire(payment_id=payment_id):
                with res.uow() as uow:
                    previous = transition_payment(
                        uow.session, payment_id, PaymentStatus.EXPIRED, actor="sweep",
                        event="payment_expired", allowed_from=ACTIVE_PAYMENT_STATUSES)
                    uow.commit()
                return previous

            outcome, expired_from = _race(
                pool, lambda cid=callback_id: process_callback(res, cid), expire)

            payment, order, events, history, refunds = _facts(res, payment_id, order_id)
            assert outcome == "processed"
            assert payment == "succeeded"  # never expired at the end, never both
            assert order == "paid" and history == [("pending", "paid")]
            assert refunds == []
            if expired_from is None:  # the callback won; the sweep found nothing to expire
                winners["callback"] += 1
                assert events == ["payment_succeeded"]
            else:  # the sweep won; the success arrives late and is still applied
                winners["expiry"] += 1
                assert events == ["payment_expired", "late_payment_received"]
    print(f"race winners over 200 runs: {dict(winners)}")
    assert sum(winners.values()) == 200
    assert private_redis.queued("payments") == []  # no refund anywhere


def test_success_racing_order_expiry_refunds_or_pays_never_both(res, private_redis):
    """The order sweep expires the order and cancels its active payment; a success that
    lands after it is refunded in full, one that lands before it keeps the order paid."""
    winners: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(60):
            order_id = make_order(res, total="50.00")
            payment_id = make_payment(res, order_id, amount="50.00", status="processing")
            callback_id = store_callback(res, event_body(payment_id, amount="50.00"))

            def expire_order(order_id=order_id, payment_id=payment_id):
                with res.uow() as uow:
                    previous = transition_order(uow.session, order_id, OrderStatus.EXPIRED,
                                                actor="sweep", reason="order TTL")
                    if previous is not None:
                        transition_payment(uow.session, payment_id, PaymentStatus.CANCELLED,
                                           actor="sweep", event="payment_cancelled",
                                           allowed_from=ACTIVE_PAYMENT_STATUSES)
                    uow.commit()
                return previous

            outcome, expired_from = _race(
                pool, lambda cid=callback_id: process_callback(res, cid), expire_order)

            payment, order, events, history, refunds = _facts(res, payment_id, order_id)
            assert outcome == "processed" and payment == "succeeded"
            if expired_from is None:
                winners["callback"] += 1
                assert order == "paid" and history == [("pending", "paid")]
                assert events == ["payment_succeeded"] and refunds == []
            else:
                winners["expiry"] += 1
                assert order == "expired" and history == [("pending", "expired")]
                assert events == ["payment_cancelled", "late_payment_received",
                                  "refund_requested"]
                assert [(str(a), s) for a, s in refunds] == [("50.00", "pending")]
    print(f"race winners over 60 runs: {dict(winners)}")
    refunds_queued = [m for m in private_redis.queued("payments")
                      if m["task"] == "refunds.execute"]
    assert len(refunds_queued) == winners["expiry"]  # one refund per late success
