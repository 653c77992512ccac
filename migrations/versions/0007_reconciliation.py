"""reconciliation: a run per provider and statement day, and its items (issue #17)

Revision ID: 0007
Revises: 0008
Create Date: 2026-12-01 11:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0008"  # main's head when rec merged main (the brief said 0004, then head)
branch_labels = None
depends_on = None

_KINDS = ("missing_here", "unknown_here", "missing_at_provider", "amount_mismatch",
          "currency_mismatch", "transaction_id_mismatch", "status_mismatch")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("statement_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("statement_lines", sa.Integer(), server_default="0", nullable=False),
        sa.Column("matched", sa.Integer(), server_default="0", nullable=False),
        sa.Column("applied", sa.Integer(), server_default="0", nullable=False),
        sa.Column("flagged", sa.Integer(), server_default="0", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.CheckConstraint(_in("status", ("running", "succeeded", "failed")),
                           name=op.f("ck_reconciliation_runs_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
        sa.UniqueConstraint("provider", "statement_date",
                            name=op.f("uq_reconciliation_runs_provider_statement_date")),
    )
    op.create_table(
        "reconciliation_items",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("object", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.BigInteger(), nullable=True),
        sa.Column("refund_id", sa.BigInteger(), nullable=True),
        sa.Column("our_amount", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("provider_amount", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("our_currency", sa.String(length=3), nullable=True),
        sa.Column("provider_currency", sa.String(length=3), nullable=True),
        sa.Column("our_transaction_id", sa.String(length=128), nullable=True),
        sa.Column("provider_transaction_id", sa.String(length=128), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.CheckConstraint(_in("object", ("payment", "refund")),
                           name=op.f("ck_reconciliation_items_object")),
        sa.CheckConstraint(_in("kind", _KINDS), name=op.f("ck_reconciliation_items_kind")),
        sa.CheckConstraint(_in("status", ("applied", "flagged")),
                           name=op.f("ck_reconciliation_items_status")),
        sa.ForeignKeyConstraint(["run_id"], ["reconciliation_runs.id"], ondelete="CASCADE",
                                name=op.f("fk_reconciliation_items_run_id_reconciliation_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_items")),
    )
    op.create_index("ix_reconciliation_items_run_id", "reconciliation_items", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_reconciliation_items_run_id", table_name="reconciliation_items")
    op.drop_table("reconciliation_items")
    op.drop_table("reconciliation_runs")
