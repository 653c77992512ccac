"""Status changes, each with its history or audit row, in the caller's transaction.

Every change is a compare-and-set: the row is locked (SELECT ... FOR UPDATE), the
domain table decides, and the UPDATE re-checks the status it read. Two racing
callers cannot both win; Redis locks in front of this are only an optimisation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from adapters.metrics import count_payment_moved
from domain.models import Base, Order, OrderStatusHistory, Payment
from domain.statuses import (
    ORDER_TRANSITIONS,
    PAYMENT_TRANSITIONS,
    OrderStatus,
    PaymentStatus,
    check_order_transition,
)
from domain.webhooks import order_event, payment_event
from services.audit import record_event
from services.webhooks.outbox import record_event as record_webhook_event

# The statements every settlement runs, built once: building and cache-keying a
# statement per call cost more Python time than PostgreSQL spends running it (B2).
_LOCK_ORDER = select(Order.status).where(Order.id == bindparam("id")).with_for_update()
_LOCK_PAYMENT = select(Payment.status).where(Payment.id == bindparam("id")).with_for_update()
# On the table, not the mapped class: the ORM's bulk-insert path costs several times more.
_INSERT_ORDER_HISTORY = insert(Base.metadata.tables[OrderStatusHistory.__tablename__])
_MOVE_ORDER = (update(Order)
               .where(Order.id == bindparam("order_id"),
                      Order.status == bindparam("from_status"))
               .values(status=bindparam("to_status"), updated_at=func.now())
               .returning(Order.id)
               .execution_options(synchronize_session=False))


def lock_order_status(session: Session, order_id: int) -> OrderStatus | None:
    status = session.execute(_LOCK_ORDER, {"id": order_id}).scalar_one_or_none()
    return OrderStatus(status) if status is not None else None


def lock_payment_status(session: Session, payment_id: int) -> PaymentStatus | None:
    status = session.execute(_LOCK_PAYMENT, {"id": payment_id}).scalar_one_or_none()
    return PaymentStatus(status) if status is not None else None


def transition_order(session: Session, order_id: int, to: OrderStatus, *, actor: str,
                     reason: str | None = None, strict: bool = False,
                     locked: OrderStatus | None = None) -> OrderStatus | None:
    """Move the order to `to` if the state machine allows it; write its history row.

    Returns the previous status, or None when the move is not allowed from the
    current status (nothing changed). With strict=True a disallowed move raises
    InvalidTransition instead, for callers that report it (the admin API).
    `locked`: the status the caller read with lock_order_status in this transaction
    (the row stays locked until it ends, so it cannot have changed); saves locking again.
    """
    current = locked if locked is not None else lock_order_status(session, order_id)
    if current is None:
        return None
    if to not in ORDER_TRANSITIONS[current]:
        if strict:
            check_order_transition(current, to)
        return None
    changed = session.execute(_MOVE_ORDER, {"order_id": order_id, "from_status": current.value,
                                            "to_status": to.value}).scalar_one_or_none()
    if changed is None:  # unreachable while we hold the row lock; kept as the CAS guard
        return None
    session.execute(_INSERT_ORDER_HISTORY, {
        "order_id": order_id, "from_status": current.value, "to_status": to.value,
        "reason": reason, "actor": actor})
    webhook_event = order_event(current, to)
    if webhook_event is not None:  # the merchant's event (§9), after the history it shows
        record_webhook_event(session, webhook_event, order_id)
    return current


def transition_payment(session: Session, payment_id: int, to: PaymentStatus, *, actor: str,
                       event: str, values: dict[str, Any] | None = None,
                       allowed_from: frozenset[PaymentStatus] | None = None,
                       locked: PaymentStatus | None = None,
                       **detail: Any) -> PaymentStatus | None:
    """Move the payment to `to` and write the audit `event`; None if not allowed now.

    `allowed_from` narrows the state machine's sources (e.g. the expiry sweep
    only expires init/processing payments, never anything else). `locked`: the
    status the caller read under the payment's row lock in this transaction.
    """
    current = locked if locked is not None else lock_payment_status(session, payment_id)
    if current is None or to not in PAYMENT_TRANSITIONS[current]:
        return None
    if allowed_from is not None and current not in allowed_from:
        return None
    changed = session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status == current.value)
        .values(status=to.value, updated_at=func.now(), **(values or {}))
        .returning(Payment.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if changed is None:
        return None
    record_event(session, event, payment_id=payment_id, actor=actor,
                 from_status=current.value, to_status=to.value, **detail)
    count_payment_moved(session, to.value, from_status=current.value)
    webhook_event = payment_event(to)
    if webhook_event is not None:  # the merchant's event (§9), in this same transaction
        record_webhook_event(session, webhook_event, payment_id)
    return current


def utc_now(session: Session) -> datetime:
    """The database's clock: one clock for every comparison with stored timestamps."""
    now: datetime = session.execute(select(func.now())).scalar_one()
    return now
