"""Payments flagged for review (issue #18): an admin resolves each one.

A payment is flagged (`needs_review`) when the provider reported something we would not
apply on our own: an amount or currency that differs from the payment (§6), a second
capture under another transaction id, a refund the provider accepted but could not pay
out (WeChat Pay's REFUND.ABNORMAL), a refund of another amount than ours, a refund with no
outcome after REFUND_REVIEW_AFTER_SECONDS (services/review_flags.py), a top-up's refund
that succeeded after its money was put back. A person decides:
- `accept`: the payment's recorded outcome stands; the flag (and its refunds' flags) is
  cleared. A refund still processing is then checked again (and flagged again while its
  provider still gives no outcome, or another amount).
- `refund`: a full refund of what remains is started through the refunds service, and
  the flag cleared, in one transaction: if the refund is refused (nothing left, not a
  refundable status), nothing changes and the flag stays.
Either way the decision is an audit row (`review_accepted` / `review_refunded`) with the
admin's note.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import func, update

from adapters.resources import Resources
from domain.errors import Conflict, InvalidInput
from domain.models import Payment, Refund
from services.api_keys import Principal
from services.audit import record_event
from services.queries import find_payment, payment_detail
from services.refunds import start_refund
from services.transitions import lock_order_status

NOTE_MAX = 500


class ReviewAction(StrEnum):
    ACCEPT = "accept"
    REFUND = "refund"


def parse_action(value: object) -> ReviewAction:
    try:
        return ReviewAction(value) if isinstance(value, str) else ReviewAction("")
    except ValueError:
        raise InvalidInput(
            f"action must be one of {', '.join(a.value for a in ReviewAction)}",
            code="invalid_review_action", field="action") from None


def resolve_review(res: Resources, principal: Principal, payment_id: int, *,
                   action: object, note: str | None) -> dict[str, Any]:
    """{"action", "payment": the payment after the decision, "refund": the refund started
    (action refund) or None}. Conflict `payment_not_flagged` when there is nothing to
    review; the refund service's errors as they are."""
    decided = parse_action(action)
    with res.uow() as uow:
        session = uow.session
        # The order's lock, then the payment's, as every writer takes them: a callback
        # settling this payment waits for the decision, and two admins deciding at once
        # are serialised (the second finds the flag cleared: 409).
        lock_order_status(session, find_payment(session, principal, payment_id).order_id)
        payment = find_payment(session, principal, payment_id, lock=True)
        if not payment.needs_review:
            raise Conflict("Payment is not flagged for review", code="payment_not_flagged",
                           payment_status=payment.status)
        refund = None
        if decided is ReviewAction.REFUND:
            refund = start_refund(res, uow, principal, payment.id, amount=None,
                                  reason=note or "refunded after review")
        cleared_refunds = list(session.execute(
            update(Refund).where(Refund.payment_id == payment.id, Refund.needs_review)
            .values(needs_review=False, updated_at=func.now()).returning(Refund.id)
            .execution_options(synchronize_session=False)).scalars())
        session.execute(
            update(Payment).where(Payment.id == payment.id)
            .values(needs_review=False, updated_at=func.now())
            .execution_options(synchronize_session=False))
        event = "review_accepted" if decided is ReviewAction.ACCEPT else "review_refunded"
        record_event(session, event, payment_id=payment.id, actor=principal.actor,
                     key_id=principal.key_id, action=decided.value, note=note,
                     payment_status=payment.status,
                     refund_id=refund["id"] if refund else None,
                     refunds_cleared=sorted(cleared_refunds))
        view = payment_detail(session, payment.id)
        uow.commit()
    return {"action": decided.value, "payment": view, "refund": refund}
