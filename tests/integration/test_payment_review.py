"""Payments flagged for review (issue #18): listed with GET /payments?needs_review=true,
resolved by an admin with POST /payments/{id}/review, audited.

The flags are raised the way production raises them: a stored callback applied by
services.callbacks.process_callback (what the worker runs) on real PostgreSQL and Redis.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select

from domain.models import Order, Payment, PaymentEvent, Refund
from services.callbacks import process_callback
from tests.support.callbacks import event_body, store_callback
from tests.support.factories import make_order, make_payment


@pytest.fixture
def admin(api, admin_key):
    return api.as_key(admin_key)


def apply(res, body: bytes) -> str:
    return process_callback(res, store_callback(res, body))


def processing_payment(res, amount: str = "100.00") -> tuple[int, int]:
    order_id = make_order(res, total=amount)
    return order_id, make_payment(res, order_id, amount=amount, status="processing")


def mismatched(res) -> int:
    """A payment the provider reported with another amount: not paid, flagged."""
    _, payment_id = processing_payment(res)
    assert apply(res, event_body(payment_id, amount="99.99")) == "rejected"
    return payment_id


def captured_twice(res) -> tuple[int, int]:
    """A paid payment the provider reported captured again under another transaction."""
    order_id, payment_id = processing_payment(res)
    assert apply(res, event_body(payment_id, transaction_id="txn_A")) == "processed"
    assert apply(res, event_body(payment_id, transaction_id="txn_B")) == "rejected"
    return order_id, payment_id


def flagged(res, payment_id: int) -> bool:
    with res.uow() as uow:
        return bool(uow.session.execute(
            select(Payment.needs_review).where(Payment.id == payment_id)).scalar_one())


def audit(res, payment_id: int, event: str) -> list:
    table = PaymentEvent.__table__
    with res.uow() as uow:
        return list(uow.session.execute(
            select(table).where(table.c.payment_id == payment_id, table.c.event == event)))


def refunds_of(res, payment_id: int) -> list[tuple[str, str]]:
    with res.uow() as uow:
        return [(str(r.amount), r.status) for r in uow.session.execute(
            select(Refund).where(Refund.payment_id == payment_id)).scalars()]


def test_the_listing_filters_on_needs_review(admin, clean_db):
    flagged_id = mismatched(clean_db)
    _, plain_id = processing_payment(clean_db)

    only_flagged = admin.get("/api/v1/payments?needs_review=true").json()
    assert [p["id"] for p in only_flagged["items"]] == [flagged_id]
    assert only_flagged["total"] == 1 and only_flagged["items"][0]["needs_review"] is True
    others = admin.get("/api/v1/payments?needs_review=false").json()
    assert [p["id"] for p in others["items"]] == [plain_id]
    assert len(admin.get("/api/v1/payments").json()["items"]) == 2

    bad = admin.get("/api/v1/payments?needs_review=maybe")
    assert bad.status_code == 400
    assert (bad.json()["code"], bad.json()["field"]) == ("invalid_field", "needs_review")


def test_accept_clears_the_flag_keeps_the_outcome_and_is_audited(admin, clean_db):
    payment_id = mismatched(clean_db)

    answer = admin.post(f"/api/v1/payments/{payment_id}/review",
                        json={"action": "accept", "note": "customer paid the rest by bank"})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["action"], body["refund"]) == ("accept", None)
    assert (body["payment"]["status"], body["payment"]["needs_review"]) == ("processing", False)
    assert not flagged(clean_db, payment_id)
    [decision] = audit(clean_db, payment_id, "review_accepted")
    assert decision.actor == "admin"
    assert decision.detail["note"] == "customer paid the rest by bank"
    assert body["payment"]["logs"][-1]["event"] == "review_accepted"
    assert refunds_of(clean_db, payment_id) == []

    again = admin.post(f"/api/v1/payments/{payment_id}/review", json={"action": "accept"})
    assert again.status_code == 409
    assert again.json()["code"] == "payment_not_flagged"
    assert len(audit(clean_db, payment_id, "review_accepted")) == 1


def test_refund_starts_a_full_refund_and_clears_the_flag_in_one_go(admin, clean_db):
    order_id, payment_id = captured_twice(clean_db)

    answer = admin.post(f"/api/v1/payments/{payment_id}/review",
                        json={"action": "refund", "note": "captured twice"})

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["refund"]["amount"], body["refund"]["status"]) == ("100.00", "pending")
    assert body["payment"]["needs_review"] is False
    assert refunds_of(clean_db, payment_id) == [("100.00", "pending")]
    [decision] = audit(clean_db, payment_id, "review_refunded")
    assert decision.detail["refund_id"] == body["refund"]["id"]
    assert len(audit(clean_db, payment_id, "refund_requested")) == 1
    with clean_db.uow() as uow:
        assert uow.session.execute(
            select(Order.status).where(Order.id == order_id)).scalar_one() == "refunding"


def test_a_refused_refund_changes_nothing(admin, clean_db):
    """A mismatched payment was never paid: there is nothing to refund, and the flag,
    the refunds and the audit trail stay as they were."""
    payment_id = mismatched(clean_db)

    answer = admin.post(f"/api/v1/payments/{payment_id}/review", json={"action": "refund"})

    assert answer.status_code == 409
    assert answer.json()["code"] == "payment_not_refundable"
    assert flagged(clean_db, payment_id)
    assert refunds_of(clean_db, payment_id) == []
    assert audit(clean_db, payment_id, "review_refunded") == []


@pytest.mark.parametrize("body", [{"action": "delete"}, {}, {"action": 1},
                                  {"action": "accept", "note": ""},
                                  {"action": "accept", "extra": 1}])
def test_bad_decisions_are_400_and_change_nothing(admin, clean_db, body):
    payment_id = mismatched(clean_db)

    answer = admin.post(f"/api/v1/payments/{payment_id}/review", json=body)

    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] in ("invalid_review_action", "invalid_field",
                                     "unknown_field")
    assert flagged(clean_db, payment_id)
    with clean_db.uow() as uow:
        assert uow.session.execute(select(func.count()).select_from(PaymentEvent).where(
            PaymentEvent.event.like("review_%"))).scalar_one() == 0


def test_only_an_admin_resolves_a_review(api, make_user_key, clean_db):
    payment_id = mismatched(clean_db)
    user = api.as_key(make_user_key(1))  # the payment's owner

    answer = user.post(f"/api/v1/payments/{payment_id}/review", json={"action": "accept"})

    assert answer.status_code == 403
    assert flagged(clean_db, payment_id)


def test_an_unknown_payment_is_404(admin, clean_db):
    answer = admin.post("/api/v1/payments/999999999/review", json={"action": "accept"})
    assert (answer.status_code, answer.json()["code"]) == (404, "payment_not_found")


def test_accept_also_clears_the_flags_of_the_payments_refunds(admin, clean_db):
    """A refund the provider accepted but could not pay out (REFUND.ABNORMAL) flags the
    refund and its payment; the admin's decision on the payment settles both flags."""
    _, payment_id = captured_twice(clean_db)
    with clean_db.uow() as uow:
        refund_id = uow.session.execute(insert(Refund).values(
            payment_id=payment_id, amount=Decimal("100.00"), currency="CNY",
            status="processing", needs_review=True).returning(Refund.id)).scalar_one()
        uow.commit()

    answer = admin.post(f"/api/v1/payments/{payment_id}/review", json={"action": "accept"})

    assert answer.status_code == 200, answer.text
    with clean_db.uow() as uow:
        assert uow.session.execute(select(Refund.needs_review, Refund.status).where(
            Refund.id == refund_id)).one() == (False, "processing")
    [decision] = audit(clean_db, payment_id, "review_accepted")
    assert decision.detail["refunds_cleared"] == [refund_id]


def test_two_admins_deciding_at_once_decide_once(admin, clean_db):
    _, payment_id = captured_twice(clean_db)
    barrier = threading.Barrier(2)
    answers = []

    def decide(action: str) -> None:
        client = admin.as_key(admin.key)  # a connection of its own
        barrier.wait()
        answers.append(client.post(f"/api/v1/payments/{payment_id}/review",
                                   json={"action": action}))

    threads = [threading.Thread(target=decide, args=(a,)) for a in ("refund", "accept")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(a.status_code for a in answers)[-1] == 409, [a.text for a in answers]
    assert len([a for a in answers if a.status_code in (200, 202)]) == 1
    [refused] = [a.json() for a in answers if a.status_code == 409]
    assert refused["code"] == "payment_not_flagged"
    decisions = (audit(clean_db, payment_id, "review_accepted")
                 + audit(clean_db, payment_id, "review_refunded"))
    assert len(decisions) == 1
    assert len(refunds_of(clean_db, payment_id)) == (
        1 if decisions[0].event == "review_refunded" else 0)
