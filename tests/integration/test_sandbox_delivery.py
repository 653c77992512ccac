"""The sandbox's delivery attempts on the real database, driven directly (no worker):
what happens when a delivery is missing, not yet due, or runs out of attempts."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy import func, select

from devstack.embedded import free_port
from standins.sandbox.delivery import attempt_delivery
from standins.sandbox.events import MAX_ATTEMPTS
from standins.sandbox.models import SandboxDelivery, SandboxPayment


def insert_deliveries(res, *, attempts=0, due_in_seconds=0, url=None):
    """A ticket with one pending delivery and a copy waiting behind it."""
    with res.uow() as uow:
        session = uow.session
        now = session.scalar(select(func.now()))
        ticket = SandboxPayment(ticket="tkt_0001", merchant_payment_id=1,
                                amount=Decimal("10.00"), currency="CNY", method="wechat",
                                status="succeeded", test_options={})
        session.add(ticket)
        session.flush()
        fields = dict(sandbox_payment_id=ticket.id, event_id="evt_1",
                      event_type="payment.succeeded", body=b"{}",
                      url=url or f"http://127.0.0.1:{free_port()}/callbacks/sandbox")
        first = SandboxDelivery(status="pending", attempts=attempts,
                                not_before=now + timedelta(seconds=due_in_seconds), **fields)
        session.add(first)
        session.flush()
        copy = SandboxDelivery(status="waiting", after_delivery_id=first.id, **fields)
        session.add(copy)
        session.flush()
        ids = first.id, copy.id
        uow.commit()
    return ids


def row(res, delivery_id):
    with res.uow() as uow:
        found = uow.session.get(SandboxDelivery, delivery_id)
        return SimpleNamespace(status=found.status, attempts=found.attempts,
                               last_status=found.last_status, last_error=found.last_error)


def test_a_missing_delivery_is_left_alone(clean_db):
    assert attempt_delivery(clean_db, 424242).state == "missing"


def test_a_delivery_not_yet_due_is_rescheduled_without_an_attempt(clean_db):
    first, _ = insert_deliveries(clean_db, due_in_seconds=30)
    outcome = attempt_delivery(clean_db, first)
    assert outcome.state == "pending" and 25 < outcome.retry_in <= 30
    assert row(clean_db, first).attempts == 0


def test_a_refused_connection_is_a_failed_attempt_with_backoff(clean_db):
    first, _ = insert_deliveries(clean_db)
    outcome = attempt_delivery(clean_db, first)
    assert outcome.state == "pending" and 0 < outcome.retry_in <= 1
    stored = row(clean_db, first)
    assert stored.attempts == 1 and stored.last_status is None
    assert "ConnectionError" in stored.last_error
    # The slot is claimed: running again at once does not make a second attempt.
    assert attempt_delivery(clean_db, first).retry_in > 0
    assert row(clean_db, first).attempts == 1


def test_the_last_failed_attempt_abandons_and_releases_what_waited(clean_db):
    first, copy = insert_deliveries(clean_db, attempts=MAX_ATTEMPTS - 1)
    outcome = attempt_delivery(clean_db, first)
    assert outcome.state == "abandoned" and outcome.retry_in is None
    assert row(clean_db, first).attempts == MAX_ATTEMPTS
    assert row(clean_db, copy).status == "pending"  # released, and queued after commit
    assert attempt_delivery(clean_db, first).state == "abandoned"  # finished stays finished
