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


Os, Ps = OrderStatus, PaymentStatus

# Seed 002's matrix plus `expired`.
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    Os.PENDING: frozenset({Os.PAID, Os.CANCELLED, Os.EXPIRED}),
    Os.PAID: frozenset({Os.SHIPPED, Os.REFUNDING, Os.CANCELLED}),
    Os.SHIPPED: frozenset({Os.COMPLETED, Os.REFUNDING}),
    Os.COMPLETED: frozenset({Os.REFUNDING}),
    Os.REFUNDING: frozenset({Os.REFUNDED, Os.PAID}),
    Os.CANCELLED: frozenset(),
    Os.EXPIRED: frozenset(),
    Os.REFUNDED: frozenset(),
}

PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    Ps.INIT: frozenset({Ps.PROCESSING, Ps.SUCCEEDED, Ps.FAILED, Ps.CANCELLED, Ps.EXPIRED}),
    Ps.PROCESSING: frozenset({Ps.SUCCEEDED, Ps.FAILED, Ps.CANCELLED, Ps.EXPIRED}),
    # A late success: the provider holds the customer's money, so it is never dropped.
    Ps.FAILED: frozenset({Ps.SUCCEEDED}),
    Ps.CANCELLED: frozenset({Ps.SUCCEEDED}),
    Ps.EXPIRED: frozenset({Ps.SUCCEEDED}),
    Ps.SUCCEEDED: frozenset({Ps.PARTIALLY_REFUNDED, Ps.REFUNDED}),
    Ps.PARTIALLY_REFUNDED: frozenset({Ps.PARTIALLY_REFUNDED, Ps.REFUNDED}),
    Ps.REFUNDED: frozenset(),
}

ACTIVE_PAYMENT_STATUSES = frozenset({Ps.INIT, Ps.PROCESSING})
RETRYABLE_PAYMENT_STATUSES = frozenset({Ps.FAILED, Ps.EXPIRED, Ps.CANCELLED})
# Money has reached us for these.
PAID_PAYMENT_STATUSES = frozenset({Ps.SUCCEEDED, Ps.PARTIALLY_REFUNDED, Ps.REFUNDED})


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
