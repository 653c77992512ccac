"""Order and payment statuses and the transitions between them (DESIGN.md §4)."""

from __future__ import annotations

from enum import StrEnum

from domain.errors import InvalidTransition


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    REFUNDING = "refunding"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class PaymentStatus(StrEnum):
    INIT = "init"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class RefundStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class CallbackStatus(StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    REJECTED = "rejected"
    UNMATCHED = "unmatched"
    FAILED = "failed"


O, P = OrderStatus, PaymentStatus

# Seed 002's matrix plus `expired`.
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    O.PENDING: frozenset({O.PAID, O.CANCELLED, O.EXPIRED}),
    O.PAID: frozenset({O.SHIPPED, O.REFUNDING, O.CANCELLED}),
    O.SHIPPED: frozenset({O.COMPLETED, O.REFUNDING}),
    O.COMPLETED: frozenset({O.REFUNDING}),
    O.REFUNDING: frozenset({O.REFUNDED, O.PAID}),
    O.CANCELLED: frozenset(),
    O.EXPIRED: frozenset(),
    O.REFUNDED: frozenset(),
}

PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    P.INIT: frozenset({P.PROCESSING, P.SUCCEEDED, P.FAILED, P.CANCELLED, P.EXPIRED}),
    P.PROCESSING: frozenset({P.SUCCEEDED, P.FAILED, P.CANCELLED, P.EXPIRED}),
    # A late success: the provider holds the customer's money, so it is never dropped.
    P.FAILED: frozenset({P.SUCCEEDED}),
    P.CANCELLED: frozenset({P.SUCCEEDED}),
    P.EXPIRED: frozenset({P.SUCCEEDED}),
    P.SUCCEEDED: frozenset({P.PARTIALLY_REFUNDED, P.REFUNDED}),
    P.PARTIALLY_REFUNDED: frozenset({P.PARTIALLY_REFUNDED, P.REFUNDED}),
    P.REFUNDED: frozenset(),
}

ACTIVE_PAYMENT_STATUSES = frozenset({P.INIT, P.PROCESSING})
RETRYABLE_PAYMENT_STATUSES = frozenset({P.FAILED, P.EXPIRED, P.CANCELLED})
# Money has reached us for these.
PAID_PAYMENT_STATUSES = frozenset({P.SUCCEEDED, P.PARTIALLY_REFUNDED, P.REFUNDED})


def order_sources(target: OrderStatus) -> frozenset[OrderStatus]:
    """Every status an order may move to `target` from: the WHERE of a compare-and-set."""
    return frozenset(s for s, targets in ORDER_TRANSITIONS.items() if target in targets)


def payment_sources(target: PaymentStatus) -> frozenset[PaymentStatus]:
    return frozenset(s for s, targets in PAYMENT_TRANSITIONS.items() if target in targets)


def check_order_transition(current: str, target: str) -> OrderStatus:
    try:
        to = OrderStatus(target)
    except ValueError:
        raise InvalidTransition("order", current, target) from None
    if to not in ORDER_TRANSITIONS[OrderStatus(current)]:
        raise InvalidTransition("order", current, target)
    return to


def check_payment_transition(current: str, target: str) -> PaymentStatus:
    to = PaymentStatus(target)
    if to not in PAYMENT_TRANSITIONS[PaymentStatus(current)]:
        raise InvalidTransition("payment", current, target)
    return to
