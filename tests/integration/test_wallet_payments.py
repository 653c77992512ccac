"""Paying from the balance over real HTTP (DESIGN.md §10): settled in the request, all
or nothing; not enough is 409 insufficient_balance and changes nothing; expiry and
cancellation of a balance payment never touch the wallet."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select, text

from domain.models import PaymentEvent
from services.maintenance import expire_stale_orders, expire_stale_payments
from tests.support.factories import make_order
from tests.support.wallets import balance, balance_order, counts, credit, entries

USER = 31
D = Decimal


@pytest.fixture
def admin(api, admin_key):
    return api.as_key(admin_key)


@pytest.fixture
def owner(api, make_user_key):
    return api.as_key(make_user_key(USER))


def events(res, payment_id: int) -> list[str]:
    with res.uow() as uow:
        return list(uow.session.execute(
            select(PaymentEvent.event).where(PaymentEvent.payment_id == payment_id)
            .order_by(PaymentEvent.id)).scalars())


def test_the_owner_pays_from_the_balance_in_one_request(admin, owner, clean_db):
    credit(admin, USER, "50.00")
    order, payment = balance_order(admin, USER, "50.00")
    assert (payment["fee"], payment["provider"]) == ("0.00", "wallet")

    response = owner.post(f"/api/v1/payments/{payment['id']}/pay")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["paid_at"] is not None) == ("succeeded", True)
    assert [log["event"] for log in body["logs"]] == ["payment_created", "payment_succeeded"]
    succeeded = body["logs"][1]["detail"]
    assert (succeeded["balance_after"], succeeded["to_status"]) == ("0.00", "succeeded")
    view = owner.get(f"/api/v1/orders/{order['id']}").json()
    assert (view["status"], view["amount_paid"]) == ("paid", "50.00")
    assert [(h["from"], h["to"]) for h in view["history"]] == [(None, "pending"),
                                                                ("pending", "paid")]
    assert entries(clean_db, USER) == [("credit", D("50.00"), D("50.00")),
                                       ("payment", D("-50.00"), D("0.00"))]

    again = owner.post(f"/api/v1/payments/{payment['id']}/pay")
    assert again.status_code == 409
    assert again.json()["code"] == "payment_not_payable"
    assert balance(clean_db, USER) == D("0.00")


@pytest.mark.parametrize("credited", [None, "29.99"])
def test_not_enough_is_409_and_changes_nothing(admin, owner, clean_db, credited):
    if credited:
        credit(admin, USER, credited)
    order, payment = balance_order(admin, USER, "30.00")
    before = counts(clean_db)

    response = owner.post(f"/api/v1/payments/{payment['id']}/pay")

    assert response.status_code == 409, response.text
    body = response.json()
    assert (body["code"], body["balance"], body["amount"]) == (
        "insufficient_balance", credited or "0.00", "30.00")
    assert body["detail"]
    assert counts(clean_db) == before  # no wallet made, no entry, event or history
    assert owner.get(f"/api/v1/payments/{payment['id']}").json()["status"] == "init"
    assert owner.get(f"/api/v1/orders/{order['id']}").json()["status"] == "pending"


def test_another_users_balance_payment_is_404(admin, api, make_user_key, owner, clean_db):
    credit(admin, USER, "10.00")
    _, payment = balance_order(admin, USER, "10.00")
    response = api.as_key(make_user_key(32)).post(f"/api/v1/payments/{payment['id']}/pay")
    assert response.status_code == 404
    assert balance(clean_db, USER) == D("10.00")


def test_a_topup_or_a_foreign_currency_order_cannot_use_the_balance(admin, owner, clean_db):
    credit(admin, USER, "10.00")
    topup = admin.post("/api/v1/orders", json={"total_amount": "5.00", "user_id": USER,
                                               "purpose": "wallet_topup"}).json()["id"]
    # Made directly: a deployment that accepts USD (SUPPORTED_CURRENCIES) could hold one.
    in_usd = make_order(clean_db, user_id=USER, total="5.00", currency="USD")
    for order_id in (topup, in_usd):
        response = admin.post("/api/v1/payments",
                              json={"order_id": order_id, "method": "balance"})
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "unsupported_method"
    assert counts(clean_db)["payments"] == 0


@pytest.mark.parametrize("body", [{"purpose": "gift"}, {"purpose": 1},
                                  {"purpose": "wallet_topup", "currency": "USD"}])
def test_bad_purposes_are_400(admin, clean_db, body):
    response = admin.post("/api/v1/orders", json={"total_amount": "5.00", "user_id": USER,
                                                  **body})
    assert response.status_code == 400
    assert response.json()["code"] in ("invalid_field", "invalid_currency")
    assert counts(clean_db)["orders"] == 0


def test_expiry_and_cancellation_never_touch_the_wallet(admin, owner, clean_db):
    credit(admin, USER, "100.00")
    _, cancelled = balance_order(admin, USER, "10.00")
    assert owner.post(f"/api/v1/payments/{cancelled['id']}/cancel").status_code == 200

    _, swept = balance_order(admin, USER, "20.00")
    _, late_pay = balance_order(admin, USER, "30.00")
    expired_order, in_expired_order = balance_order(admin, USER, "40.00")
    with clean_db.uow() as uow:
        uow.session.execute(text("UPDATE payments SET expires_at = now() - interval '1 s' "
                                 "WHERE id IN (:a, :b)"), {"a": swept["id"], "b": late_pay["id"]})
        uow.session.execute(text("UPDATE orders SET created_at = now() - interval '2 days' "
                                 "WHERE id = :o"), {"o": expired_order["id"]})
        uow.commit()
    refused = owner.post(f"/api/v1/payments/{late_pay['id']}/pay")
    assert (refused.status_code, refused.json()["code"]) == (409, "payment_expired")
    expire_stale_payments(clean_db)
    expire_stale_orders(clean_db)

    statuses = {p["id"]: owner.get(f"/api/v1/payments/{p['id']}").json()["status"]
                for p in (cancelled, swept, late_pay, in_expired_order)}
    assert statuses == {cancelled["id"]: "cancelled", swept["id"]: "expired",
                        late_pay["id"]: "expired", in_expired_order["id"]: "cancelled"}
    assert entries(clean_db, USER) == [("credit", D("100.00"), D("100.00"))]
    assert balance(clean_db, USER) == D("100.00")
    assert "payment_succeeded" not in events(clean_db, swept["id"])


def test_a_paid_balance_payment_is_never_expired_by_the_sweep(admin, owner, clean_db):
    credit(admin, USER, "10.00")
    _, payment = balance_order(admin, USER, "10.00")
    assert owner.post(f"/api/v1/payments/{payment['id']}/pay").status_code == 200
    with clean_db.uow() as uow:
        uow.session.execute(text("UPDATE payments SET expires_at = now() - interval '1 s' "
                                 "WHERE id = :p"), {"p": payment["id"]})
        uow.commit()
    expire_stale_payments(clean_db)
    assert owner.get(f"/api/v1/payments/{payment['id']}").json()["status"] == "succeeded"
    assert balance(clean_db, USER) == D("0.00")


def test_an_admin_cannot_mark_a_topup_paid_by_hand(admin, owner, clean_db):
    order = admin.post("/api/v1/orders", json={"total_amount": "5.00", "user_id": USER,
                                               "purpose": "wallet_topup"}).json()
    response = admin.post(f"/api/v1/orders/{order['id']}/transitions", json={"to": "paid"})
    assert response.status_code == 409
    assert response.json()["code"] == "topup_paid_by_payment_only"
    assert owner.get(f"/api/v1/orders/{order['id']}").json()["status"] == "pending"
    assert balance(clean_db, USER) is None
