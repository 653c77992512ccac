"""Fixing a payment's out_trade_no or a refund's out_refund_no (domain/references.py)
before the provider first hears of it: every retry, and every later call, then names the
same one, even if OUT_TRADE_NO_PREFIX changed meanwhile."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import InstrumentedAttribute

from adapters.db import UnitOfWork
from adapters.resources import Resources
from domain.models import Payment, Refund
from domain.references import MerchantReferences


def fix_out_trade_no(uow: UnitOfWork, res: Resources, payment_id: int) -> str:
    reference = MerchantReferences(res.settings.out_trade_no_prefix).out_trade_no(payment_id)
    return _fix(uow, Payment.out_trade_no, Payment.id, payment_id, reference)


def fix_out_refund_no(uow: UnitOfWork, res: Resources, refund_id: int) -> str:
    reference = MerchantReferences(res.settings.out_trade_no_prefix).out_refund_no(refund_id)
    return _fix(uow, Refund.out_refund_no, Refund.id, refund_id, reference)


def _fix(uow: UnitOfWork, column: InstrumentedAttribute[str | None],
         key: InstrumentedAttribute[int], row_id: int, reference: str) -> str:
    """Set it once (compare-and-set on NULL), committed; whichever write won is the one."""
    uow.session.execute(update(column.class_).where(key == row_id, column.is_(None))
                        .values({column: reference})
                        .execution_options(synchronize_session=False))
    uow.commit()
    stored = uow.session.execute(select(column).where(key == row_id)).scalar_one()
    return str(stored)
