"""Rows the scenarios work on, made in bulk with SQL (each scenario needs thousands, and
the API would be the thing being measured): pending orders, and payments for them."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from adapters.resources import Resources

BENCH_USER_ID = 1

# One pending order per row, owned by BENCH_USER_ID, created now (payable).
INSERT_ORDERS = text("""
INSERT INTO orders (order_number, user_id, total_amount, currency, status, created_at,
                    updated_at)
SELECT :prefix || g, :user_id, 100.00, 'CNY', 'pending', now(), now()
FROM generate_series(1, :count) AS g
RETURNING id
""")
# A live `processing` payment (as after `pay`) for each of the given orders.
INSERT_PAYMENTS = text("""
INSERT INTO payments (order_id, user_id, amount, currency, method, status, provider, attempt,
                      fee, refunded_amount, needs_review, created_at, updated_at, expires_at)
SELECT o.id, o.user_id, o.total_amount, o.currency, 'wechat', 'processing', 'sandbox', 1,
       0.60, 0, false, now(), now(), now() + interval '30 minutes'
FROM orders AS o WHERE o.id = ANY(:order_ids)
ORDER BY o.id
RETURNING id
""")
EMPTY_TABLES = text("TRUNCATE provider_callbacks, idempotency_keys, payment_events, "
                    "order_status_history, refunds, payments, orders CASCADE")


def create_orders(res: Resources, count: int) -> list[int]:
    """`count` pending orders of BENCH_USER_ID, ids ascending."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}-"
    with res.db.engine.begin() as conn:
        rows = conn.execute(INSERT_ORDERS, {"prefix": prefix, "user_id": BENCH_USER_ID,
                                            "count": count})
        return sorted(int(r[0]) for r in rows)


def create_processing_payments(res: Resources, count: int) -> list[int]:
    """`count` payments waiting for their provider's callback, ids ascending."""
    order_ids = create_orders(res, count)
    with res.db.engine.begin() as conn:
        rows = conn.execute(INSERT_PAYMENTS, {"order_ids": order_ids})
        return sorted(int(r[0]) for r in rows)


def empty_tables(res: Resources) -> None:
    """Every run starts from empty tables (keys and sandbox tables are kept)."""
    with res.db.engine.begin() as conn:
        conn.execute(EMPTY_TABLES)
