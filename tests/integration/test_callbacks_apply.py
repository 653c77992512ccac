"""Applying stored callbacks (DESIGN.md §6) on real PostgreSQL and Redis.

Most tests drive services.callbacks.process_callback directly (what the worker's
task calls) against an app whose broker is private, so what gets queued is
visible. The last one goes through real HTTP and a real Celery worker.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
from sqlalchemy import func, insert, select, text, update

from adapters.locks import LockBusy, payment_lock
from adapters.resources import Resources
from domain.callback_events import parse_callback_body
from domain.models import (
    Order,
    OrderStatusHistory,
    Payment,
    PaymentEvent,
    ProviderCallback,
    Refund,
)
from services.callbacks import MAX_ATTEMPTS, process_callback, redeliver_stuck
from services.settlement import settle_provider_report
from tests.support.callbacks import event_body, post_callback, signed_headers, store_callback
from tests.support.factories import make_order, make_payment
from tests.support.private_stack import PrivateRedis, settings_with
from tests.support.processes import wait_until

UNKNOWN_ID = 2**62  # ids keep growing over a test session; this one is never reached


@pytest.fixture(scope="module")
def quiet_resources(settings, tmp_path_factory):
    broker = PrivateRedis(tmp_path_factory.mktemp("broker"))
    broker.start()
    res = Resources(settings_with(settings, redis_url=broker.url))
    try:
        yield res, broker
    finally:
        res.close()
        broker.stop()


@pytest.fixture
def quiet(clean_db, quiet_resources):
    res, broker = quiet_resources
    client = broker.client()
    client.flushdb()
    client.close()
    return res, broker


def row(res, model, row_id):
    table = model.__table__
    with res.uow() as uow:
        return uow.session.execute(select(table).where(table.c.id == row_id)).one()


def events(res, payment_id=None, name=None) -> list:
    table = PaymentEvent.__table__
    query = select(table).order_by(table.c.id)
    if payment_id is not None:
        query = query.where(table.c.payment_id == payment_id)
    if name is not None:
        query = query.where(table.c.event == name)
    with res.uow() as uow:
        return list(uow.session.execute(query))


def history(res, order_id) -> list[tuple[str | None, str]]:
    with res.uow() as uow:
        return [(r.from_status, r.to_status) for r in uow.session.execute(
            select(OrderStatusHistory).where(OrderStatusHistory.order_id == order_id)
            .order_by(OrderStatusHistory.id)).scalars()]


def apply(res, body: bytes) -> tuple[str, int]:
    callback_id = store_callback(res, body)
    return process_callback(res, callback_id), callback_id


def new_payment(res, *, status="processing", order_status="pending", amount="100.00",
                currency="CNY") -> tuple[int, int]:
    order_id = make_order(res, total=amount, currency=currency, status=order_status)
    return order_id, make_payment(res, order_id, amount=amount, currency=currency,
                                  status=status)


def add_refund(res, payment_id: int, amount: str, status: str = "pending") -> int:
    with res.uow() as uow:
        refund_id = uow.session.execute(insert(Refund).values(
            payment_id=payment_id, amount=Decimal(amount), currency="CNY", status=status,
            reason="test").returning(Refund.id)).scalar_one()
        uow.commit()
    return int(refund_id)


# --- payment.succeeded --------------------------------------------------------------------

def test_success_pays_the_payment_and_its_order_in_one_go(quiet):
    res, _ = quiet
    order_id, payment_id = new_payment(res)

    outcome, callback_id = apply(res, event_body(payment_id, transaction_id="txn_A"))

    assert outcome == "processed"
    payment = row(res, Payment, payment_id)
    assert (payment.status, payment.transaction_id) == ("succeeded", "txn_A")
    assert payment.paid_at is not None and not payment.needs_review
    assert row(res, Order, order_id).status == "paid"
    assert history(res, order_id) == [("pending", "paid")]
    [event] = events(res, payment_id)
    assert event.event == "payment_succeeded" and event.actor == "provider:sandbox"
    assert event.detail["callback_id"] == callback_id
    assert event.detail["from_status"] == "processing"
    inbox = row(res, ProviderCallback, callback_id)
    assert (inbox.status, inbox.attempts) == ("processed", 1)
    assert inbox.processed_at is not None


def test_processing_the_same_row_twice_applies_it_once(quiet):
    res, _ = quiet
    _, payment_id = new_payment(res)
    outcome, callback_id = apply(res, event_body(payment_id))
    assert process_callback(res, callback_id) == "already processed"
    assert len(events(res, payment_id, "payment_succeeded")) == 1
    assert row(res, ProviderCallback, callback_id).attempts == 1


def test_same_transaction_under_a_new_event_id_changes_nothing(quiet):
    res, _ = quiet
    order_id, payment_id = new_payment(res)
    apply(res, event_body(payment_id, transaction_id="txn_A"))

    outcome, callback_id = apply(res, event_body(payment_id, transaction_id="txn_A"))

    assert outcome == "processed"
    assert "already succeeded" in row(res, ProviderCallback, callback_id).last_error
    assert [e.event for e in events(res, payment_id)] == ["payment_succeeded"]
    assert history(res, order_id) == [("pending", "paid")]


def test_second_capture_with_another_transaction_is_rejected_for_review(quiet):
    res, _ = quiet
    _, payment_id = new_payment(res)
    apply(res, event_body(payment_id, transaction_id="txn_A"))

    outcome, callback_id = apply(res, event_body(payment_id, transaction_id="txn_B"))

    assert outcome == "rejected"
    payment = row(res, Payment, payment_id)
    assert (payment.status, payment.transaction_id, payment.needs_review) == (
        "succeeded", "txn_A", True)
    assert len(events(res, payment_id, "transaction_conflict")) == 1


def test_transaction_id_already_used_by_another_payment_is_rejected(quiet):
    res, _ = quiet
    _, first = new_payment(res)
    order_id, second = new_payment(res)
    apply(res, event_body(first, transaction_id="txn_SHARED"))

    outcome, _ = apply(res, event_body(second, transaction_id="txn_SHARED"))

    assert outcome == "rejected"
    assert row(res, Payment, second).status == "processing"
    assert row(res, Payment, second).needs_review
    assert row(res, Order, order_id).status == "pending"
    [conflict] = events(res, second, "transaction_conflict")
    assert "txn_SHARED" in conflict.detail["reason"]


@pytest.mark.parametrize("amount, currency", [("99.99", "CNY"), ("100.01", "CNY"),
                                              ("100.00", "USD")])
def test_amount_or_currency_mismatch_is_never_paid(quiet, amount, currency):
    res, _ = quiet
    order_id, payment_id = new_payment(res)

    outcome, callback_id = apply(res, event_body(payment_id, amount=amount, currency=currency))

    assert outcome == "rejected"
    payment = row(res, Payment, payment_id)
    assert (payment.status, payment.transaction_id, payment.needs_review) == (
        "processing", None, True)
    assert row(res, Order, order_id).status == "pending" and history(res, order_id) == []
    [mismatch] = events(res, payment_id)
    assert mismatch.event == "amount_mismatch"
    assert mismatch.detail["expected_amount"] == "100.00"
    assert mismatch.detail["received_amount"] == amount
    assert mismatch.detail["received_currency"] == currency
    inbox = row(res, ProviderCallback, callback_id)
    assert inbox.status == "rejected" and "differs" in inbox.last_error


def test_unknown_payment_is_kept_as_unmatched(quiet):
    res, _ = quiet
    outcome, callback_id = apply(res, event_body(UNKNOWN_ID, event_id="evt_orphan"))
    assert outcome == "unmatched"
    [event] = events(res, name="callback_unmatched")
    assert event.payment_id is None
    assert event.detail["claimed_payment_id"] == UNKNOWN_ID
    assert event.detail["event_id"] == "evt_orphan"
    assert row(res, ProviderCallback, callback_id).status == "unmatched"


# --- payment.failed and late successes ----------------------------------------------------

def test_failure_then_a_later_success_is_accepted(quiet):
    res, _ = quiet
    order_id, payment_id = new_payment(res)

    failed, _ = apply(res, event_body(payment_id, event_type="payment.failed"))
    assert failed == "processed" and row(res, Payment, payment_id).status == "failed"
    assert row(res, Order, order_id).status == "pending"
    succeeded, _ = apply(res, event_body(payment_id, transaction_id="txn_late"))

    assert succeeded == "processed"
    assert row(res, Payment, payment_id).status == "succeeded"
    assert [e.event for e in events(res, payment_id)] == ["payment_failed",
                                                          "late_payment_received"]
    assert history(res, order_id) == [("pending", "paid")]


def test_a_failure_never_regresses_a_success(quiet):
    res, _ = quiet
    order_id, payment_id = new_payment(res)
    apply(res, event_body(payment_id))

    outcome, callback_id = apply(res, event_body(payment_id, event_type="payment.failed"))

    assert outcome == "processed"
    assert "never regresses" in row(res, ProviderCallback, callback_id).last_error
    assert row(res, Payment, payment_id).status == "succeeded"
    assert row(res, Order, order_id).status == "paid"
    assert [e.event for e in events(res, payment_id)] == ["payment_succeeded"]


@pytest.mark.parametrize("status", ["expired", "cancelled", "failed"])
def test_late_success_pays_an_order_that_is_still_pending(quiet, status):
    res, broker = quiet
    order_id, payment_id = new_payment(res, status=status)

    outcome, _ = apply(res, event_body(payment_id))

    assert outcome == "processed"
    assert row(res, Payment, payment_id).status == "succeeded"
    [late] = events(res, payment_id)
    assert late.event == "late_payment_received" and late.detail["from_status"] == status
    assert history(res, order_id) == [("pending", "paid")]
    assert broker.queued("payments") == []  # no refund


@pytest.mark.parametrize("payment_status, order_status", [
    ("cancelled", "expired"), ("expired", "cancelled"), ("processing", "expired")])
def test_success_the_order_cannot_take_is_refunded_in_full(quiet, payment_status,
                                                           order_status):
    res, broker = quiet
    order_id, payment_id = new_payment(res, status=payment_status, order_status=order_status,
                                       amount="88.80")

    outcome, callback_id = apply(res, event_body(payment_id, amount="88.80"))

    assert outcome == "processed"
    assert row(res, Payment, payment_id).status == "succeeded"
    assert row(res, Order, order_id).status == order_status and history(res, order_id) == []
    with res.uow() as uow:
        [refund] = uow.session.execute(select(Refund.__table__)).all()
    assert (refund.payment_id, refund.amount, refund.status) == (payment_id, Decimal("88.80"),
                                                                 "pending")
    names = [e.event for e in events(res, payment_id)]
    assert names[-1] == "refund_requested"
    assert names[0] == ("payment_succeeded" if payment_status == "processing"
                        else "late_payment_received")
    assert events(res, payment_id, "refund_requested")[0].detail["refund_id"] == refund.id
    assert f"full refund {refund.id}" in row(res, ProviderCallback, callback_id).last_error
    assert broker.queued("payments") == [{"task": "refunds.execute", "args": [refund.id]}]


def test_late_success_after_another_attempt_paid_the_order_is_refunded(quiet):
    res, broker = quiet
    order_id = make_order(res)
    first = make_payment(res, order_id, status="expired")
    second = make_payment(res, order_id, status="processing", attempt=2)
    apply(res, event_body(second, transaction_id="txn_2"))

    outcome, _ = apply(res, event_body(first, transaction_id="txn_1"))

    assert outcome == "processed"
    assert row(res, Payment, first).status == "succeeded"
    assert history(res, order_id) == [("pending", "paid")]
    assert len(events(res, first, "refund_requested")) == 1
    assert [m["task"] for m in broker.queued("payments")] == ["refunds.execute"]


def test_a_success_found_by_status_query_and_its_callback_apply_once(quiet):
    """The janitor's path (services.provider_sync) shares the settlement rules."""
    res, _ = quiet
    order_id, payment_id = new_payment(res)
    found = parse_callback_body(event_body(payment_id, event_id="status-query:ref",
                                           transaction_id="txn_Q"))
    with res.uow() as uow:
        settlement = settle_provider_report(uow.session, found, provider="sandbox",
                                            actor="janitor")
        uow.commit()
    assert settlement.status == "processed" and settlement.refund_id is None
    [succeeded] = events(res, payment_id)
    assert succeeded.event == "payment_succeeded" and succeeded.actor == "janitor"
    assert "callback_id" not in succeeded.detail

    outcome, callback_id = apply(res, event_body(payment_id, transaction_id="txn_Q"))

    assert outcome == "processed"
    assert "already succeeded" in row(res, ProviderCallback, callback_id).last_error
    assert [e.event for e in events(res, payment_id)] == ["payment_succeeded"]
    assert history(res, order_id) == [("pending", "paid")]


# --- refund.succeeded / refund.failed -----------------------------------------------------

def refund_body(payment_id, refund_id, amount, event_type="refund.succeeded"):
    return event_body(payment_id, event_type=event_type, amount=amount, refund_id=refund_id,
                      transaction_id=f"rf_{refund_id}")


def test_partial_then_full_refund_moves_payment_and_order(quiet):
    res, _ = quiet
    order_id, payment_id = new_payment(res, status="succeeded", order_status="refunding")
    first = add_refund(res, payment_id, "30.00")

    assert apply(res, refund_body(payment_id, first, "30.00"))[0] == "processed"

    payment = row(res, Payment, payment_id)
    assert (payment.status, payment.refunded_amount) == ("partially_refunded", Decimal("30.00"))
    refund = row(res, Refund, first)
    assert (refund.status, refund.provider_refund_id) == ("succeeded", f"rf_{first}")
    assert refund.completed_at is not None
    assert row(res, Order, order_id).status == "paid"  # money is still with us

    with res.uow() as uow:  # the refunds API would do this; here by hand
        uow.session.execute(update(Order).where(Order.id == order_id).values(status="refunding"))
        uow.commit()
    rest = add_refund(res, payment_id, "70.00")
    assert apply(res, refund_body(payment_id, rest, "70.00"))[0] == "processed"

    payment = row(res, Payment, payment_id)
    assert (payment.status, payment.refunded_amount) == ("refunded", Decimal("100.00"))
    assert row(res, Order, order_id).status == "refunded"
    assert [e.event for e in events(res, payment_id)] == ["refund_succeeded",
                                                          "refund_succeeded"]
    # a redelivery of the first refund's success changes nothing
    assert apply(res, refund_body(payment_id, first, "30.00"))[0] == "processed"
    assert row(res, Payment, payment_id).refunded_amount == Decimal("100.00")


def test_failed_refund_returns_the_order_to_paid(quiet):
    res, _ = quiet
    order_id, payment_id = new_payment(res, status="succeeded", order_status="refunding")
    refund_id = add_refund(res, payment_id, "100.00", status="processing")

    outcome, _ = apply(res, refund_body(payment_id, refund_id, "100.00", "refund.failed"))

    assert outcome == "processed"
    assert row(res, Refund, refund_id).status == "failed"
    assert row(res, Payment, payment_id).status == "succeeded"
    assert row(res, Order, order_id).status == "paid"
    assert [e.event for e in events(res, payment_id)] == ["refund_failed"]


def test_refund_failure_never_regresses_a_refund_success(quiet):
    res, _ = quiet
    _, payment_id = new_payment(res, status="succeeded", order_status="refunding")
    refund_id = add_refund(res, payment_id, "100.00")
    apply(res, refund_body(payment_id, refund_id, "100.00"))

    outcome, callback_id = apply(res, refund_body(payment_id, refund_id, "100.00",
                                                  "refund.failed"))

    assert outcome == "processed"
    assert row(res, Refund, refund_id).status == "succeeded"
    assert row(res, Payment, payment_id).status == "refunded"
    assert "ignored" in row(res, ProviderCallback, callback_id).last_error


def test_unknown_or_foreign_refund_is_unmatched(quiet):
    res, _ = quiet
    _, payment_id = new_payment(res, status="succeeded")
    _, other_payment = new_payment(res, status="succeeded")
    foreign = add_refund(res, other_payment, "10.00")

    assert apply(res, refund_body(payment_id, UNKNOWN_ID, "10.00"))[0] == "unmatched"
    assert apply(res, refund_body(payment_id, foreign, "10.00"))[0] == "unmatched"
    assert row(res, Refund, foreign).status == "pending"
    assert len(events(res, name="callback_unmatched")) == 2


def test_refund_amount_mismatch_is_rejected(quiet):
    """The provider refunded another amount than ours: neither is settled; the refund and
    its payment are flagged, and the audit row says both amounts."""
    res, _ = quiet
    _, payment_id = new_payment(res, status="succeeded")
    refund_id = add_refund(res, payment_id, "10.00", status="processing")
    assert apply(res, refund_body(payment_id, refund_id, "10.01"))[0] == "rejected"
    refund = row(res, Refund, refund_id)
    assert (refund.status, refund.needs_review, refund.completed_at) == (
        "processing", True, None)
    payment = row(res, Payment, payment_id)
    assert payment.needs_review and payment.status == "succeeded"
    assert payment.refunded_amount == 0
    [mismatch] = events(res, payment_id, "amount_mismatch")
    assert (mismatch.detail["received_amount"], mismatch.detail["expected_amount"],
            mismatch.detail["refund_id"]) == ("10.01", "10.00", refund_id)
    assert events(res, payment_id, "refund_succeeded") == []


# --- attempts, locks, redelivery ----------------------------------------------------------

def test_poison_callback_ends_failed_with_its_error_after_max_attempts(quiet):
    res, _ = quiet
    _, payment_id = new_payment(res)
    callback_id = store_callback(res, event_body(payment_id))
    with res.db.engine.begin() as conn:  # every update of this payment fails, as a bug would
        conn.execute(text(
            "CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'poisoned payment'; END $$"))
        conn.execute(text(
            f"CREATE TRIGGER test_poison BEFORE UPDATE ON payments FOR EACH ROW "
            f"WHEN (OLD.id = {payment_id}) EXECUTE FUNCTION test_poison()"))
    try:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            with pytest.raises(Exception, match="poisoned payment"):
                process_callback(res, callback_id)
            inbox = row(res, ProviderCallback, callback_id)
            assert (inbox.status, inbox.attempts) == ("received", attempt)
            assert "poisoned payment" in inbox.last_error

        assert process_callback(res, callback_id) == "failed"
    finally:
        with res.db.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS test_poison ON payments"))
            conn.execute(text("DROP FUNCTION IF EXISTS test_poison()"))

    inbox = row(res, ProviderCallback, callback_id)
    assert (inbox.status, inbox.attempts) == ("failed", MAX_ATTEMPTS + 1)
    assert "gave up after 5 attempts" in inbox.last_error
    assert "poisoned payment" in inbox.last_error
    assert row(res, Payment, payment_id).status == "processing"
    assert process_callback(res, callback_id) == "already failed"


def test_busy_payment_lock_defers_without_spending_an_attempt(quiet):
    res, _ = quiet
    _, payment_id = new_payment(res)
    callback_id = store_callback(res, event_body(payment_id))
    with payment_lock(res.redis, payment_id, ttl_seconds=30, blocking_timeout=0):
        with pytest.raises(LockBusy):
            process_callback(res, callback_id)
    assert row(res, ProviderCallback, callback_id).attempts == 0
    assert process_callback(res, callback_id) == "processed"


def test_a_callback_whose_row_is_gone_is_skipped(quiet):
    res, _ = quiet
    assert process_callback(res, UNKNOWN_ID) == "missing"


def test_redelivery_enqueues_only_rows_stuck_in_received(quiet):
    res, broker = quiet
    _, p1 = new_payment(res)
    _, p2 = new_payment(res)
    _, p3 = new_payment(res)
    stuck = store_callback(res, event_body(p1))
    fresh = store_callback(res, event_body(p2))
    done = store_callback(res, event_body(p3))
    with res.uow() as uow:
        old = func.now() - text("interval '2 minutes'")
        uow.session.execute(update(ProviderCallback)
                            .where(ProviderCallback.id.in_([stuck, done]))
                            .values(received_at=old, updated_at=old))
        uow.session.execute(update(ProviderCallback).where(ProviderCallback.id == done)
                            .values(status="processed"))
        uow.commit()

    assert redeliver_stuck(res) == 1
    assert broker.queued("callbacks") == [{"task": "callbacks.process", "args": [stuck]}]
    assert redeliver_stuck(res) == 0  # sent a moment ago: left alone for a while
    assert redeliver_stuck(res, older_than_seconds=0) == 2  # stuck and fresh
    assert {m["args"][0] for m in broker.queued("callbacks")} == {stuck, fresh}
    assert process_callback(res, fresh) == "processed"


def test_redelivery_works_in_batches(quiet):
    res, broker = quiet
    ids = [store_callback(res, event_body(new_payment(res)[1])) for _ in range(7)]
    assert redeliver_stuck(res, older_than_seconds=0, batch_size=3) == 7
    assert sorted(m["args"][0] for m in broker.queued("callbacks")) == ids


# --- through HTTP and a real worker -------------------------------------------------------

@pytest.mark.slow
def test_100_concurrent_deliveries_of_one_success_apply_once(api, clean_db, celery_worker):
    res = clean_db
    order_id, payment_id = new_payment(res)
    same = event_body(payment_id, event_id="evt_same", transaction_id="txn_once")
    bodies = [same] * 50 + [event_body(payment_id, event_id=f"evt_new_{i}",
                                       transaction_id="txn_once") for i in range(50)]
    barrier = threading.Barrier(20)
    local = threading.local()

    def deliver(body: bytes) -> requests.Response:
        if not hasattr(local, "http"):
            local.http = requests.Session()
            barrier.wait(timeout=30)  # start together
        return post_callback(api.base_url, body, headers=signed_headers(body),
                             session=local.http)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(deliver, bodies))

    assert [r.status_code for r in responses] == [200] * 100
    duplicates = [r.json()["duplicate"] for r in responses]
    assert duplicates.count(False) == 51 and duplicates.count(True) == 49

    def settled() -> bool:
        with res.uow() as uow:
            return uow.session.execute(select(func.count()).select_from(ProviderCallback)
                                       .where(ProviderCallback.status == "received")
                                       ).scalar_one() == 0
    wait_until(settled, timeout=120, message="all 51 stored callbacks processed")

    with res.uow() as uow:
        statuses = uow.session.execute(select(ProviderCallback.status, func.count())
                                       .group_by(ProviderCallback.status)).all()
    assert dict(statuses) == {"processed": 51}
    assert row(res, Payment, payment_id).status == "succeeded"
    assert [e.event for e in events(res, payment_id)] == ["payment_succeeded"]
    assert history(res, order_id) == [("pending", "paid")]
