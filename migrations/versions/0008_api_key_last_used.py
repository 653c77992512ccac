"""api_keys.last_used_at: when a key was last seen, to within API_KEY_LAST_USED_GRANULARITY
(services/api_keys.py), so `payments keys list` shows which keys are still in use.

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-01 11:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('api_keys', sa.Column('last_used_at', sa.DateTime(timezone=True),
                                        nullable=True))


def downgrade() -> None:
    op.drop_column('api_keys', 'last_used_at')
