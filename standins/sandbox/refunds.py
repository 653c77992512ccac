"""Refunds at the sandbox: accepted at once (202), confirmed later by a callback.

Idempotent on (ticket, the merchant's refund id): a redelivered refunds.execute
gets its first answer back instead of refunding twice. The sandbox settles a
refund as soon as it accepts it; the merchant learns the outcome only from the
refund.succeeded (or, with the fail_refunds knob, refund.failed) callback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from adapters.resources import Resources
from domain.errors import Conflict, InvalidInput
from domain.money import format_amount
from services.transitions import utc_now
from standins.sandbox import delivery, events
from standins.sandbox.models import SandboxPayment, SandboxRefund
from standins.sandbox.options import TestOptions
from standins.sandbox.tickets import amount_string, find_ticket, positive_id


@dataclass(frozen=True)
class RefundResult:
    view: dict[str, Any]
    created: bool


def _view(refund: SandboxRefund, ticket: SandboxPayment, *,
          repeat: bool = False) -> dict[str, Any]:
    # A new refund is "accepted" (its outcome comes as a callback); a repeated request
    # (the same refund_id) gets the refund as it stands, as a real provider answers one.
    return {"reference": refund.reference, "status": refund.status if repeat else "accepted",
            "payment_reference": ticket.ticket, "refund_id": refund.merchant_refund_id,
            "amount": refund.amount, "currency": ticket.currency}


def request_refund(res: Resources, body: dict[str, Any]) -> RefundResult:
    reference = body.get("reference")
    if not isinstance(reference, str) or not reference:
        raise InvalidInput("reference must be the payment's reference", code="invalid_field",
                           field="reference")
    refund_id = positive_id(body.get("refund_id"), "refund_id")
    amount = amount_string(body.get("amount"))
    with res.uow() as uow:
        session = uow.session
        ticket = find_ticket(session, reference)  # locked: refunds of a ticket in turn
        existing = session.scalars(select(SandboxRefund).where(
            SandboxRefund.sandbox_payment_id == ticket.id,
            SandboxRefund.merchant_refund_id == refund_id)).one_or_none()
        if existing is not None:
            if existing.amount != amount:
                raise Conflict("refund_id already names a refund of another amount",
                               code="refund_id_reused", amount=format_amount(existing.amount))
            return RefundResult(_view(existing, ticket, repeat=True), created=False)
        if ticket.status != "succeeded":
            raise Conflict(f"Only a paid payment can be refunded; this one is {ticket.status}",
                           code="not_paid", current_status=ticket.status)
        remaining = ticket.amount - ticket.refunded_amount
        if amount > remaining:
            raise InvalidInput("The refund is larger than what remains of the payment",
                               code="refund_exceeds_remaining",
                               remaining=format_amount(remaining))
        options = TestOptions.from_json(ticket.test_options)
        now = utc_now(session)
        refund = SandboxRefund(reference=events.new_id("rfd"), sandbox_payment_id=ticket.id,
                               merchant_refund_id=refund_id, amount=amount,
                               status="failed" if options.fail_refunds else "succeeded")
        session.add(refund)
        if not options.fail_refunds:
            ticket.refunded_amount = ticket.refunded_amount + amount
        ticket.updated_at = now
        event_type = events.REFUND_FAILED if options.fail_refunds else events.REFUND_SUCCEEDED
        event_id = events.new_id("evt")
        event = events.event_body(event_id, event_type,
                                  merchant_payment_id=ticket.merchant_payment_id,
                                  amount=amount, currency=ticket.currency,
                                  transaction_id=ticket.transaction_id, occurred_at=now,
                                  refund_id=refund_id)
        due = delivery.queue_callback(session, ticket, options, settings=res.settings,
                                      event_id=event_id, event_type=event_type, body=event)
        delivery.enqueue_after_commit(res, uow, due)
        view = _view(refund, ticket)
        uow.commit()
    return RefundResult(view, created=True)
