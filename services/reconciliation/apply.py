"""A success the statement shows and our books lack, applied as its lost callback would
have been (services/settlement.py): the payment's Redis lock, the row locks, the rules,
the compare-and-set and the audit, with actor `system:reconcile`. A callback racing the
run is therefore applied once, whichever comes first; the one that comes second is a
no-op. The statement's amount goes in as the provider's, so another amount is refused
(and flagged) exactly as a callback's would be.

The success is dated, as the provider's time of it, by the statement line's own time,
or (a statement that gives none) by the start of the statement's day: either way it
stays in that day's books, not in the day the run happens to apply it (books.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.locks import payment_lock
from adapters.resources import Resources
from domain.callback_events import CallbackEvent, CallbackEventType
from domain.models import Payment, Refund
from domain.reconciliation import Finding
from domain.statements import LineKind
from domain.statuses import PAID_PAYMENT_STATUSES, PaymentStatus, RefundStatus
from services.callbacks import LOCK_TTL_SECONDS, LOCK_WAIT_SECONDS, REFUND_TASK
from services.settlement import settle_provider_report

log = logging.getLogger(__name__)

ACTOR = "system:reconcile"


@dataclass(frozen=True)
class Applied:
    changed: bool  # the run moved it to succeeded
    already: bool  # it was succeeded when the lock was ours (a callback came first)
    note: str | None = None


def apply_finding(res: Resources, provider: str, finding: Finding, event_id: str, *,
                  day_start: datetime) -> Applied:
    """`day_start`: the statement day's first instant, in RECONCILE_TZ.
    Raises adapters.locks.LockBusy when a callback holds the payment past the wait: the
    run then fails and is tried again (the callback has likely applied it by then)."""
    line = finding.line
    assert line is not None and finding.payment_id is not None
    refund = finding.object is LineKind.REFUND
    event = CallbackEvent(
        event_id=event_id,
        type=CallbackEventType.REFUND_SUCCEEDED if refund else CallbackEventType.PAYMENT_SUCCEEDED,
        payment_id=finding.payment_id, amount=line.amount, currency=line.currency,
        transaction_id=(line.refund_reference or line.out_refund_no) if refund
        else line.transaction_id,
        refund_id=finding.refund_id if refund else None,
        occurred_at=line.succeeded_at or day_start)
    with payment_lock(res.redis, finding.payment_id, ttl_seconds=LOCK_TTL_SECONDS,
                      blocking_timeout=LOCK_WAIT_SECONDS):
        with res.uow() as uow:
            before = _succeeded(uow.session, finding)
            settlement = settle_provider_report(uow.session, event, provider=provider,
                                                actor=ACTOR)
            after = _succeeded(uow.session, finding)
            if settlement.refund_id is not None:  # a late success whose order moved on
                uow.after_commit(_refund_sender(res, settlement.refund_id))
            uow.commit()
    log.info("reconcile %s: %s %s -> %s%s", provider, finding.object.value, finding.reference,
             "succeeded" if after else "not applied",
             f" ({settlement.note})" if settlement.note else "")
    return Applied(changed=after and not before, already=before, note=settlement.note)


def _succeeded(session: Session, finding: Finding) -> bool:
    if finding.object is LineKind.REFUND:
        status = session.execute(select(Refund.status).where(
            Refund.id == finding.refund_id)).scalar_one_or_none()
        return status == RefundStatus.SUCCEEDED.value
    status = session.execute(select(Payment.status).where(
        Payment.id == finding.payment_id)).scalar_one_or_none()
    return status is not None and PaymentStatus(status) in PAID_PAYMENT_STATUSES


def _refund_sender(res: Resources, refund_id: int) -> Callable[[], None]:
    """After commit: the late payment's automatic refund goes to refunds.execute, as one
    a callback creates does (a failed send is logged by the queue; its sweep resends)."""
    def send() -> None:
        res.queue.send(REFUND_TASK, refund_id)
    return send
