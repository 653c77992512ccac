"""payment_events: the audit row's payment checked once per statement, not once per row (B4)

The foreign key to payments checked each inserted audit row on its own: an index probe
and a KEY SHARE row lock per row, 3.3 us of the expiry sweep's ~28 us of database work per
payment, for a statement that writes 2,000 audit rows of payments it has just updated.
Its two guarantees are kept, set-based:

- Every audit row names an existing payment, or none (payment_id NULL: an event about no
  known payment). An AFTER INSERT trigger FOR EACH STATEMENT looks the statement's new rows
  up in payments in one anti-join: ~0.8 us a row in the sweep, one query per statement.
  A violation is the foreign key's own error (SQLSTATE 23503), so callers see the same
  IntegrityError.
- No payment with history goes away. Payments are never deleted at all, which is stronger:
  a BEFORE DELETE trigger refuses the statement. The foreign key's row lock was there to
  hold off a concurrent delete, and there is none to hold off now. TRUNCATE (the tests'
  reset) is a table-level statement and not affected, as for wallet_entries (0005).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 20:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FOREIGN_KEY = "fk_payment_events_payment_id_payments"

CHECKS = """
CREATE FUNCTION payment_events_name_payments() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
BEGIN
    SELECT i.payment_id INTO missing FROM inserted i
    WHERE i.payment_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.id = i.payment_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'payment_events.payment_id % names no payment', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER payment_events_name_payments AFTER INSERT ON payment_events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION payment_events_name_payments();

CREATE FUNCTION payments_never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payments are never deleted: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER payments_never_deleted BEFORE DELETE ON payments
    FOR EACH STATEMENT EXECUTE FUNCTION payments_never_deleted();
"""

DROP_CHECKS = """
DROP TRIGGER payments_never_deleted ON payments;
DROP FUNCTION payments_never_deleted();
DROP TRIGGER payment_events_name_payments ON payment_events;
DROP FUNCTION payment_events_name_payments();
"""


def upgrade() -> None:
    op.drop_constraint(FOREIGN_KEY, "payment_events", type_="foreignkey")
    op.execute(CHECKS)


def downgrade() -> None:
    op.execute(DROP_CHECKS)
    op.create_foreign_key(FOREIGN_KEY, "payment_events", "payments", ["payment_id"], ["id"])
