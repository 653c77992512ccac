"""A new payment attempt in two statements: the order locked, then the attempt inserted
with its audit row (B5: payment creation is the API's busiest write).

Creation and retry both insert their attempt here. Through the ORM (the reads and the
audit row's insert around an INSERT) an attempt took eight statements, each round trip
costing more Python than PostgreSQL spends on it. Here:

1. `lock_order`: the order row `FOR UPDATE` and the database clock, in one statement.
   Creators of one order queue on this lock.
2. `insert_attempt`: ONE statement, run while the lock is held, so it reads with a
   snapshot taken after any earlier lock holder committed (a statement of its own:
   a subquery of the locking statement would read with the snapshot from before the
   wait). It finds the order's active payment, if any; when there is none it inserts
   the next attempt (`ON CONFLICT DO NOTHING` on the one-active-payment index, the
   database's own guarantee) and its `payment_created` audit row from the INSERT's
   RETURNING, and returns the new payment's columns that its detail view shows and
   its audit row, which are the whole of that view.

Both run as psycopg prepared statements (adapters/prepared.py), each row made straight
into its class: through SQLAlchemy's execution they cost about a sixth of a creation's
CPU more (B5).

Rules (seed 000's checks, the order's payability, what to do with an active payment)
stay in services/payments.py; this module only reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from adapters.prepared import Prepared, fetch_one
from domain.errors import NotFound
from domain.ids import MAX_BIGINT
from services.api_keys import Principal
from services.queries import payment_fields


@dataclass(frozen=True)
class LockedOrder:
    """What creating an attempt needs of the order, read under its row lock."""

    id: int
    user_id: int
    total_amount: Decimal
    currency: str
    status: str
    purpose: str
    created_at: datetime
    now: datetime  # the database's clock, for every comparison with stored timestamps


# Its columns in LockedOrder's order.
_LOCK_ORDER = Prepared("""
    SELECT id, user_id, total_amount, currency, status, purpose, created_at, now() AS now
    FROM orders WHERE id = %(order_id)s FOR UPDATE
""", LockedOrder)


def lock_order(session: Session, principal: Principal, order_id: int) -> LockedOrder:
    """The order, locked, if this caller may see it; else NotFound (another user's too)."""
    if not 0 < order_id <= MAX_BIGINT:
        raise NotFound("Order not found", code="order_not_found")
    order = fetch_one(session.connection(), _LOCK_ORDER, {"order_id": order_id})
    if order is None or not (principal.is_admin or principal.user_id == order.user_id):
        raise NotFound("Order not found", code="order_not_found")
    return order


@dataclass(frozen=True)
class AttemptResult:
    """Either the new payment's view (`created`), or the active payment that stopped it
    (`active_id`, and its `active_expires_at`); neither: the one-active-payment index
    refused the insert although no active payment was seen (a creator that did not lock
    the order)."""

    created: dict[str, Any] | None
    active_id: int | None
    active_expires_at: datetime | None


class _AttemptRow(NamedTuple):
    """_INSERT_ATTEMPT's one row: the new payment's columns that its detail view shows
    (queries.payment_fields reads them by name), its audit row, and the active payment
    that stopped it. The payment's and audit row's columns are None when nothing was
    inserted."""

    id: int | None
    order_id: int | None
    amount: Decimal | None
    currency: str | None
    method: str | None
    status: str | None
    provider: str | None
    transaction_id: str | None
    out_trade_no: str | None
    pay_url: str | None
    attempt: int | None
    fee: Decimal | None
    refunded_amount: Decimal | None
    created_at: datetime | None
    updated_at: datetime | None
    expires_at: datetime | None
    paid_at: datetime | None
    needs_review: bool | None
    log_event: str | None
    log_detail: dict[str, Any] | None
    log_actor: str | None
    log_at: datetime | None
    active_id: int | None
    active_expires_at: datetime | None


_VIEW_COLUMNS = _AttemptRow._fields[:_AttemptRow._fields.index("needs_review") + 1]
_INSERT_ATTEMPT = Prepared(f"""
    WITH active AS (
        SELECT id, expires_at FROM payments
        WHERE order_id = %(order_id)s AND status IN ('init', 'processing')
    ),
    created AS (
        INSERT INTO payments (order_id, user_id, amount, currency, method, status, provider,
                              attempt, fee, refunded_amount, needs_review, created_at,
                              updated_at, expires_at)
        SELECT %(order_id)s, %(user_id)s, %(amount)s, %(currency)s, %(method)s, 'init',
               %(provider)s, coalesce(max(attempt), 0) + 1, %(fee)s, 0, false, %(now)s,
               %(now)s, %(expires_at)s
        FROM payments WHERE order_id = %(order_id)s
        HAVING NOT EXISTS (SELECT 1 FROM active)
        -- Literal, as in the index: PostgreSQL matches the index by its predicate text.
        ON CONFLICT (order_id) WHERE status IN ('init', 'processing') DO NOTHING
        RETURNING {", ".join(_VIEW_COLUMNS)}
    ),
    audit AS (
        INSERT INTO payment_events (payment_id, event, actor, detail)
        SELECT id, 'payment_created', %(actor)s, jsonb_build_object(
            'method', method, 'amount', CAST(%(amount_text)s AS text), 'currency', currency,
            'attempt', attempt, 'expires_at', CAST(%(expires_at_text)s AS text),
            'retry_of', CAST(%(retry_of)s AS bigint))
        FROM created
        RETURNING event, detail, actor, created_at
    )
    SELECT {", ".join(f"created.{name}" for name in _VIEW_COLUMNS)},
           audit.event, audit.detail, audit.actor, audit.created_at,
           (SELECT id FROM active), (SELECT expires_at FROM active)
    FROM (SELECT 1) AS one LEFT JOIN created ON true LEFT JOIN audit ON true
""", _AttemptRow)


def insert_attempt(session: Session, order: LockedOrder, *, method: str, provider: str,
                   fee: Decimal, expires_at: datetime, actor: str,
                   retry_of: int | None = None) -> AttemptResult:
    """The order's next attempt (init) with its audit row, unless it has an active payment.
    Call with the order locked (lock_order). `retry_of`: the payment a retry follows."""
    row = fetch_one(session.connection(), _INSERT_ATTEMPT, {
        "order_id": order.id, "user_id": order.user_id, "amount": order.total_amount,
        "currency": order.currency, "method": method, "provider": provider, "fee": fee,
        "now": order.now, "expires_at": expires_at, "actor": actor,
        "amount_text": str(order.total_amount), "expires_at_text": expires_at.isoformat(),
        "retry_of": retry_of,
    })
    assert row is not None  # the SELECT always returns its one row
    if row.id is None:
        return AttemptResult(None, row.active_id, row.active_expires_at)
    view = {**payment_fields(row),
            "logs": [{"event": row.log_event, "detail": row.log_detail,
                      "actor": row.log_actor, "at": row.log_at}]}
    return AttemptResult(view, None, None)
