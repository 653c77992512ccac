"""Our side of one provider's day: the payments and refunds that succeeded in it, and
whatever the statement names, whenever and however it ended here.

"Succeeded in it" is by the provider's clock where we know it (provider_paid_at,
provider_completed_at: the time its callback, status answer or statement line gave),
by ours (paid_at, completed_at) only where we do not; the day is cut in RECONCILE_TZ as
the providers cut theirs. The provider cuts its statement by its own success time, so
cutting ours by the time we applied it would put a success on the wrong day whenever
the two straddle midnight: a callback sent at 23:59:58 and applied at 00:00:02, a lost
callback the janitor finds hours later, and every success the reconciliation itself
applies the next morning. Each would be on day X's statement and "succeeded here" on
day X+1, which that day's run would then flag as missing_at_provider.

Why this rather than a narrower rule ("absent from day X+1's statement but on an
earlier day's is not missing"): that would mean fetching and keeping earlier
statements on every run, and it still could not tell a payment the provider really
lacks from one it listed a day early. The provider's time costs one column, is known
on nearly every path (every callback, the statement lines, the status answers that
carry it), and makes each day's books the provider's own cut. Where no time of theirs
is known (rows from before it was stored, an answer without one) our time stands, as
before, and a success applied within seconds of midnight can still land a day late.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
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

    paid_when = func.coalesce(Payment.provider_paid_at, Payment.paid_at)
    paid_that_day = and_(paid_when >= start, paid_when < end, Payment.status.in_(PAID))
    payments = session.execute(
        select(Payment.id, Payment.out_trade_no, Payment.status, Payment.amount,
               Payment.currency, Payment.transaction_id, paid_when.label("paid_when"))
        .where(Payment.provider == provider,
               or_(paid_that_day, Payment.out_trade_no.in_(trade_nos),
                   Payment.id.in_(payment_ids)))).all()
    completed_when = func.coalesce(Refund.provider_completed_at, Refund.completed_at)
    completed_that_day = and_(completed_when >= start, completed_when < end,
                              Refund.status == RefundStatus.SUCCEEDED.value)
    refunds = session.execute(
        select(Refund.id, Refund.payment_id, Refund.out_refund_no, Refund.status,
               Refund.amount, Refund.currency, Refund.provider_refund_id,
               completed_when.label("completed_when"))
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Payment.provider == provider,
               or_(completed_that_day, Refund.out_refund_no.in_(refund_nos),
                   Refund.id.in_(refund_ids)))).all()
    return Books(
        [OurPayment(id=p.id, out_trade_no=p.out_trade_no, status=PaymentStatus(p.status),
                    amount=p.amount, currency=p.currency, transaction_id=p.transaction_id,
                    paid_that_day=p.paid_when is not None and start <= p.paid_when < end)
         for p in payments],
        [OurRefund(id=r.id, payment_id=r.payment_id, out_refund_no=r.out_refund_no,
                   status=RefundStatus(r.status), amount=r.amount, currency=r.currency,
                   provider_refund_id=r.provider_refund_id,
                   completed_that_day=r.completed_when is not None
                   and start <= r.completed_when < end)
         for r in refunds])
