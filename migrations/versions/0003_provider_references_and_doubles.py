"""real providers: merchant references, refunds needing review, the doubles' tables

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    if nullable:
        return sa.Column(name, sa.DateTime(timezone=True), nullable=True)
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"),
                     nullable=False)


def upgrade() -> None:
    op.add_column("payments", sa.Column("out_trade_no", sa.String(length=64), nullable=True))
    op.create_unique_constraint(op.f("uq_payments_out_trade_no"), "payments", ["out_trade_no"])
    op.add_column("refunds", sa.Column("out_refund_no", sa.String(length=64), nullable=True))
    op.create_unique_constraint(op.f("uq_refunds_out_refund_no"), "refunds", ["out_refund_no"])
    op.add_column("refunds", sa.Column("needs_review", sa.Boolean(), server_default="false",
                                       nullable=False))

    op.create_table(
        "standin_orders",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("merchant", sa.String(length=64), nullable=False),
        sa.Column("out_trade_no", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("notify_url", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=True),
        sa.Column("pay_token", sa.String(length=64), nullable=False),
        sa.Column("request_body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("paid_at", nullable=True),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_standin_orders_positive_amount")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_standin_orders")),
        sa.UniqueConstraint("provider", "merchant", "out_trade_no",
                            name=op.f("uq_standin_orders_provider_merchant_out_trade_no")),
        sa.UniqueConstraint("pay_token", name=op.f("uq_standin_orders_pay_token")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_standin_orders_transaction_id")),
    )
    op.create_table(
        "standin_refunds",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("merchant", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("out_refund_no", sa.String(length=64), nullable=False),
        sa.Column("refund_ref", sa.String(length=64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("request_body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("finished_at", nullable=True),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_standin_refunds_positive_amount")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_standin_refunds")),
        sa.UniqueConstraint("provider", "merchant", "out_refund_no",
                            name=op.f("uq_standin_refunds_provider_merchant_out_refund_no")),
        sa.UniqueConstraint("refund_ref", name=op.f("uq_standin_refunds_refund_ref")),
    )
    op.create_index(op.f("ix_standin_refunds_order_id"), "standin_refunds", ["order_id"])
    op.create_table(
        "standin_notifications",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        _timestamp("not_before"),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("delivered_at", nullable=True),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'abandoned')",
                           name=op.f("ck_standin_notifications_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_standin_notifications")),
    )


def downgrade() -> None:
    op.drop_table("standin_notifications")
    op.drop_index(op.f("ix_standin_refunds_order_id"), table_name="standin_refunds")
    op.drop_table("standin_refunds")
    op.drop_table("standin_orders")
    op.drop_column("refunds", "needs_review")
    op.drop_constraint(op.f("uq_refunds_out_refund_no"), "refunds", type_="unique")
    op.drop_column("refunds", "out_refund_no")
    op.drop_constraint(op.f("uq_payments_out_trade_no"), "payments", type_="unique")
    op.drop_column("payments", "out_trade_no")
