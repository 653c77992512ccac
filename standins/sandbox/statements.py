"""The sandbox's daily statement: `GET /sandbox/api/statements/<YYYY-MM-DD>` (merchant key).

    {"date": "2026-12-01",
     "payments": [{"merchant_payment_id", "reference", "transaction_id", "amount",
                   "currency"}],
     "refunds":  [{"merchant_refund_id", "merchant_payment_id", "reference", "amount",
                   "currency"}]}

Every ticket approved that day (refunded since or not) and every refund paid out that
day, read from the sandbox's own tables. It cuts its days in Beijing time, as WeChat Pay
and Alipay do.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from adapters.resources import Resources
from domain.errors import InvalidInput
from domain.money import format_amount
from standins import statements
from standins.sandbox.models import SandboxPayment, SandboxRefund

PROVIDER = "sandbox"


class SandboxUnavailable(Exception):
    """A test fault: the statement is answered 503."""


def statement(res: Resources, raw_day: str) -> dict[str, Any]:
    day = statements.parse_day(raw_day)
    if day is None:
        raise InvalidInput("The date must be YYYY-MM-DD", code="invalid_date", field="date")
    if statements.take_fault(res.redis, PROVIDER) is not None:
        raise SandboxUnavailable()
    start = datetime.combine(day, time(0), statements.BEIJING)
    end = start + timedelta(days=1)
    with res.uow() as uow:
        paid = uow.session.scalars(
            select(SandboxPayment).where(SandboxPayment.transaction_id.is_not(None),
                                         SandboxPayment.decided_at >= start,
                                         SandboxPayment.decided_at < end)
            .order_by(SandboxPayment.id)).all()
        refunds = uow.session.execute(
            select(SandboxRefund, SandboxPayment)
            .join(SandboxPayment, SandboxPayment.id == SandboxRefund.sandbox_payment_id)
            .where(SandboxRefund.status == "succeeded", SandboxRefund.created_at >= start,
                   SandboxRefund.created_at < end).order_by(SandboxRefund.id)).tuples().all()
        return {"date": day.isoformat(),
                "payments": [{"merchant_payment_id": p.merchant_payment_id,
                              "reference": p.ticket, "transaction_id": p.transaction_id,
                              "amount": format_amount(p.amount, p.currency),
                              "currency": p.currency,
                              "succeeded_at": _iso(p.decided_at)} for p in paid],
                "refunds": [{"merchant_refund_id": r.merchant_refund_id,
                             "merchant_payment_id": p.merchant_payment_id,
                             "reference": r.reference,
                             "amount": format_amount(r.amount, p.currency),
                             "currency": p.currency,
                             "succeeded_at": _iso(r.created_at)} for r, p in refunds]}


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None
