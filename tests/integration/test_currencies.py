"""Each currency in its own minor units, and only the supported ones (SUPPORTED_CURRENCIES).

The app here is served with CNY, JPY and KRW supported; the session's app has the
default (CNY only). Amounts, fees and refunds follow ISO 4217's decimals: a yen has none.
"""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import func, select

from domain.models import Order, Payment, Refund
from tests.support.factories import make_order, make_payment
from tests.support.live_server import Api
from tests.support.private_stack import serve_app


def _count(res, model) -> int:
    with res.uow() as uow:
        return uow.session.execute(select(func.count()).select_from(model)).scalar_one()


@pytest.fixture
def yen_api(settings, clean_db, admin_key):
    yen = dataclasses.replace(settings, supported_currencies=("CNY", "JPY", "KRW"))
    with serve_app(yen) as (url, res):
        yield Api(url, admin_key), res


def test_a_currency_that_is_not_supported_is_400_and_writes_nothing(api, admin_key, clean_db):
    response = api.as_key(admin_key).post("/api/v1/orders", json={
        "total_amount": "10.00", "currency": "USD", "user_id": 1})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_currency"
    assert response.json()["supported_currencies"] == ["CNY"]
    assert _count(clean_db, Order) == 0


@pytest.mark.parametrize(("currency", "amount"), [("JPY", "100.5"), ("KRW", "1000.01"),
                                                  ("CNY", "1.001"), ("JPY", 0.5)])
def test_more_decimals_than_the_currency_has_is_400(yen_api, currency, amount):
    api, res = yen_api
    response = api.post("/api/v1/orders", json={
        "total_amount": amount, "currency": currency, "user_id": 1})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_amount"
    assert response.json()["field"] == "total_amount"
    assert _count(res, Order) == 0


def test_yen_amounts_and_fees_have_no_decimals(yen_api):
    api, _ = yen_api
    order = api.post("/api/v1/orders", json={
        "total_amount": "750", "currency": "JPY", "user_id": 1}).json()
    assert (order["total_amount"], order["amount_paid"], order["currency"]) == ("750", "0", "JPY")
    assert api.post("/api/v1/payments", json={
        "order_id": order["id"], "amount": "750.5"}).json()["code"] == "invalid_amount"
    payment = api.post("/api/v1/payments", json={"order_id": order["id"]}).json()
    # wechat 0.6 % of 750 yen is 4.5 yen: half-up to the yen.
    assert (payment["amount"], payment["fee"], payment["refunded_amount"]) == ("750", "5", "0")


def test_a_yen_refund_with_decimals_is_400_and_nothing_is_refunded(yen_api):
    api, res = yen_api
    order_id = make_order(res, total="1000", currency="JPY", status="paid")
    payment_id = make_payment(res, order_id, amount="1000", currency="JPY",
                              status="succeeded")
    response = api.post(f"/api/v1/payments/{payment_id}/refunds", json={"amount": "0.5"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_amount"
    assert _count(res, Refund) == 0
    with res.uow() as uow:
        assert uow.session.get(Payment, payment_id).status == "succeeded"
