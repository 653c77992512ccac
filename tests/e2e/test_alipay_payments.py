"""Alipay end to end: our API, our connector, the Alipay double (gateway, pay page,
notifications), a real worker. Every refusal is answered `fail` and changes nothing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from domain.models import CallbackAuthFailure, Payment, ProviderCallback
from standins.models import StandinOrder
from tests.support.alipay_double import start_alipay_payment
from tests.support.payment_flow import PaymentFlow, success_times

pytestmark = pytest.mark.slow


@pytest.fixture
def flow(alipay_flow) -> PaymentFlow:
    return alipay_flow


def inbox(flow: PaymentFlow) -> list[tuple[str, str]]:
    with flow.res.uow() as uow:
        return [tuple(r) for r in uow.session.execute(
            select(ProviderCallback.event_id, ProviderCallback.status)
            .where(ProviderCallback.provider == "alipay")
            .order_by(ProviderCallback.id)).all()]


def test_pay_approve_notify_pays_the_order(flow, alipay, doubles):
    order, payment, pay_url = start_alipay_payment(flow)
    assert payment["provider"] == "alipay"
    assert pay_url.startswith(doubles.live_url + "/doubles/alipay/pay/")
    trade = alipay.trade(payment["out_trade_no"])
    # What we asked Alipay for: yuan as a string, our notify URL, our reference.
    assert trade["request_body"]["total_amount"] == "88.80"
    assert trade["amount_minor"] == 8880 and trade["app_id"] == alipay.keys.app_id
    assert trade["notify_url"] == doubles.live_url + "/callbacks/alipay"
    assert alipay.scan(pay_url)["trade_status"] == "WAIT_BUYER_PAY"
    alipay.press(pay_url, "approve")

    paid = flow.wait_status(payment["id"], "succeeded")
    assert paid["transaction_id"] == alipay.trade(payment["out_trade_no"])["trade_no"]
    assert flow.get_order(order["id"])["status"] == "paid"
    [sent] = alipay.wait_delivered(1)
    assert sent["attempts"] == 1 and sent["last_status"] == 200
    assert inbox(flow) == [(sent["payload"]["notify_id"], "processed")]


def test_a_notification_delivered_twice_and_concurrently_applies_once(flow, alipay):
    _, payment, pay_url = start_alipay_payment(flow)
    alipay.scan(pay_url)
    alipay.press(pay_url, "approve", notify="0")
    fields = alipay.fields(alipay.trade(payment["out_trade_no"]))
    answers: list[tuple[int, str]] = []

    def deliver() -> None:
        response = alipay.post(alipay.sign(fields))
        answers.append((response.status_code, response.text))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    deliver()  # and once more, later
    assert answers == [(200, "success")] * 5
    flow.wait_status(payment["id"], "succeeded")
    flow.settle()
    assert [e for e, _ in flow.events(payment["id"])].count("payment_succeeded") == 1
    assert inbox(flow) == [(fields["notify_id"], "processed")]


@pytest.mark.parametrize(("forgery", "reason"), [
    ("tampered_field", "signature_mismatch"), ("other_app_id", "wrong_merchant"),
    ("missing_sign", "missing_signature")])
def test_a_notification_that_is_not_alipays_for_us_is_answered_fail(flow, alipay, forgery,
                                                                    reason):
    _, payment, pay_url = start_alipay_payment(flow)
    alipay.scan(pay_url)
    alipay.press(pay_url, "approve", notify="0")
    trade = alipay.trade(payment["out_trade_no"])
    if forgery == "tampered_field":
        form = {**alipay.sign(alipay.fields(trade)), "trade_no": "2026120122001499999999999999"}
    elif forgery == "other_app_id":
        form = alipay.sign(alipay.fields(trade, app_id="2021009999999999"))
    else:
        form = alipay.fields(trade, sign_type="RSA2")

    response = alipay.post(form)
    assert (response.status_code, response.text) == (401, "fail")
    assert inbox(flow) == []
    with flow.res.uow() as uow:  # counted per provider and minute, with its reason
        counted = uow.session.execute(select(
            CallbackAuthFailure.provider, CallbackAuthFailure.count,
            CallbackAuthFailure.last_reason)).all()
    assert [tuple(row) for row in counted] == [("alipay", 1, reason)]
    assert flow.get(payment["id"])["status"] == "processing"


def test_an_authentic_notification_with_another_amount_is_stored_but_never_paid(flow,
                                                                                alipay):
    order, payment, pay_url = start_alipay_payment(flow)
    alipay.scan(pay_url)
    fields = alipay.fields(alipay.trade(payment["out_trade_no"]), total_amount="0.01")
    response = alipay.post(alipay.sign(fields))
    assert (response.status_code, response.text) == (200, "success")
    flow.settle()
    assert inbox(flow) == [(fields["notify_id"], "rejected")]
    assert "amount_mismatch" in [e for e, _ in flow.events(payment["id"])]
    assert flow.get(payment["id"])["status"] == "processing"
    assert flow.get_order(order["id"])["status"] == "pending"


def test_a_decline_closes_the_trade_and_fails_the_payment(flow, alipay):
    _, payment, pay_url = start_alipay_payment(flow)
    alipay.scan(pay_url)
    alipay.press(pay_url, "decline")
    flow.wait_status(payment["id"], "failed")
    assert alipay.trade(payment["out_trade_no"])["status"] == "TRADE_CLOSED"


@pytest.mark.parametrize("scanned", [True, False])
def test_cancel_closes_the_trade_at_alipay(flow, alipay, scanned):
    _, payment, pay_url = start_alipay_payment(flow)
    if scanned:
        alipay.scan(pay_url)
    response = flow.admin.post(f"/api/v1/payments/{payment['id']}/cancel", json={})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    # Never scanned, Alipay has no trade to close (ACQ.TRADE_NOT_EXIST): that is fine.
    expected = "TRADE_CLOSED" if scanned else "PRECREATED"
    assert alipay.trade(payment["out_trade_no"])["status"] == expected
    if scanned:
        assert not alipay.scan(pay_url)["payable"]


def test_the_janitor_finds_a_payment_paid_at_alipay_whose_notification_never_came(
        flow, alipay, doubles):
    order, payment, pay_url = start_alipay_payment(flow)
    alipay.scan(pay_url)
    alipay.press(pay_url, "approve", notify="0")
    with flow.res.uow() as uow:  # quiet long enough for the janitor to ask
        uow.session.execute(update(Payment).where(Payment.id == payment["id"]).values(
            updated_at=func.now() - timedelta(minutes=5),
            created_at=func.now() - timedelta(minutes=5)))
        uow.commit()
    from tests.integration.test_sweep_cli import sweep

    output, _ = sweep(doubles.env, "sync")
    assert output["result"]["changed"] == 1, output
    paid = flow.get(payment["id"])
    assert paid["status"] == "succeeded"
    assert paid["transaction_id"] == alipay.trade(payment["out_trade_no"])["trade_no"]
    assert flow.get_order(order["id"])["status"] == "paid"
    assert alipay.notifications() == []


def test_the_janitor_stores_the_send_pay_date_alipay_reports(flow, alipay, doubles):
    """The query answer's send_pay_date, not our clock, is when the provider took the
    money (payments.provider_paid_at: the reconciliation's day is cut by it)."""
    order, payment, pay_url = start_alipay_payment(flow)
    alipay.scan(pay_url)
    alipay.press(pay_url, "approve", notify="0")
    with flow.res.uow() as uow:
        # Paid two hours ago by the double's clock, so its time and ours cannot be
        # confused; and quiet long enough for the janitor to ask.
        paid_at_double = uow.session.execute(
            update(StandinOrder).where(StandinOrder.provider == "alipay",
                                       StandinOrder.out_trade_no == payment["out_trade_no"])
            .values(paid_at=StandinOrder.paid_at - timedelta(hours=2))
            .returning(StandinOrder.paid_at)).scalar_one()
        uow.session.execute(update(Payment).where(Payment.id == payment["id"]).values(
            updated_at=func.now() - timedelta(minutes=5)))
        uow.commit()
    from tests.integration.test_sweep_cli import sweep

    output, _ = sweep(doubles.env, "sync")
    assert output["result"]["now_succeeded"] == 1, output
    provider_paid_at, paid_at = success_times(flow.res, payment["id"])
    assert provider_paid_at == paid_at_double.replace(microsecond=0)  # whole seconds
    assert paid_at - provider_paid_at > timedelta(hours=1)  # ours: when we applied it


def test_a_trade_past_our_timeout_express_closes_at_alipay_and_fails_the_payment(flow, alipay):
    _, payment, pay_url = start_alipay_payment(flow)
    assert alipay.trade(payment["out_trade_no"])["request_body"]["timeout_express"] == "30m"
    alipay.scan(pay_url)
    with flow.res.uow() as uow:  # the double's clock: the trade was made 31 minutes ago
        uow.session.execute(update(StandinOrder).where(
            StandinOrder.out_trade_no == payment["out_trade_no"]).values(
            created_at=func.now() - timedelta(minutes=31)))
        uow.commit()
    page = alipay.scan(pay_url)
    assert (page["trade_status"], page["payable"]) == ("TRADE_CLOSED", False)
    flow.wait_status(payment["id"], "failed")


def test_the_pay_page_shows_the_amount_and_its_buttons(flow, alipay):
    _, _, pay_url = start_alipay_payment(flow, "12.30")
    page = alipay.api.http.get(pay_url, timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "12.30" in page.text and 'id="approve"' in page.text
    assert 'id="approve-silently"' in page.text and 'id="decline"' in page.text
    # Styled from a file, not inline, so the Content-Security-Policy holds.
    assert "<style" not in page.text
    assert alipay.api.get("/doubles/alipay/static/alipay.css").status_code == 200
