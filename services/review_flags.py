"""Flagging for review (services/review.py): what a provider reported, or did not report
for too long, that we do not settle on our own. A person decides.

A flagged payment is listed for review and the merchant gets `payment.needs_review`.
A flagged refund stays as it is (`processing`, as a rule): the money has neither reached
the buyer for certain nor come back to us. Its payment is flagged with it. The refund
check (services/refunds.check_refund) no longer asks the provider about a flagged
refund; a callback for it still settles it.
"""

from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from adapters.metrics import REFUNDS_FLAGGED, count_on_commit
from domain.models import Payment, Refund
from domain.webhooks import EventType
from services.audit import record_event
from services.webhooks.outbox import record_event as record_webhook_event


def flag_payment(session: Session, payment_id: int) -> None:
    """The payment's flag and the merchant's `payment.needs_review` event (§9), in the
    caller's transaction; the caller writes the audit row that says why."""
    session.execute(update(Payment).where(Payment.id == payment_id)
                    .values(needs_review=True, updated_at=func.now())
                    .execution_options(synchronize_session=False))
    record_webhook_event(session, EventType.PAYMENT_NEEDS_REVIEW, payment_id)


def flag_refund(session: Session, *, refund_id: int, payment_id: int, audit_event: str,
                actor: str, reason: str | None, **detail: object) -> None:
    """Both flags, the merchant's webhook event, the audit row `audit_event` (with
    `detail`) and the metric, in the caller's transaction. The caller holds the order's,
    the payment's and the refund's row locks, and has checked that this is news."""
    session.execute(update(Refund).where(Refund.id == refund_id)
                    .values(needs_review=True, updated_at=func.now())
                    .execution_options(synchronize_session=False))
    flag_payment(session, payment_id)
    record_event(session, audit_event, payment_id=payment_id, actor=actor,
                 refund_id=refund_id, reason=reason, **detail)
    count_on_commit(session, REFUNDS_FLAGGED.labels(audit_event))
