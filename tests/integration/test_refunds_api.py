"""POST/GET /payments/{id}/refunds over real HTTP (DESIGN.md §4, §5).

Rules: admin only; from succeeded or partially_refunded; refundable methods; an
amount well-formed, positive and within what remains (amount - refunded - refunds
in flight), checked under the payment's row lock. Tests that create refunds run
them to the end with a real worker and the sandbox provider.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select, update

from domain.models import Payment, Refund
from services.maintenance import expire_stale_orders
from tests.support.factories import make_order, make_payment
from tests.support.payment_flow import PaymentFlow
from tests.support.processes import wait_until

CONCURRENT = 4  # full refunds of one payment sent at the same moment


@pytest.fixture
def admin(api, admin_key):
    return api.as_key(admin_key)


@pytest.fixture
def flow(api, admin_key, settings, clean_db, celery_worker) -> PaymentFlow:
    return PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)


def refund_count(res) -> int:
    with res.uow() as uow:
        return uow.session.execute(select(func.count()).select_from(Refund)).scalar_one()


def a_succeeded_payment(res, *, amount: str = "100.00", method: str = "wechat",
                        status: str = "succeeded", user_id: int = 1) -> int:
    order_id = make_order(res, total=amount, status="paid", user_id=user_id)
    return make_payment(res, order_id, amount=amount, method=method, status=status,
                        user_id=user_id)


# --- concurrency, end to end -------------------------------------------------------------

def test_concurrent_full_refunds_accept_one_and_the_money_goes_back_once(flow):
    payment, pay_url = flow.paid("100.00")
    barrier = threading.Barrier(CONCURRENT)
    answers = []

    def refund_all() -> None:
        client = flow.admin.as_key(flow.admin.key)  # a connection of its own
        barrier.wait()
        answers.append(client.post(f"/api/v1/payments/{payment['id']}/refunds", json={}))

    threads = [threading.Thread(target=refund_all) for _ in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202] + [400] * (CONCURRENT - 1), [a.text for a in answers]
    for refused in (a.json() for a in answers if a.status_code == 400):
        assert (refused["code"], refused["remaining"]) == ("refund_exceeds_remaining", "0.00")
    [accepted] = [a.json() for a in answers if a.status_code == 202]
    assert (accepted["amount"], accepted["status"]) == ("100.00", "pending")

    flow.wait_refund(payment["id"], accepted["id"], "succeeded")
    flow.settle(pay_url)
    [refund] = flow.refunds(payment["id"])
    # Its merchant reference was fixed when the provider was first asked (DESIGN.md §6b).
    assert accepted["out_refund_no"] is None
    assert refund["out_refund_no"] == f"R{accepted['id']:010d}"
    done = flow.get(payment["id"])
    assert (done["status"], done["refunded_amount"]) == ("refunded", "100.00")
    assert flow.get_order(payment["order_id"])["status"] == "refunded"
    assert flow.at_provider(pay_url)["refunded_amount"] == "100.00"


def test_a_refund_the_provider_refuses_fails_and_the_order_goes_back_to_paid(flow):
    """§4: refunding -> paid when the refund fails (the sandbox's fail_refunds knob)."""
    payment, pay_url = flow.paid("50.00")
    flow.test_options(pay_url, fail_refunds=True)

    answer = flow.admin.post(f"/api/v1/payments/{payment['id']}/refunds",
                             json={"reason": "customer changed their mind"})
    assert answer.status_code == 202, answer.text
    flow.wait_refund(payment["id"], answer.json()["id"], "failed")
    flow.settle(pay_url)

    after = flow.get(payment["id"])
    assert (after["status"], after["refunded_amount"]) == ("succeeded", "0.00")
    order = flow.get_order(payment["order_id"])
    assert [(h["from"], h["to"]) for h in order["history"]][-2:] == [
        ("paid", "refunding"), ("refunding", "paid")]
    assert [e for e, _ in flow.events(payment["id"])][-2:] == [
        "refund_requested", "refund_failed"]


def test_a_late_payment_is_refunded_automatically_through_refunds_execute(flow):
    """§6: a success for a payment whose order expired meanwhile is applied, then sent
    back in full by the same refunds.execute path an admin's refund takes."""
    order = flow.order("42.00")
    payment = flow.payment(order["id"])
    pay_url = flow.pay(payment["id"])
    flow.test_options(pay_url, out_of_order=True)  # the success callback is held back
    flow.press(pay_url, "approve")
    flow.move_back("orders", order["id"], 25 * 3600, "created_at")  # past ORDER_TTL
    assert expire_stale_orders(flow.res)["payments_cancelled"] == 1

    flow.test_options(pay_url, out_of_order=False)  # now the success arrives, late

    [refund] = wait_refunds(flow, payment["id"])
    flow.wait_refund(payment["id"], refund["id"], "succeeded")
    flow.settle(pay_url)
    final = flow.get(payment["id"])
    assert (final["status"], final["refunded_amount"]) == ("refunded", "42.00")
    assert flow.get_order(order["id"])["status"] == "expired"
    assert [e for e, _ in flow.events(payment["id"])] == [
        "payment_created", "payment_start_requested", "payment_started",
        "payment_cancelled", "late_payment_received",
        "refund_requested", "refund_succeeded"]
    assert flow.at_provider(pay_url)["refunded_amount"] == "42.00"


def wait_refunds(flow: PaymentFlow, payment_id: int) -> list:
    return wait_until(lambda: flow.refunds(payment_id), timeout=30, message="a refund")


# --- validation: nothing is written ------------------------------------------------------

@pytest.mark.parametrize(("body", "code"), [
    ({"amount": "0"}, "invalid_amount"), ({"amount": "-5.00"}, "invalid_amount"),
    ({"amount": "abc"}, "invalid_amount"), ({"amount": "1.005"}, "invalid_amount"),
    ({"amount": True}, "invalid_amount"), ({"amount": "100.01"}, "refund_exceeds_remaining"),
    ({"reason": 7}, "invalid_field"), ({"reason": "r" * 501}, "invalid_field"),
])
def test_bad_refund_requests_are_400_and_write_nothing(admin, clean_db, body, code):
    payment_id = a_succeeded_payment(clean_db)
    answer = admin.post(f"/api/v1/payments/{payment_id}/refunds", json=body)
    assert (answer.status_code, answer.json()["code"]) == (400, code), answer.text
    assert answer.json()["detail"]
    assert refund_count(clean_db) == 0


def test_not_valid_json_is_400(admin, clean_db):
    payment_id = a_succeeded_payment(clean_db)
    answer = admin.post(f"/api/v1/payments/{payment_id}/refunds", data="[1]",
                        headers={"Content-Type": "application/json"})
    assert (answer.status_code, answer.json()["code"]) == (400, "malformed_json")


def test_what_remains_counts_refunds_already_in_flight(admin, clean_db):
    payment_id = a_succeeded_payment(clean_db, status="partially_refunded")
    with clean_db.uow() as uow:  # 10.00 came back already, 60.00 is on its way
        uow.session.execute(insert(Refund), [
            {"payment_id": payment_id, "amount": Decimal("60.00"), "currency": "CNY",
             "status": "processing"},
            {"payment_id": payment_id, "amount": Decimal("5.00"), "currency": "CNY",
             "status": "failed"}])
        uow.session.execute(update(Payment).where(Payment.id == payment_id)
                            .values(refunded_amount=Decimal("10.00")))
        uow.commit()

    answer = admin.post(f"/api/v1/payments/{payment_id}/refunds", json={"amount": "30.01"})
    assert answer.status_code == 400
    assert (answer.json()["code"], answer.json()["remaining"]) == (
        "refund_exceeds_remaining", "30.00")
    assert refund_count(clean_db) == 2


@pytest.mark.parametrize("status", ["init", "processing", "failed", "cancelled", "expired",
                                    "refunded"])
def test_a_payment_that_is_not_succeeded_cannot_be_refunded(admin, clean_db, status):
    payment_id = a_succeeded_payment(clean_db, status=status)
    answer = admin.post(f"/api/v1/payments/{payment_id}/refunds", json={})
    assert (answer.status_code, answer.json()["code"]) == (409, "payment_not_refundable")
    assert answer.json()["payment_status"] == status
    assert refund_count(clean_db) == 0


def test_a_method_that_cannot_be_refunded_is_409(admin, clean_db):
    payment_id = a_succeeded_payment(clean_db, method="crypto")
    answer = admin.post(f"/api/v1/payments/{payment_id}/refunds", json={"amount": "1.00"})
    assert (answer.status_code, answer.json()["code"]) == (409, "method_not_refundable")
    assert refund_count(clean_db) == 0


# --- who may ----------------------------------------------------------------------------

def test_a_user_key_cannot_refund_and_sees_only_its_own_refunds(api, admin, clean_db,
                                                                make_user_key):
    own = a_succeeded_payment(clean_db, user_id=5)
    other = a_succeeded_payment(clean_db, user_id=6)
    with clean_db.uow() as uow:
        uow.session.execute(insert(Refund).values(payment_id=own, amount=Decimal("1.00"),
                                                  currency="CNY", status="succeeded",
                                                  reason="goodwill"))
        uow.commit()
    user = api.as_key(make_user_key(5))

    refused = user.post(f"/api/v1/payments/{own}/refunds", json={})
    assert (refused.status_code, refused.json()["code"]) == (403, "admin_only")
    assert refund_count(clean_db) == 1

    mine = user.get(f"/api/v1/payments/{own}/refunds")
    assert mine.status_code == 200
    [item] = mine.json()["items"]
    assert (item["payment_id"], item["amount"], item["currency"], item["status"],
            item["reason"]) == (own, "1.00", "CNY", "succeeded", "goodwill")
    theirs = user.get(f"/api/v1/payments/{other}/refunds")
    assert (theirs.status_code, theirs.json()["code"]) == (404, "payment_not_found")
    assert admin.get(f"/api/v1/payments/{other}/refunds").json() == {"items": []}
    assert api.get(f"/api/v1/payments/{own}/refunds").status_code == 401
    assert admin.post("/api/v1/payments/987654321/refunds", json={}).status_code == 404
