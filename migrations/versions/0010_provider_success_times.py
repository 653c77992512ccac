"""the provider's own success time of a payment and of a refund (reconciliation, #17)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 15:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: unknown for rows settled before this, for the wallet, and where the
    # provider's answer names no time. The books then fall back on paid_at/completed_at.
    op.add_column("payments",
                  sa.Column("provider_paid_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("refunds",
                  sa.Column("provider_completed_at", sa.DateTime(timezone=True),
                            nullable=True))


def downgrade() -> None:
    op.drop_column("refunds", "provider_completed_at")
    op.drop_column("payments", "provider_paid_at")
