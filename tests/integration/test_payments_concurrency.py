"""One active payment per order under concurrency, and `pay` through a real Celery worker.

Concurrent requests are real HTTP from threads against the threaded live server;
the database decides, so the tests assert on rows, not on timing.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError

from domain.models import Payment, PaymentEvent
from services.api_keys import Principal
from services.payment_attempts import AttemptResult, insert_attempt, lock_order
from tests.support.factories import make_order, make_payment
from tests.support.processes import wait_until

ADMIN = Principal(key_id=0, role="admin", user_id=None)


def run_concurrently(n: int, call):
    """Start n threads at one barrier and return their results in order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:  # reported, not swallowed: the assertions see it
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def payments_of(res, order_id: int) -> list[tuple[int, str, int]]:
    with res.uow() as uow:
        return [tuple(r) for r in uow.session.execute(
            select(Payment.id, Payment.status, Payment.attempt)
            .where(Payment.order_id == order_id).order_by(Payment.id))]


def event_count(res, event: str, payment_id: int | None = None) -> int:
    query = select(func.count()).select_from(PaymentEvent).where(PaymentEvent.event == event)
    if payment_id is not None:
        query = query.where(PaymentEvent.payment_id == payment_id)
    with res.uow() as uow:
        return uow.session.execute(query).scalar_one()


def test_twenty_concurrent_creates_make_exactly_one_payment(api, make_user_key, clean_db):
    order_id = make_order(clean_db, user_id=1)
    client = api.as_key(make_user_key(1))
    responses = run_concurrently(
        20, lambda: client.post("/api/v1/payments", json={"order_id": order_id}))
    assert all(not isinstance(r, Exception) for r in responses), responses
    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 1 and statuses[200] == 19, statuses
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(payments_of(clean_db, order_id)) == 1
    assert event_count(clean_db, "payment_created") == 1


def test_the_database_itself_allows_one_active_payment_per_order(clean_db):
    order_id = make_order(clean_db)
    make_payment(clean_db, order_id, status="init")
    with pytest.raises(IntegrityError, match="uq_payments_one_active_per_order"):
        make_payment(clean_db, order_id, status="processing", attempt=2)
    make_payment(clean_db, order_id, status="failed", attempt=3)  # inactive ones are fine
    assert [s for _, s, _ in payments_of(clean_db, order_id)] == ["init", "failed"]


def test_an_insert_refused_by_the_index_is_reported_not_raised(clean_db):
    """The path a creator takes if it ever races past the order lock: the index wins.
    Neither creator here holds the lock (the other's insert would wait for it: a
    payment's foreign key share-locks its order). The other's active payment is not yet
    committed, so ours cannot see it; our insert waits on the index until it commits,
    then inserts nothing and says so, its transaction still usable."""
    order_id = make_order(clean_db)
    with clean_db.uow() as uow:  # the order as read under its lock, but the lock let go
        order = lock_order(uow.session, ADMIN, order_id)
    outcome: dict = {}

    def ours() -> None:
        with clean_db.uow() as uow:
            outcome["attempt"] = insert_attempt(
                uow.session, order, method="wechat", provider="sandbox",
                fee=Decimal("0.60"), expires_at=order.now + timedelta(minutes=30),
                actor="test")
            outcome["payments"] = uow.session.execute(
                select(func.count()).select_from(Payment)).scalar_one()
            uow.commit()

    with clean_db.db.engine.connect() as racer:
        raced = racer.execute(insert(Payment).values(
            order_id=order_id, user_id=1, amount=Decimal("100.00"), currency="CNY",
            method="wechat", status="init", provider="sandbox", attempt=5,
            fee=Decimal("0.00"), expires_at=datetime.now(UTC) + timedelta(minutes=30))
            .returning(Payment.id)).scalar_one()
        thread = threading.Thread(target=ours)
        thread.start()
        wait_until(lambda: _waiting_on_a_lock(clean_db) == 1, timeout=10)
        racer.commit()
        thread.join(10)

    assert outcome["attempt"] == AttemptResult(None, None, None)
    assert outcome["payments"] == 1  # after the refusal, in the same transaction
    assert payments_of(clean_db, order_id) == [(raced, "init", 5)]
    assert event_count(clean_db, "payment_created") == 0


def _waiting_on_a_lock(res) -> int:
    with res.db.engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar_one()


def test_ten_concurrent_retries_make_at_most_one_new_attempt(api, make_user_key, clean_db):
    order_id = make_order(clean_db, user_id=1)
    failed = make_payment(clean_db, order_id, status="failed",
                          created_at=datetime.now(UTC) - timedelta(minutes=2))
    client = api.as_key(make_user_key(1))
    responses = run_concurrently(
        10, lambda: client.post(f"/api/v1/payments/{failed}/retry"))
    assert all(not isinstance(r, Exception) for r in responses), responses
    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 1 and statuses[200] == 9, statuses
    rows = payments_of(clean_db, order_id)
    assert len(rows) == 2
    new_id = rows[1][0]
    assert {r.json()["id"] for r in responses} == {new_id}
    assert rows[1][1:] == ("init", 2)


def test_concurrent_create_and_retry_still_make_one_attempt(api, make_user_key, clean_db):
    order_id = make_order(clean_db, user_id=1)
    failed = make_payment(clean_db, order_id, status="failed",
                          created_at=datetime.now(UTC) - timedelta(minutes=2))
    client = api.as_key(make_user_key(1))
    calls = [lambda: client.post("/api/v1/payments", json={"order_id": order_id}),
             lambda: client.post(f"/api/v1/payments/{failed}/retry")] * 5
    counter = iter(range(10))
    lock = threading.Lock()

    def one_call():
        with lock:
            i = next(counter)
        return calls[i]()

    responses = run_concurrently(10, one_call)
    # one call makes the attempt (201); the nine others get that same attempt (200)
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201], \
        [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(payments_of(clean_db, order_id)) == 2


def _queue_drained(res) -> bool:
    """No message waiting or delivered-but-unacked on the broker (acks_late: done = acked)."""
    return res.redis.llen("payments") == 0 and res.redis.hlen("unacked") == 0


@pytest.mark.slow
def test_pay_is_started_once_by_a_real_worker_even_when_sent_twice(
        api, make_user_key, clean_db, celery_worker):
    order_id = make_order(clean_db, user_id=1)
    client = api.as_key(make_user_key(1))
    payment_id = client.post("/api/v1/payments", json={"order_id": order_id}).json()["id"]

    first = client.post(f"/api/v1/payments/{payment_id}/pay")
    assert first.status_code == 202
    # A redelivered or duplicated message must not start it twice.
    assert clean_db.queue.send("payments.initiate", payment_id)
    assert clean_db.queue.send("payments.initiate", payment_id)

    assert first.json()["status"] == "processing"  # accepted; the provider payment follows
    wait_until(lambda: client.get(f"/api/v1/payments/{payment_id}").json()["pay_url"],
               timeout=30, message="the worker's provider payment")
    wait_until(lambda: _queue_drained(clean_db), timeout=30, message="payments queue drained")
    again = client.post(f"/api/v1/payments/{payment_id}/pay")
    assert (again.status_code, again.json()["status"]) == (202, "processing")
    assert event_count(clean_db, "payment_started", payment_id) == 1
    logs = client.get(f"/api/v1/payments/{payment_id}").json()["logs"]
    assert [e["event"] for e in logs] == [
        "payment_created", "payment_start_requested", "payment_started"]
    assert [e["actor"] for e in logs[1:]] == ["user:1", "worker"]


@pytest.mark.slow
def test_initiate_for_a_payment_that_no_longer_exists_is_dropped(clean_db, celery_worker,
                                                                 tmp_run_dir):
    """A task can outlive its row (tests truncate, operators delete): log and move on."""
    assert clean_db.queue.send("payments.initiate", 987654321)
    assert clean_db.queue.send("payments.initiate", "not-an-id")
    wait_until(lambda: _queue_drained(clean_db), timeout=30, message="payments queue drained")
    log = (tmp_run_dir / "worker.log").read_text()
    assert "payment 987654321 does not exist" in log
    assert "payments.initiate: ignoring a message with a non-integer id 'not-an-id'" in log
    assert celery_worker.poll() is None
