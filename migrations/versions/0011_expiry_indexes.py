"""payment_events: drop the index on `event`, which no query uses (B4)

Every audit row paid for an entry in it, and the expiry sweep writes one audit row per
payment: about 5% of a sweep batch's time and 75 of its ~2,100 WAL bytes per payment.
The audit trail is read by payment (ix_payment_events_payment_id), never by event name.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0011"
# Written on 0009 as 0010_expiry_indexes; chained after main's 0010 (provider success times).
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_payment_events_event", table_name="payment_events")


def downgrade() -> None:
    op.create_index("ix_payment_events_event", "payment_events", ["event"], unique=False)
