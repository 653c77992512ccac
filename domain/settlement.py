"""What a provider's event does to a payment, a refund and an order (DESIGN.md §4, §6). Pure.

The service layer gathers the facts under row locks, asks these functions, and
carries the answer out with compare-and-set updates. Keeping the rules here
makes every case of §6 testable without a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from domain.callback_events import CallbackEvent, CallbackEventType
from domain.money import ZERO, format_amount
from domain.statuses import (
    ACTIVE_PAYMENT_STATUSES,
    PAID_PAYMENT_STATUSES,
    RETRYABLE_PAYMENT_STATUSES,
    OrderStatus,
    PaymentStatus,
    RefundStatus,
)

REFUNDABLE_PAYMENT_STATUSES = frozenset({PaymentStatus.SUCCEEDED,
                                         PaymentStatus.PARTIALLY_REFUNDED})


@dataclass(frozen=True)
class PaymentFacts:
    id: int
    order_id: int
    status: PaymentStatus
    amount: Decimal
    currency: str
    provider: str
    transaction_id: str | None
    refunded_amount: Decimal


@dataclass(frozen=True)
class RefundFacts:
    id: int
    payment_id: int
    status: RefundStatus
    amount: Decimal
    currency: str


class Action(StrEnum):
    SUCCEED = "succeed"            # active payment -> succeeded (payment_succeeded)
    LATE_SUCCEED = "late_succeed"  # failed/cancelled/expired -> succeeded (late_payment_received)
    FAIL = "fail"                  # active payment -> failed; refund -> failed
    REFUND_SUCCEED = "refund_succeed"
    FLAG_REFUND = "flag_refund"    # refund stays in flight, flagged for a person (abnormal)
    IGNORE = "ignore"              # nothing changes; inbox `processed` with a note
    REJECT = "reject"              # never applied; inbox `rejected`, payment needs review
    UNMATCHED = "unmatched"        # no such payment/refund here; inbox `unmatched`


@dataclass(frozen=True)
class Decision:
    action: Action
    note: str | None = None
    # The audit event a rejection writes (amount_mismatch, transaction_conflict, ...).
    audit_event: str | None = None


def _money(amount: Decimal, currency: str) -> str:
    return f"{format_amount(amount)} {currency}"


def _amount_differs(expected: Decimal, expected_currency: str, event: CallbackEvent,
                    what: str) -> Decision | None:
    if event.amount == expected and event.currency == expected_currency:
        return None
    return Decision(Action.REJECT, audit_event="amount_mismatch",
                    note=f"amount {_money(event.amount, event.currency)} differs from the "
                         f"{what}'s {_money(expected, expected_currency)}")


def decide_payment_event(payment: PaymentFacts | None, event: CallbackEvent, *,
                         provider: str, transaction_owner: int | None) -> Decision:
    """payment.succeeded / payment.failed against the payment as it is now (locked).

    `transaction_owner` is the payment that already holds the event's transaction
    id at this provider, if any.
    """
    if payment is None:
        return Decision(Action.UNMATCHED, note=f"no payment {event.payment_id}")
    if payment.provider != provider:
        return Decision(Action.UNMATCHED,
                        note=f"payment {payment.id} belongs to provider {payment.provider}")
    if event.type is CallbackEventType.PAYMENT_FAILED:
        return _decide_failure(payment)

    mismatch = _amount_differs(payment.amount, payment.currency, event, "payment")
    if mismatch is not None:
        return mismatch
    if transaction_owner is not None and transaction_owner != payment.id:
        return Decision(Action.REJECT, audit_event="transaction_conflict",
                        note=f"transaction {event.transaction_id} already belongs to "
                             f"payment {transaction_owner}")
    if payment.status in PAID_PAYMENT_STATUSES:
        if payment.transaction_id == event.transaction_id:
            return Decision(Action.IGNORE, note="payment already succeeded with this "
                                                "transaction")
        # A second, different capture for one payment: money may be held twice.
        return Decision(Action.REJECT, audit_event="transaction_conflict",
                        note=f"payment already succeeded with transaction "
                             f"{payment.transaction_id}")
    if payment.status in ACTIVE_PAYMENT_STATUSES:
        return Decision(Action.SUCCEED)
    if payment.status in RETRYABLE_PAYMENT_STATUSES:
        return Decision(Action.LATE_SUCCEED, note=f"late success on a {payment.status.value} "
                                                  "payment")
    return Decision(Action.REJECT, audit_event="callback_rejected",
                    note=f"payment status {payment.status.value} cannot take a success")


def _decide_failure(payment: PaymentFacts) -> Decision:
    if payment.status in ACTIVE_PAYMENT_STATUSES:
        return Decision(Action.FAIL)
    if payment.status in PAID_PAYMENT_STATUSES:
        return Decision(Action.IGNORE, note="ignored: payment already succeeded, a failure "
                                            "never regresses a success")
    return Decision(Action.IGNORE, note=f"ignored: payment already {payment.status.value}")


def order_takes_payment(order_status: OrderStatus) -> bool:
    """A succeeded payment pays its order only while the order waits for it; otherwise
    (expired, cancelled, or already paid by another attempt) the money goes back."""
    return order_status is OrderStatus.PENDING


def decide_refund_event(refund: RefundFacts | None, payment: PaymentFacts | None,
                        event: CallbackEvent, *, provider: str) -> Decision:
    """refund.succeeded / refund.failed against the refund and its payment (both locked)."""
    if refund is None or payment is None or refund.payment_id != event.payment_id:
        return Decision(Action.UNMATCHED,
                        note=f"no refund {event.refund_id} for payment {event.payment_id}")
    if payment.provider != provider:
        return Decision(Action.UNMATCHED,
                        note=f"payment {payment.id} belongs to provider {payment.provider}")
    mismatch = _amount_differs(refund.amount, refund.currency, event, "refund")
    if mismatch is not None:
        return mismatch
    in_flight = refund.status in (RefundStatus.PENDING, RefundStatus.PROCESSING)
    if event.type is CallbackEventType.REFUND_FAILED:
        if in_flight:
            return Decision(Action.FAIL)
        return Decision(Action.IGNORE, note=f"ignored: refund already {refund.status.value}")
    if event.type is CallbackEventType.REFUND_ABNORMAL:
        if in_flight:
            return Decision(Action.FLAG_REFUND, audit_event="refund_abnormal",
                            note="the provider could not pay the refund out; needs review")
        return Decision(Action.IGNORE, note=f"ignored: refund already {refund.status.value}")
    if refund.status is RefundStatus.SUCCEEDED:
        return Decision(Action.IGNORE, note="refund already succeeded")
    # pending, processing, or failed: a success reported after a failure is still money
    # that left us, so it is recorded rather than dropped.
    if payment.status not in REFUNDABLE_PAYMENT_STATUSES:
        return Decision(Action.REJECT, audit_event="callback_rejected",
                        note=f"payment is {payment.status.value}; nothing to refund")
    if payment.refunded_amount + refund.amount > payment.amount:
        return Decision(Action.REJECT, audit_event="callback_rejected",
                        note="refund would exceed the amount paid")
    return Decision(Action.REFUND_SUCCEED)


def payment_status_after_refund(payment: PaymentFacts, refunded_after: Decimal
                                 ) -> PaymentStatus:
    return (PaymentStatus.REFUNDED if refunded_after >= payment.amount
            else PaymentStatus.PARTIALLY_REFUNDED)


def order_status_after_refunds(order_status: OrderStatus, *, refunds_in_flight: bool,
                               net_paid: Decimal) -> OrderStatus | None:
    """Where a `refunding` order goes once no refund of it is in flight: refunded when no
    money is left with us, back to paid otherwise (a partial or failed refund)."""
    if order_status is not OrderStatus.REFUNDING or refunds_in_flight:
        return None
    return OrderStatus.REFUNDED if net_paid <= ZERO else OrderStatus.PAID
