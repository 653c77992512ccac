"""The audit trail's ties to payments, kept by the database (migration 0012).

payment_events has no foreign key (it cost the expiry sweep an index probe and a row lock
per audit row); a statement-level trigger checks every row a statement inserts instead,
and payments are never deleted. These tests show both still hold, for a single insert as a
settlement writes it and for a set-based one as the sweep writes it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from adapters.resources import Resources
from domain.models import Payment, PaymentEvent
from services.audit import record_event
from tests.support.factories import make_order, make_payment


def audit_rows(res: Resources) -> int:
    with res.uow() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(PaymentEvent)) or 0)


def test_an_audit_row_naming_no_payment_is_refused_with_the_foreign_key_error(clean_db):
    payment_id = make_payment(clean_db, make_order(clean_db))
    with pytest.raises(IntegrityError, match=f"payment_id {payment_id + 1000} names no payment"
                       ) as raised:
        with clean_db.uow() as uow:
            record_event(uow.session, "payment_note", payment_id=payment_id + 1000,
                         actor="test")
            uow.commit()
    assert raised.value.orig.sqlstate == "23503"  # foreign_key_violation, as before
    assert audit_rows(clean_db) == 0


def test_one_missing_payment_refuses_a_whole_set_based_insert(clean_db):
    payment_id = make_payment(clean_db, make_order(clean_db))
    with pytest.raises(IntegrityError, match="names no payment"):
        with clean_db.uow() as uow:
            uow.session.execute(text(
                "INSERT INTO payment_events (payment_id, event, actor, detail) "
                "SELECT id, 'payment_note', 'test', '{}' FROM unnest(CAST(:ids AS bigint[])) id"),
                {"ids": [payment_id, payment_id, payment_id + 1000]})
            uow.commit()
    assert audit_rows(clean_db) == 0


def test_audit_rows_of_existing_payments_or_of_none_are_stored(clean_db):
    payment_id = make_payment(clean_db, make_order(clean_db))
    with clean_db.uow() as uow:
        record_event(uow.session, "payment_note", payment_id=payment_id, actor="test")
        record_event(uow.session, "signature_verification_failed", payment_id=None,
                     actor="test")
        uow.commit()
    assert audit_rows(clean_db) == 2


def test_a_payment_created_in_the_same_transaction_can_be_audited_at_once(clean_db):
    order_id = make_order(clean_db)
    with clean_db.uow() as uow:
        payment_id = uow.session.scalar(text(
            "INSERT INTO payments (order_id, user_id, amount, currency, method, status, "
            "provider, attempt, fee, expires_at) VALUES (:order_id, 1, 10, 'CNY', 'wechat', "
            "'init', 'sandbox', 1, 0, now() + interval '30 minutes') RETURNING id"),
            {"order_id": order_id})
        record_event(uow.session, "payment_created", payment_id=payment_id, actor="test")
        uow.commit()
    assert audit_rows(clean_db) == 1


def test_payments_are_never_deleted_so_no_audit_row_is_orphaned(clean_db):
    payment_id = make_payment(clean_db, make_order(clean_db))
    with clean_db.uow() as uow:
        record_event(uow.session, "payment_note", payment_id=payment_id, actor="test")
        uow.commit()
    for statement in (f"DELETE FROM payments WHERE id = {payment_id}", "DELETE FROM payments"):
        with pytest.raises(DBAPIError, match="payments are never deleted"):
            with clean_db.uow() as uow:
                uow.session.execute(text(statement))
    with clean_db.uow() as uow:
        assert uow.session.get(Payment, payment_id) is not None
    assert audit_rows(clean_db) == 1
