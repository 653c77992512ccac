"""The §6 rules as pure decisions: what each provider event does to a payment or refund."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.callback_events import CallbackEvent, CallbackEventType
from domain.settlement import (
    Action,
    PaymentFacts,
    RefundFacts,
    decide_payment_event,
    decide_refund_event,
    order_status_after_refunds,
    order_takes_payment,
    payment_status_after_refund,
)
from domain.statuses import OrderStatus, PaymentStatus, RefundStatus

D = Decimal
T = CallbackEventType


def payment(status: str = "processing", amount: str = "100.00", currency: str = "CNY",
            transaction_id: str | None = None, refunded: str = "0.00") -> PaymentFacts:
    return PaymentFacts(id=1, order_id=10, status=PaymentStatus(status), amount=D(amount),
                        currency=currency, provider="sandbox", transaction_id=transaction_id,
                        refunded_amount=D(refunded))


def event(event_type: CallbackEventType = T.PAYMENT_SUCCEEDED, amount: str = "100.00",
          currency: str = "CNY", transaction_id: str | None = "txn_1",
          refund_id: int | None = None) -> CallbackEvent:
    return CallbackEvent(event_id="evt", type=event_type, payment_id=1, amount=D(amount),
                         currency=currency, transaction_id=transaction_id, refund_id=refund_id)


def decide(p, e, owner=None, provider="sandbox"):
    return decide_payment_event(p, e, provider=provider, transaction_owner=owner)


@pytest.mark.parametrize("status", ["init", "processing"])
def test_success_on_an_active_payment_succeeds(status):
    assert decide(payment(status), event()).action is Action.SUCCEED


@pytest.mark.parametrize("status", ["failed", "cancelled", "expired"])
def test_success_after_failed_cancelled_or_expired_is_a_late_success(status):
    decision = decide(payment(status), event())
    assert decision.action is Action.LATE_SUCCEED
    assert status in (decision.note or "")


@pytest.mark.parametrize("status", ["succeeded", "partially_refunded", "refunded"])
def test_same_transaction_again_is_ignored(status):
    decision = decide(payment(status, transaction_id="txn_1"), event(), owner=1)
    assert decision.action is Action.IGNORE


def test_other_transaction_on_a_succeeded_payment_is_rejected_for_review():
    decision = decide(payment("succeeded", transaction_id="txn_0"), event())
    assert (decision.action, decision.audit_event) == (Action.REJECT, "transaction_conflict")


def test_transaction_id_of_another_payment_is_rejected():
    decision = decide(payment("processing"), event(), owner=99)
    assert (decision.action, decision.audit_event) == (Action.REJECT, "transaction_conflict")


@pytest.mark.parametrize("amount, currency", [("99.99", "CNY"), ("100.01", "CNY"),
                                              ("100.00", "USD")])
@pytest.mark.parametrize("status", ["processing", "expired", "succeeded"])
def test_amount_or_currency_mismatch_is_never_paid(amount, currency, status):
    decision = decide(payment(status, transaction_id="txn_1"),
                      event(amount=amount, currency=currency))
    assert (decision.action, decision.audit_event) == (Action.REJECT, "amount_mismatch")
    assert "100.00 CNY" in (decision.note or "")


def test_unknown_payment_or_other_provider_is_unmatched():
    assert decide(None, event()).action is Action.UNMATCHED
    assert decide(payment(), event(), provider="other").action is Action.UNMATCHED


@pytest.mark.parametrize("status", ["init", "processing"])
def test_failure_on_an_active_payment_fails_it(status):
    assert decide(payment(status), event(T.PAYMENT_FAILED)).action is Action.FAIL


@pytest.mark.parametrize("status", ["succeeded", "partially_refunded", "refunded", "failed",
                                    "cancelled", "expired"])
def test_failure_never_regresses_a_finished_payment(status):
    decision = decide(payment(status), event(T.PAYMENT_FAILED, amount="1.00"))
    assert decision.action is Action.IGNORE
    assert (decision.note or "").startswith("ignored")


def test_only_a_pending_order_takes_a_payment():
    assert order_takes_payment(OrderStatus.PENDING)
    for status in OrderStatus:
        if status is not OrderStatus.PENDING:
            assert not order_takes_payment(status)


def refund(status: str = "pending", amount: str = "40.00") -> RefundFacts:
    return RefundFacts(id=7, payment_id=1, status=RefundStatus(status), amount=D(amount),
                       currency="CNY")


def decide_refund(r, p, e, provider="sandbox"):
    return decide_refund_event(r, p, e, provider=provider)


def test_refund_success_and_failure():
    ok = event(T.REFUND_SUCCEEDED, amount="40.00", refund_id=7)
    bad = event(T.REFUND_FAILED, amount="40.00", refund_id=7)
    assert decide_refund(refund(), payment("succeeded"), ok).action is Action.REFUND_SUCCEED
    assert decide_refund(refund("processing"), payment("succeeded"), bad).action is Action.FAIL
    # a success reported after a failure is still money that left us
    assert decide_refund(refund("failed"), payment("succeeded"), ok).action is \
        Action.REFUND_SUCCEED
    assert decide_refund(refund("succeeded"), payment("partially_refunded"), ok).action is \
        Action.IGNORE
    assert decide_refund(refund("succeeded"), payment("partially_refunded"), bad).action is \
        Action.IGNORE


def test_refund_unknown_mismatched_or_too_large():
    ok = event(T.REFUND_SUCCEEDED, amount="40.00", refund_id=7)
    assert decide_refund(None, payment("succeeded"), ok).action is Action.UNMATCHED
    other = RefundFacts(id=7, payment_id=2, status=RefundStatus.PENDING, amount=D("40.00"),
                        currency="CNY")
    assert decide_refund(other, payment("succeeded"), ok).action is Action.UNMATCHED
    wrong = event(T.REFUND_SUCCEEDED, amount="41.00", refund_id=7)
    assert decide_refund(refund(), payment("succeeded"), wrong).audit_event == "amount_mismatch"
    assert decide_refund(refund(), payment("succeeded", refunded="70.00"), ok).action is \
        Action.REJECT
    assert decide_refund(refund(), payment("expired"), ok).action is Action.REJECT


def test_payment_and_order_status_after_refunds():
    p = payment("succeeded")
    assert payment_status_after_refund(p, D("40.00")) is PaymentStatus.PARTIALLY_REFUNDED
    assert payment_status_after_refund(p, D("100.00")) is PaymentStatus.REFUNDED
    refunding = OrderStatus.REFUNDING
    assert order_status_after_refunds(refunding, refunds_in_flight=False,
                                      net_paid=D("0.00")) is OrderStatus.REFUNDED
    assert order_status_after_refunds(refunding, refunds_in_flight=False,
                                      net_paid=D("60.00")) is OrderStatus.PAID
    assert order_status_after_refunds(refunding, refunds_in_flight=True,
                                      net_paid=D("0.00")) is None
    assert order_status_after_refunds(OrderStatus.EXPIRED, refunds_in_flight=False,
                                      net_paid=D("0.00")) is None


@pytest.mark.parametrize("status", ["pending", "processing"])
def test_abnormal_refund_in_flight_is_flagged_not_failed(status):
    refund = RefundFacts(id=7, payment_id=1, status=RefundStatus(status), amount=D("30.00"),
                         currency="CNY")
    decision = decide_refund_event(refund, payment("succeeded"),
                                   event(T.REFUND_ABNORMAL, amount="30.00", refund_id=7),
                                   provider="sandbox")
    assert decision.action is Action.FLAG_REFUND
    assert decision.audit_event == "refund_abnormal"


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_abnormal_report_on_a_finished_refund_changes_nothing(status):
    refund = RefundFacts(id=7, payment_id=1, status=RefundStatus(status), amount=D("30.00"),
                         currency="CNY")
    decision = decide_refund_event(refund, payment("partially_refunded", refunded="30.00"),
                                   event(T.REFUND_ABNORMAL, amount="30.00", refund_id=7),
                                   provider="sandbox")
    assert decision.action is Action.IGNORE


def test_a_reference_we_never_issued_is_unmatched():
    unresolved = CallbackEvent(event_id="evt", type=T.PAYMENT_SUCCEEDED, payment_id=None,
                               amount=D("1.00"), currency="CNY", transaction_id="t",
                               out_trade_no="OTHERP0000000001")
    assert decide(None, unresolved).action is Action.UNMATCHED
