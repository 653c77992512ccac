"""Orders over real HTTP and PostgreSQL: create, read, admin transitions (DESIGN.md §4, §5)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update

from domain.models import Order, OrderStatusHistory, Payment, PaymentEvent
from tests.support.factories import make_order, make_payment


def _count(res, model) -> int:
    with res.uow() as uow:
        return uow.session.execute(select(func.count()).select_from(model)).scalar_one()


def _counts(res) -> tuple[int, int]:
    return _count(res, Order), _count(res, OrderStatusHistory)


def test_admin_creates_an_order_for_a_user(api, admin_key, clean_db):
    response = api.as_key(admin_key).post("/api/v1/orders", json={
        "total_amount": "100.00", "user_id": 7})
    assert response.status_code == 201
    order = response.json()
    assert order["user_id"] == 7
    assert order["total_amount"] == "100.00"
    assert order["currency"] == "CNY"
    assert order["status"] == "pending"
    assert order["amount_paid"] == "0.00"
    assert order["amount_refunded"] == "0.00"
    assert re.fullmatch(r"ORD-\d{8}-[0-9A-F]{12}", order["order_number"])
    datetime.fromisoformat(order["created_at"])
    assert [(h["from"], h["to"], h["actor"]) for h in order["history"]] == [
        (None, "pending", "admin")]
    assert _counts(clean_db) == (1, 1)


def test_user_creates_an_order_for_itself(api, make_user_key):
    response = api.as_key(make_user_key(5)).post("/api/v1/orders", json={
        "total_amount": 12.5, "currency": "cny", "order_number": "shop-1.A_2"})
    assert response.status_code == 201
    body = response.json()
    assert (body["user_id"], body["total_amount"], body["currency"], body["order_number"]) == (
        5, "12.50", "CNY", "shop-1.A_2")
    assert body["history"][0]["actor"] == "user:5"


def test_user_may_name_itself_but_not_another_user(api, make_user_key, clean_db):
    key = make_user_key(5)
    assert api.as_key(key).post("/api/v1/orders", json={
        "total_amount": "1.00", "user_id": 5}).status_code == 201
    response = api.as_key(key).post("/api/v1/orders", json={
        "total_amount": "1.00", "user_id": 6})
    assert response.status_code == 403
    assert response.json()["code"] == "user_id_not_allowed"
    assert _counts(clean_db) == (1, 1)


def test_admin_must_say_whose_order_it_is(api, admin_key, clean_db):
    response = api.as_key(admin_key).post("/api/v1/orders", json={"total_amount": "1.00"})
    assert response.status_code == 400
    assert response.json()["code"] == "user_id_required"
    assert _counts(clean_db) == (0, 0)


def test_duplicate_order_number_is_409_and_writes_nothing(api, admin_key, clean_db):
    admin = api.as_key(admin_key)
    body = {"total_amount": "10.00", "user_id": 1, "order_number": "A-1"}
    assert admin.post("/api/v1/orders", json=body).status_code == 201
    response = admin.post("/api/v1/orders", json={**body, "total_amount": "20.00"})
    assert response.status_code == 409
    assert response.json()["code"] == "duplicate_order_number"
    assert _counts(clean_db) == (1, 1)


def test_get_order_shows_history_oldest_first_and_money_totals(api, admin_key, clean_db):
    admin = api.as_key(admin_key)
    order_id = admin.post("/api/v1/orders", json={"total_amount": "100.00",
                                                  "user_id": 1}).json()["id"]
    make_payment(clean_db, order_id, status="failed")
    paid = make_payment(clean_db, order_id, status="succeeded", attempt=2)
    with clean_db.uow() as uow:
        uow.session.execute(update(Payment).where(Payment.id == paid)
                            .values(status="partially_refunded", refunded_amount="30.50"))
        uow.commit()
    for to in ("paid", "refunding", "paid", "shipped"):
        assert admin.post(f"/api/v1/orders/{order_id}/transitions",
                          json={"to": to, "reason": f"to {to}"}).status_code == 200
    order = admin.get(f"/api/v1/orders/{order_id}").json()
    assert order["status"] == "shipped"
    assert order["amount_paid"] == "100.00"
    assert order["amount_refunded"] == "30.50"
    assert [(h["from"], h["to"]) for h in order["history"]] == [
        (None, "pending"), ("pending", "paid"), ("paid", "refunding"), ("refunding", "paid"),
        ("paid", "shipped")]
    assert order["history"][1]["reason"] == "to paid"
    times = [datetime.fromisoformat(h["at"]) for h in order["history"]]
    assert times == sorted(times)


def test_walks_the_whole_happy_path(api, admin_key, clean_db):
    order_id = make_order(clean_db)
    admin = api.as_key(admin_key)
    for to in ("paid", "shipped", "completed", "refunding", "refunded"):
        response = admin.post(f"/api/v1/orders/{order_id}/transitions", json={"to": to})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == to
    # refunded is terminal
    response = admin.post(f"/api/v1/orders/{order_id}/transitions", json={"to": "paid"})
    assert response.status_code == 409


@pytest.mark.parametrize(("start", "to"), [
    ("pending", "shipped"), ("pending", "pending"), ("paid", "pending"),
    ("shipped", "paid"), ("cancelled", "paid"), ("expired", "pending"),
    ("completed", "shipped"),
])
def test_illegal_transition_is_409_and_changes_nothing(api, admin_key, clean_db, start, to):
    order_id = make_order(clean_db, status=start)
    response = api.as_key(admin_key).post(f"/api/v1/orders/{order_id}/transitions",
                                          json={"to": to})
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "invalid_transition"
    assert (body["current_status"], body["requested_status"]) == (start, to)
    assert body["detail"]
    with clean_db.uow() as uow:
        assert uow.session.get(Order, order_id).status == start
    assert _count(clean_db, OrderStatusHistory) == 0


def test_transition_of_a_missing_order_is_404(api, admin_key):
    response = api.as_key(admin_key).post("/api/v1/orders/999999/transitions",
                                          json={"to": "paid"})
    assert response.status_code == 404
    assert response.json()["code"] == "order_not_found"


def test_cancelling_an_order_cancels_its_active_payment(api, admin_key, clean_db):
    order_id = make_order(clean_db)
    payment_id = make_payment(clean_db, order_id, status="processing")
    response = api.as_key(admin_key).post(f"/api/v1/orders/{order_id}/transitions",
                                          json={"to": "cancelled", "reason": "out of stock"})
    assert response.status_code == 200
    with clean_db.uow() as uow:
        assert uow.session.get(Payment, payment_id).status == "cancelled"
        events = uow.session.execute(select(PaymentEvent.event, PaymentEvent.detail)
                                     .where(PaymentEvent.payment_id == payment_id)).all()
    assert [e.event for e in events] == ["payment_cancelled"]
    assert events[0].detail["reason"] == "order cancelled"


def test_order_past_its_ttl_can_still_be_read(api, make_user_key, clean_db):
    past = datetime.now().astimezone() - timedelta(days=3)
    order_id = make_order(clean_db, user_id=3, created_at=past)
    response = api.as_key(make_user_key(3)).get(f"/api/v1/orders/{order_id}")
    assert response.status_code == 200
    assert datetime.fromisoformat(response.json()["created_at"]) == past


BAD_ORDER_BODIES = [
    ("[1, 2]", "malformed_json"),
    ('"total_amount"', "malformed_json"),
    ("null", "malformed_json"),
    ('{"total_amount": "1.00", "user_id": 1', "malformed_json"),
    ('{"total_amount": NaN, "user_id": 1}', "malformed_json"),
    ('{"total_amount": Infinity, "user_id": 1}', "malformed_json"),
    ('{"user_id": 1}', "invalid_amount"),
    ('{"total_amount": "1.001", "user_id": 1}', "invalid_amount"),
    ('{"total_amount": 0, "user_id": 1}', "invalid_amount"),
    ('{"total_amount": "-5.00", "user_id": 1}', "invalid_amount"),
    ('{"total_amount": "NaN", "user_id": 1}', "invalid_amount"),
    ('{"total_amount": "Infinity", "user_id": 1}', "invalid_amount"),
    ('{"total_amount": 1e400, "user_id": 1}', "invalid_amount"),
    ('{"total_amount": "10000000000000.00", "user_id": 1}', "invalid_amount"),
    ('{"total_amount": "ten", "user_id": 1}', "invalid_amount"),
    ('{"total_amount": true, "user_id": 1}', "invalid_amount"),
    ('{"total_amount": ["1.00"], "user_id": 1}', "invalid_amount"),
    ('{"total_amount": "1.00", "user_id": "1"}', "invalid_field"),
    ('{"total_amount": "1.00", "user_id": 1.5}', "invalid_field"),
    ('{"total_amount": "1.00", "user_id": true}', "invalid_field"),
    ('{"total_amount": "1.00", "user_id": -1}', "invalid_field"),
    ('{"total_amount": "1.00", "user_id": 99999999999999999999999}', "invalid_field"),
    ('{"total_amount": "1.00", "user_id": 1, "currency": "XXX"}', "invalid_currency"),
    ('{"total_amount": "1.00", "user_id": 1, "currency": 7}', "invalid_currency"),
    ('{"total_amount": "1.00", "user_id": 1, "order_number": 12}', "invalid_field"),
    ('{"total_amount": "1.00", "user_id": 1, "order_number": ""}', "invalid_field"),
    ('{"total_amount": "1.00", "user_id": 1, "order_number": "a b"}', "invalid_field"),
    ('{"total_amount": "1.00", "user_id": 1, "order_number": "' + "x" * 65 + '"}',
     "invalid_field"),
]


@pytest.mark.parametrize(("raw", "code"), BAD_ORDER_BODIES)
def test_bad_order_input_is_400_and_writes_nothing(api, admin_key, clean_db, raw, code):
    response = api.as_key(admin_key).post("/api/v1/orders", data=raw,
                                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == code
    assert body["detail"]
    assert _counts(clean_db) == (0, 0)


@pytest.mark.parametrize(("body", "code"), [
    ({"to": "flying"}, "invalid_status"),
    ({}, "invalid_field"),
    ({"to": 3}, "invalid_field"),
    ({"to": "paid", "reason": "x" * 501}, "invalid_field"),
    ({"to": "paid", "reason": ["why"]}, "invalid_field"),
])
def test_bad_transition_input_is_400_and_changes_nothing(api, admin_key, clean_db, body, code):
    order_id = make_order(clean_db)
    response = api.as_key(admin_key).post(f"/api/v1/orders/{order_id}/transitions", json=body)
    assert response.status_code == 400
    assert response.json()["code"] == code
    with clean_db.uow() as uow:
        assert uow.session.execute(text("SELECT status FROM orders")).scalar_one() == "pending"
    assert _count(clean_db, OrderStatusHistory) == 0
