"""sandbox provider: its payments (tickets), refunds and callback deliveries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    if nullable:
        return sa.Column(name, sa.DateTime(timezone=True), nullable=True)
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"),
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "sandbox_payments",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("ticket", sa.String(length=64), nullable=False),
        sa.Column("merchant_payment_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("transaction_id", sa.String(length=128), nullable=True),
        sa.Column("refunded_amount", sa.Numeric(precision=14, scale=2), server_default="0",
                  nullable=False),
        sa.Column("test_options", postgresql.JSONB(astext_type=sa.Text()),
                  server_default="{}", nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("decided_at", nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_sandbox_payments_positive_amount")),
        sa.CheckConstraint("refunded_amount >= 0 AND refunded_amount <= amount",
                           name=op.f("ck_sandbox_payments_refund_within_amount")),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'closed')",
                           name=op.f("ck_sandbox_payments_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_payments")),
        sa.UniqueConstraint("merchant_payment_id",
                            name=op.f("uq_sandbox_payments_merchant_payment_id")),
        sa.UniqueConstraint("ticket", name=op.f("uq_sandbox_payments_ticket")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_sandbox_payments_transaction_id")),
    )
    op.create_table(
        "sandbox_refunds",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("sandbox_payment_id", sa.BigInteger(), nullable=False),
        sa.Column("merchant_refund_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("amount > 0", name=op.f("ck_sandbox_refunds_positive_amount")),
        sa.CheckConstraint("status IN ('succeeded', 'failed')",
                           name=op.f("ck_sandbox_refunds_status")),
        sa.ForeignKeyConstraint(["sandbox_payment_id"], ["sandbox_payments.id"],
                                name=op.f("fk_sandbox_refunds_sandbox_payment_id_"
                                          "sandbox_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_refunds")),
        sa.UniqueConstraint("reference", name=op.f("uq_sandbox_refunds_reference")),
        sa.UniqueConstraint("sandbox_payment_id", "merchant_refund_id",
                            name=op.f("uq_sandbox_refunds_sandbox_payment_id_"
                                      "merchant_refund_id")),
    )
    op.create_index(op.f("ix_sandbox_refunds_sandbox_payment_id"), "sandbox_refunds",
                    ["sandbox_payment_id"])
    op.create_table(
        "sandbox_deliveries",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("sandbox_payment_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("simulated_failures", sa.Integer(), server_default="0", nullable=False),
        _timestamp("not_before"),
        sa.Column("after_delivery_id", sa.BigInteger(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("delivered_at", nullable=True),
        sa.CheckConstraint("status IN ('held', 'waiting', 'pending', 'delivered', 'abandoned')",
                           name=op.f("ck_sandbox_deliveries_status")),
        sa.ForeignKeyConstraint(["after_delivery_id"], ["sandbox_deliveries.id"],
                                name=op.f("fk_sandbox_deliveries_after_delivery_id_"
                                          "sandbox_deliveries")),
        sa.ForeignKeyConstraint(["sandbox_payment_id"], ["sandbox_payments.id"],
                                name=op.f("fk_sandbox_deliveries_sandbox_payment_id_"
                                          "sandbox_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_deliveries")),
    )
    op.create_index("ix_sandbox_deliveries_after", "sandbox_deliveries", ["after_delivery_id"])
    op.create_index(op.f("ix_sandbox_deliveries_event_id"), "sandbox_deliveries",
                    ["event_id"])
    op.create_index(op.f("ix_sandbox_deliveries_sandbox_payment_id"), "sandbox_deliveries",
                    ["sandbox_payment_id"])


def downgrade() -> None:
    op.drop_table("sandbox_deliveries")
    op.drop_table("sandbox_refunds")
    op.drop_table("sandbox_payments")
