"""Status changes, each with its history or audit row, in the caller's transaction.

Every change is a compare-and-set: the row is locked (SELECT ... FOR UPDATE), the
domain table decides, and the UPDATE re-checks the status it read. Two racing
callers cannot both win; Redis locks in front of this are only an optimisation.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import ClauseElement, func, select
from sqlalchemy.orm import Session

from adapters.metrics import count_payment_moved
from adapters.prepared import Prepared, fetch_one, flushed_connection
from domain.models import Payment
from domain.statuses import (
    ORDER_TRANSITIONS,
    PAYMENT_TRANSITIONS,
    OrderStatus,
    PaymentStatus,
    check_order_transition,
)
from domain.webhooks import order_event, payment_event
from services.audit import jsonable
from services.webhooks.outbox import record_event as record_webhook_event


class _DatabaseNow:
    """A value for transition_payment's `values`: the column is set to the database's now()
    (its clock, as updated_at), in the statement itself."""

    def __repr__(self) -> str:
        return "NOW"


NOW = _DatabaseNow()

# The statements every settlement runs, as psycopg prepared statements (adapters/prepared.py):
# through SQLAlchemy's session each cost ~0.4 ms of Python, more than PostgreSQL spends
# running it; a settlement runs six of them (B4's successes alongside the sweep).
_LOCK_ORDER = Prepared("SELECT status FROM orders WHERE id = %(id)s FOR UPDATE", OrderStatus)
_LOCK_PAYMENT = Prepared("SELECT status FROM payments WHERE id = %(id)s FOR UPDATE",
                         PaymentStatus)
# The compare-and-set and its history row in one statement (one round trip): no row comes
# back when the order was no longer in from_status, and then no history row was written.
_MOVE_ORDER = Prepared("""
    WITH moved AS (
        UPDATE orders SET status = %(to_status)s, updated_at = now()
        WHERE id = %(order_id)s AND status = %(from_status)s
        RETURNING id)
    INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor)
    SELECT id, %(from_status)s, %(to_status)s, %(reason)s, %(actor)s FROM moved
    RETURNING order_id
""", int)


def lock_order_status(session: Session, order_id: int) -> OrderStatus | None:
    return fetch_one(flushed_connection(session), _LOCK_ORDER, {"id": order_id})


def lock_payment_status(session: Session, payment_id: int) -> PaymentStatus | None:
    return fetch_one(flushed_connection(session), _LOCK_PAYMENT, {"id": payment_id})


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
    changed = fetch_one(flushed_connection(session), _MOVE_ORDER, {
        "order_id": order_id, "from_status": current.value, "to_status": to.value,
        "reason": reason, "actor": actor})
    if changed is None:  # unreachable while we hold the row lock; kept as the CAS guard
        return None
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

    `values`: more columns to set, each to its value or to NOW. `allowed_from` narrows
    the state machine's sources (e.g. the expiry sweep only expires init/processing
    payments, never anything else). `locked`: the status the caller read under the
    payment's row lock in this transaction.
    """
    current = locked if locked is not None else lock_payment_status(session, payment_id)
    if current is None or to not in PAYMENT_TRANSITIONS[current]:
        return None
    if allowed_from is not None and current not in allowed_from:
        return None
    values = dict(values or {})
    if any(isinstance(value, ClauseElement) for value in values.values()):
        raise TypeError("transition_payment's values are values or NOW, not SQL expressions")
    changed = fetch_one(flushed_connection(session), _move_payment(tuple(sorted(
        (column, value is NOW) for column, value in values.items()))), {
        **{f"v_{column}": value for column, value in values.items() if value is not NOW},
        "payment_id": payment_id, "from_status": current.value, "to_status": to.value,
        "event": event, "actor": actor, "detail": Jsonb(jsonable(
            {"from_status": current.value, "to_status": to.value, **detail}))})
    if changed is None:
        return None
    count_payment_moved(session, to.value, from_status=current.value)
    webhook_event = payment_event(to)
    if webhook_event is not None:  # the merchant's event (§9), in this same transaction
        record_webhook_event(session, webhook_event, payment_id)
    return current


_MOVE_PAYMENT_SQL = """
    WITH moved AS (
        UPDATE payments SET status = %(to_status)s, updated_at = now(){more}
        WHERE id = %(payment_id)s AND status = %(from_status)s
        RETURNING id)
    INSERT INTO payment_events (payment_id, event, actor, detail)
    SELECT id, %(event)s, %(actor)s, %(detail)s FROM moved
    RETURNING payment_id
"""


@lru_cache(maxsize=32)
def _move_payment(columns: tuple[tuple[str, bool], ...]) -> Prepared[int]:
    """The payment's compare-and-set and its audit row in one statement, for one set of
    extra columns: (name, True) is set to now(), (name, False) to %(v_<name>)s. No row
    back: the payment was no longer in from_status, and nothing was written."""
    unknown = {name for name, _ in columns} - set(Payment.__table__.c.keys())
    if unknown:  # names are written into the SQL: only the table's own
        raise ValueError(f"payments has no column {sorted(unknown)}")
    more = "".join(f", {name} = now()" if now else f", {name} = %(v_{name})s"
                   for name, now in columns)
    return Prepared(_MOVE_PAYMENT_SQL.replace("{more}", more), int)


def utc_now(session: Session) -> datetime:
    """The database's clock: one clock for every comparison with stored timestamps."""
    now: datetime = session.execute(select(func.now())).scalar_one()
    return now
