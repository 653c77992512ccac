"""Our side of one provider's day: the payments and refunds that succeeded in it (by our
clock, cut in RECONCILE_TZ as the providers cut theirs), and whatever the statement
names, whenever and however it ended here."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from domain.models import Payment, Refund
from domain.reconciliation import Books, OurPayment, OurRefund
from domain.statements import LineKind, Statement
from domain.statuses import PAID_PAYMENT_STATUSES, PaymentStatus, RefundStatus

PAID = [s.value for s in PAID_PAYMENT_STATUSES]


def day_window(day: date, zone: str) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), ZoneInfo(zone))
    return start, start + timedelta(days=1)


def read_books(session: Session, statement: Statement, zone: str) -> Books:
    start, end = day_window(statement.day, zone)
    provider = statement.provider
    payment_lines = statement.of_kind(LineKind.PAYMENT)
    refund_lines = statement.of_kind(LineKind.REFUND)
    trade_nos = {line.out_trade_no for line in statement.lines if line.out_trade_no}
    payment_ids = {line.payment_id for line in payment_lines if line.payment_id}
    refund_nos = {line.out_refund_no for line in refund_lines if line.out_refund_no}
    refund_ids = {line.refund_id for line in refund_lines if line.refund_id}

    paid_that_day = and_(Payment.paid_at >= start, Payment.paid_at < end,
                         Payment.status.in_(PAID))
    payments = session.execute(
        select(Payment.id, Payment.out_trade_no, Payment.status, Payment.amount,
               Payment.currency, Payment.transaction_id, Payment.paid_at)
        .where(Payment.provider == provider,
               or_(paid_that_day, Payment.out_trade_no.in_(trade_nos),
                   Payment.id.in_(payment_ids)))).all()
    completed_that_day = and_(Refund.completed_at >= start, Refund.completed_at < end,
                              Refund.status == RefundStatus.SUCCEEDED.value)
    refunds = session.execute(
        select(Refund.id, Refund.payment_id, Refund.out_refund_no, Refund.status,
               Refund.amount, Refund.currency, Refund.provider_refund_id,
               Refund.completed_at)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Payment.provider == provider,
               or_(completed_that_day, Refund.out_refund_no.in_(refund_nos),
                   Refund.id.in_(refund_ids)))).all()
    return Books(
        [OurPayment(id=p.id, out_trade_no=p.out_trade_no, status=PaymentStatus(p.status),
                    amount=p.amount, currency=p.currency, transaction_id=p.transaction_id,
                    paid_that_day=p.paid_at is not None and start <= p.paid_at < end)
         for p in payments],
        [OurRefund(id=r.id, payment_id=r.payment_id, out_refund_no=r.out_refund_no,
                   status=RefundStatus(r.status), amount=r.amount, currency=r.currency,
                   provider_refund_id=r.provider_refund_id,
                   completed_that_day=r.completed_at is not None
                   and start <= r.completed_at < end)
         for r in refunds])
