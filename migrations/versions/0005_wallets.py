"""wallets: balances, the append-only ledger, and order purposes (DESIGN.md §10)

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None

# The ledger is history: a correction is a new entry, never an edit. TRUNCATE (the
# tests' reset) is a table-level statement and not affected.
APPEND_ONLY = """
CREATE FUNCTION wallet_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wallet_entries is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER wallet_entries_append_only BEFORE UPDATE OR DELETE ON wallet_entries
    FOR EACH ROW EXECUTE FUNCTION wallet_entries_append_only();
"""


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"),
                     nullable=False)


def upgrade() -> None:
    op.add_column("orders", sa.Column("purpose", sa.String(length=16),
                                      server_default="purchase", nullable=False))
    op.create_check_constraint(op.f("ck_orders_purpose"), "orders",
                               "purpose IN ('purchase', 'wallet_topup')")
    op.create_table(
        "wallets",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("balance", sa.Numeric(precision=14, scale=2), server_default="0",
                  nullable=False),
        sa.Column("currency", sa.String(length=3), server_default="CNY", nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_wallets_balance_not_negative")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_wallets")),
    )
    op.create_table(
        "wallet_entries",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("balance_after", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("payment_id", sa.BigInteger(), nullable=True),
        sa.Column("refund_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        _timestamp("created_at"),
        sa.CheckConstraint("kind IN ('credit', 'payment', 'refund', 'topup')",
                           name=op.f("ck_wallet_entries_kind")),
        sa.CheckConstraint("balance_after >= 0",
                           name=op.f("ck_wallet_entries_balance_after_not_negative")),
        sa.CheckConstraint("amount <> 0 AND (kind = 'refund' OR "
                           "(kind IN ('credit', 'topup') AND amount > 0) OR "
                           "(kind = 'payment' AND amount < 0))",
                           name=op.f("ck_wallet_entries_signed_by_kind")),
        sa.ForeignKeyConstraint(["user_id"], ["wallets.user_id"],
                                name=op.f("fk_wallet_entries_user_id_wallets")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"],
                                name=op.f("fk_wallet_entries_payment_id_payments")),
        sa.ForeignKeyConstraint(["refund_id"], ["refunds.id"],
                                name=op.f("fk_wallet_entries_refund_id_refunds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_entries")),
    )
    op.create_index("ix_wallet_entries_user_id_id", "wallet_entries", ["user_id", "id"])
    op.create_index("uq_wallet_entries_debit_per_payment", "wallet_entries", ["payment_id"],
                    unique=True, postgresql_where=sa.text("kind = 'payment'"))
    op.create_index("uq_wallet_entries_topup_per_payment", "wallet_entries", ["payment_id"],
                    unique=True, postgresql_where=sa.text("kind = 'topup'"))
    op.create_index("uq_wallet_entries_refund_out", "wallet_entries", ["refund_id"],
                    unique=True, postgresql_where=sa.text("amount < 0"))
    op.create_index("uq_wallet_entries_refund_in", "wallet_entries", ["refund_id"],
                    unique=True, postgresql_where=sa.text("amount > 0"))
    op.execute(APPEND_ONLY)


def downgrade() -> None:
    op.execute("DROP TRIGGER wallet_entries_append_only ON wallet_entries")
    op.execute("DROP FUNCTION wallet_entries_append_only()")
    op.drop_table("wallet_entries")
    op.drop_table("wallets")
    op.drop_constraint(op.f("ck_orders_purpose"), "orders", type_="check")
    op.drop_column("orders", "purpose")
