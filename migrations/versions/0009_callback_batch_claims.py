"""callback batches: a claim lease on inbox rows and an index of the waiting ones

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-01 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
# Written on 0004; chained after main's head (0008, then 0007: reconciliation) as main was merged.
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("provider_callbacks",
                  sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_provider_callbacks_waiting", "provider_callbacks", ["id"],
                    postgresql_where=sa.text("status = 'received'"))


def downgrade() -> None:
    op.drop_index("ix_provider_callbacks_waiting", table_name="provider_callbacks")
    op.drop_column("provider_callbacks", "claimed_until")
