"""Alipay refunds end to end: synchronous at Alipay, settled from its answer; the
refund notifications that follow change nothing."""

from __future__ import annotations

import pytest

from tests.support.alipay_double import AlipayDouble, start_alipay_payment
from tests.support.payment_flow import PaymentFlow

pytestmark = pytest.mark.slow


@pytest.fixture
def flow(alipay_flow) -> PaymentFlow:
    return alipay_flow


def paid(flow: PaymentFlow, alipay: AlipayDouble, total: str = "88.80"):
    order, payment, pay_url = start_alipay_payment(flow, total)
    alipay.scan(pay_url)
    alipay.press(pay_url, "approve")
    flow.wait_status(payment["id"], "succeeded")
    alipay.wait_delivered(1)
    return order, flow.get(payment["id"])


def refund(flow: PaymentFlow, payment_id: int, amount: str | None = None) -> dict:
    body = {} if amount is None else {"amount": amount}
    response = flow.admin.post(f"/api/v1/payments/{payment_id}/refunds", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def test_a_partial_then_the_full_rest_refund_at_alipay(flow, alipay):
    order, payment = paid(flow, alipay)
    first = refund(flow, payment["id"], "10.00")
    done = flow.wait_refund(payment["id"], first["id"], "succeeded")
    trade = alipay.trade(payment["out_trade_no"])
    assert trade["refunds"] == [{"out_request_no": done["out_refund_no"],
                                 "amount_minor": 1000, "status": "REFUND_SUCCESS"}]
    assert flow.wait_status(payment["id"], "partially_refunded")["refunded_amount"] == "10.00"

    rest = refund(flow, payment["id"])
    flow.wait_refund(payment["id"], rest["id"], "succeeded")
    assert flow.wait_status(payment["id"], "refunded")["refunded_amount"] == "88.80"
    assert alipay.trade(payment["out_trade_no"])["status"] == "TRADE_CLOSED"
    # Alipay notifies each refund as a trade status (TRADE_SUCCESS, then TRADE_CLOSED,
    # with the TOTAL refunded so far): accepted, and nothing changes.
    notes = alipay.wait_delivered(3)
    assert [(n["payload"]["trade_status"], n["payload"].get("refund_fee")) for n in notes] == [
        ("TRADE_SUCCESS", None), ("TRADE_SUCCESS", "10.00"), ("TRADE_CLOSED", "88.80")]
    flow.settle()
    final = flow.get(payment["id"])
    assert (final["status"], final["refunded_amount"]) == ("refunded", "88.80")
    events = [e for e, _ in flow.events(payment["id"])]
    assert events.count("refund_succeeded") == 2 and "amount_mismatch" not in events
    assert flow.get_order(order["id"])["status"] == "refunded"


def test_a_refund_alipay_refuses_is_failed_and_the_payment_stays_paid(flow, alipay):
    _, payment = paid(flow, alipay)
    alipay.refuse_next_refund(payment["out_trade_no"], "ACQ.SELLER_BALANCE_NOT_ENOUGH")
    failed = refund(flow, payment["id"], "10.00")
    flow.wait_refund(payment["id"], failed["id"], "failed")
    assert alipay.trade(payment["out_trade_no"])["refunds"] == []
    assert flow.get(payment["id"])["status"] == "succeeded"
