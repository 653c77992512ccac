"""Refunds (DESIGN.md §4, §5): requested here, executed with the provider by a worker,
finished by the provider's refund.succeeded / refund.failed callback (services/settlement.py).

A refund is pending when accepted, processing once the provider has accepted it,
then succeeded or failed. Only the callback moves money on our side: the payment
becomes partially_refunded / refunded with its refunded_amount. A refund that
returns everything the order still holds moves the order to refunding; it ends
refunded when the money is back, or paid again when the refund fails.

The automatic full refund of a late payment (created by the settlement of a late
success, §6) runs through the same `refunds.execute` task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.orm import Session

from adapters.db import UnitOfWork
from adapters.metrics import REFUNDS, count_on_commit
from adapters.providers.base import (
    Provider,
    ProviderRefund,
    ProviderRejected,
    ProviderUnavailable,
    RefundRequest,
)
from adapters.resources import Resources
from domain.errors import Conflict, InvalidInput
from domain.methods import ALIASES, CATALOG
from domain.models import Payment, Refund
from domain.money import ZERO, format_amount, in_units, parse_amount
from domain.settlement import REFUNDABLE_PAYMENT_STATUSES
from domain.statuses import PAID_PAYMENT_STATUSES, OrderStatus, PaymentStatus, RefundStatus
from domain.wallet import BALANCE_METHOD
from domain.webhooks import EventType
from services.api_keys import Principal
from services.audit import record_event
from services.merchant_references import fix_out_refund_no
from services.provider_sync import apply_refund_outcome
from services.queries import find_payment
from services.review_flags import flag_refund
from services.settlement import settle_order_after_refund
from services.transitions import lock_order_status, transition_order
from services.wallet.balance_payments import refund_to_wallet
from services.wallet.topups import restore_after_failed_refund, take_back_topup
from services.webhooks.outbox import record_event as record_webhook_event

log = logging.getLogger(__name__)

EXECUTE_TASK = "refunds.execute"
CHECK_TASK = "refunds.check"
WORKER_ACTOR = "worker"
IN_FLIGHT = (RefundStatus.PENDING.value, RefundStatus.PROCESSING.value)

RefundView = dict[str, Any]


def refund_view(refund: Refund) -> RefundView:
    return {"id": refund.id, "payment_id": refund.payment_id,
            "amount": in_units(refund.amount, refund.currency),
            "currency": refund.currency, "status": refund.status, "reason": refund.reason,
            "provider_refund_id": refund.provider_refund_id,
            "out_refund_no": refund.out_refund_no, "needs_review": refund.needs_review,
            "created_at": refund.created_at, "updated_at": refund.updated_at,
            "completed_at": refund.completed_at}


# --- requesting -------------------------------------------------------------------------

def request_refund(res: Resources, principal: Principal, payment_id: int, *,
                   amount: object, reason: str | None) -> RefundView:
    """A pending refund of `amount` (default: all that remains), queued for the worker.

    Checked under the order's and the payment's row locks (the order first, as every
    writer takes them), so two concurrent refunds of the whole amount cannot both pass:
    the second sees the first as in flight and finds nothing left.
    """
    with res.uow() as uow:
        view = start_refund(res, uow, principal, payment_id, amount=amount, reason=reason)
        uow.commit()
    return view


def start_refund(res: Resources, uow: UnitOfWork, principal: Principal, payment_id: int, *,
                 amount: object, reason: str | None) -> RefundView:
    """request_refund's work inside the caller's unit of work, which commits (the review
    of a flagged payment refunds and clears its flag in one transaction). The task is
    sent after that commit."""
    requested = None if amount is None else parse_amount(amount)
    session = uow.session
    order_id = find_payment(session, principal, payment_id).order_id
    lock_order_status(session, order_id)
    payment = find_payment(session, principal, payment_id, lock=True)
    _check_refundable(payment)
    if requested is not None:  # now that the currency is known: its decimals
        requested = parse_amount(amount, currency=payment.currency)
    remaining = (payment.amount - payment.refunded_amount
                 - _in_flight_total(session, Refund.payment_id == payment.id))
    if requested is None:
        requested = remaining
    if remaining <= ZERO or requested > remaining:
        raise InvalidInput(
            "Nothing is left to refund" if remaining <= ZERO else
            f"At most {format_amount(remaining, payment.currency)} {payment.currency} "
            "is left to refund", code="refund_exceeds_remaining",
            remaining=format_amount(max(remaining, ZERO), payment.currency),
            requested=format_amount(requested, payment.currency))
    refund = session.execute(
        insert(Refund).values(payment_id=payment.id, amount=requested,
                              currency=payment.currency,
                              status=RefundStatus.PENDING.value, reason=reason)
        .returning(Refund)).scalar_one()
    whole_order = _returns_everything(session, order_id)
    record_event(session, "refund_requested", payment_id=payment.id,
                 actor=principal.actor, refund_id=refund.id, amount=requested,
                 currency=payment.currency, reason=reason, full_refund=whole_order)
    if whole_order:
        # paid/shipped/completed -> refunding; any other status stays (the state
        # machine decides, so a late payment's expired order is left alone).
        transition_order(session, order_id, OrderStatus.REFUNDING, actor=principal.actor,
                         reason=f"refund {refund.id} of payment {payment.id} requested")
    count_on_commit(session, REFUNDS.labels("requested"))
    refund_id = refund.id
    # The wallet's part (services/wallet/): a balance payment's refund is credited
    # and finished here; a top-up's takes its money out of the wallet now (or 409).
    if payment.method == BALANCE_METHOD:
        refund_to_wallet(session, payment, refund_id, actor=principal.actor)
        session.refresh(refund)
    else:
        take_back_topup(session, user_id=payment.user_id, payment_id=payment.id,
                        refund_id=refund_id, amount=requested, actor=principal.actor)
        uow.after_commit(lambda: _enqueue(res, refund_id))
    return refund_view(refund)


def list_refunds(res: Resources, principal: Principal, payment_id: int) -> dict[str, Any]:
    with res.uow() as uow:
        payment = find_payment(uow.session, principal, payment_id)
        rows = uow.session.execute(
            select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.id)
        ).scalars().all()
        return {"items": [refund_view(r) for r in rows]}


def _enqueue(res: Resources, refund_id: int) -> None:
    # A broker outage leaves the refund pending; see README "Refunds" for the repair.
    res.queue.send(EXECUTE_TASK, refund_id)


def _check_refundable(payment: Payment) -> None:
    status = PaymentStatus(payment.status)
    if status not in REFUNDABLE_PAYMENT_STATUSES:
        raise Conflict(f"Payment is {status.value}; only succeeded or partially refunded "
                       "payments can be refunded", code="payment_not_refundable",
                       payment_status=status.value)
    method = CATALOG.get(ALIASES.get(payment.method, payment.method))
    if method is None or not method.refundable:
        raise Conflict(f"Payments by {payment.method} cannot be refunded",
                       code="method_not_refundable", method=payment.method)


def _in_flight_total(session: Session, *conditions: Any) -> Decimal:
    total = session.execute(
        select(func.coalesce(func.sum(Refund.amount), ZERO))
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Refund.status.in_(IN_FLIGHT), *conditions)).scalar_one()
    return Decimal(total)


def _returns_everything(session: Session, order_id: int) -> bool:
    """True when the refunds in flight (this one included) return all the money the
    order still holds: that is a full refund, and the order goes to refunding."""
    held = session.execute(
        select(func.coalesce(func.sum(Payment.amount - Payment.refunded_amount), ZERO))
        .where(Payment.order_id == order_id,
               Payment.status.in_([s.value for s in PAID_PAYMENT_STATUSES]))).scalar_one()
    return Decimal(held) - _in_flight_total(session, Payment.order_id == order_id) <= ZERO


# --- executing (the refunds.execute task) -----------------------------------------------

@dataclass(frozen=True)
class _Execution:
    refund_id: int
    amount: Decimal
    provider: str
    provider_reference: str
    payment_id: int
    payment_amount: Decimal
    currency: str
    out_trade_no: str
    out_refund_no: str
    reason: str | None
    order_id: int = 0
    needs_review: bool = False
    # Requested longer than REFUND_REVIEW_AFTER_SECONDS ago (the database's clock).
    overdue: bool = False


def execute_refund(res: Resources, refund_id: int) -> str:
    """Ask the provider for the refund, outside any transaction; returns what happened.

    Idempotent per refund: the provider knows the refund id, so a redelivered task gets
    the first answer back. ProviderUnavailable propagates (the task retries with
    backoff); ProviderRejected fails the refund. The outcome itself arrives later as
    a refund.succeeded / refund.failed callback.
    """
    target = _execution_target(res, refund_id)
    if target is None:
        return "nothing to do"
    provider = res.providers.by_name(target.provider)
    try:
        answer = provider.refund(_refund_request(target))
    except ProviderRejected as exc:
        return _fail_refused(res, refund_id, exc)
    reference = answer.reference
    with res.uow() as uow:
        # The provider's refund reference is stored whatever the status: its callback
        # may already have finished the refund while we waited for this answer.
        uow.session.execute(
            update(Refund).where(Refund.id == refund_id)
            .values(provider_refund_id=reference, updated_at=func.now(),
                    status=case((Refund.status == RefundStatus.PENDING.value,
                                 RefundStatus.PROCESSING.value), else_=Refund.status))
            .execution_options(synchronize_session=False))
        uow.commit()
    log.info("%s: refund %s accepted by %s as %s", EXECUTE_TASK, refund_id, provider.name,
             reference)
    if answer.outcome is not None:
        # The provider decided in its answer (Alipay): applied as its callback would be.
        if answer.amount is None and answer.refunded_total is not None:
            answer = _this_refunds_amount(res, provider, target, answer)
            if answer.outcome is None:
                return "accepted"
        return apply_refund_outcome(res, target.payment_id, refund_id, provider.name,
                                    answer, amount=target.amount, currency=target.currency)
    return "accepted"


def _this_refunds_amount(res: Resources, provider: Provider, target: _Execution,
                         answer: ProviderRefund) -> ProviderRefund:
    """An answer that gives only the payment's total refunded (Alipay's refund_fee), made
    into one about this refund. The total is what we had refunded plus this refund in the
    usual case, and then this refund's amount is ours. Any other total (another refund of
    the payment settled meanwhile, or a provider that refunded another amount) is not
    guessed at: the refund query says what this refund returned. Its answer may be "not
    yet" (outcome None): the refund stays processing for refunds.check."""
    with res.uow() as uow:
        refunded = uow.session.execute(select(Payment.refunded_amount).where(
            Payment.id == target.payment_id)).scalar_one()
    if answer.refunded_total == refunded + target.amount:
        return replace(answer, amount=target.amount)
    log.info("%s: %s reports %s refunded in all for payment %s, not %s + %s; asking its "
             "refund query about refund %s", EXECUTE_TASK, provider.name,
             answer.refunded_total, target.payment_id, refunded, target.amount,
             target.refund_id)
    try:
        return provider.query_refund(_refund_request(target))
    except (ProviderRejected, ProviderUnavailable) as exc:
        log.warning("%s: %s did not say what refund %s returned: %s; left processing for "
                    "%s", EXECUTE_TASK, exc.provider, target.refund_id, exc.detail,
                    CHECK_TASK)
        return ProviderRefund(answer.reference)


def check_refund(res: Resources, refund_id: int) -> str:
    """Ask the provider how a refund it accepted but never confirmed stands (its callback
    lost for good): the refunds.check task, sent by maintenance.check_refunds.

    The question is the provider's refund query (Provider.query_refund), never a repeat of
    the refund: WeChat Pay answers a repeat with PROCESSING for ever, only its query says
    SUCCESS. A final answer is applied as its callback would be (apply_refund_outcome: the
    payment's lock, the same rules and audit, the provider's amount compared with ours; a
    callback that settled it first makes this a no-op, and one arriving later is one).
    ABNORMAL flags the refund and its payment for review. A refund flagged for review is
    not asked about any more: a person decides.

    No outcome (still processing, or the query refused) leaves it for the next run, until
    the refund is older than REFUND_REVIEW_AFTER_SECONDS: then it is flagged for review
    (refund_overdue), never failed on our own, since the provider may still pay it out.
    ProviderUnavailable is logged and propagates, so the task retries with backoff and the
    refund stays processing meanwhile.
    """
    target = _execution_target(res, refund_id, accepted=True)
    if target is None:
        return "nothing to do"
    if target.needs_review:
        log.info("%s: refund %s is flagged for review; not asked", CHECK_TASK, refund_id)
        return "flagged for review"
    provider = res.providers.by_name(target.provider)
    try:
        answer = provider.query_refund(_refund_request(target))
    except ProviderRejected as exc:
        log.warning("%s: %s refused the query of refund %s: %s", CHECK_TASK, exc.provider,
                    refund_id, exc.detail)
        return _no_outcome(res, target, f"the query was refused: {exc.detail}"[:300])
    except ProviderUnavailable as exc:
        log.warning("%s: %s did not answer the query of refund %s: %s; left processing",
                    CHECK_TASK, exc.provider, refund_id, exc.detail)
        raise
    if answer.outcome is None:
        log.info("%s: refund %s still processing at %s", CHECK_TASK, refund_id,
                 provider.name)
        return _no_outcome(res, target, "still processing")
    return apply_refund_outcome(res, target.payment_id, refund_id, provider.name, answer,
                                amount=target.amount, currency=target.currency)


def _no_outcome(res: Resources, target: _Execution, answer: str) -> str:
    """No outcome from the provider: left for the next check, or, once the refund is
    overdue, flagged for review (once: a flagged refund is not asked again)."""
    if not target.overdue:
        return "still processing"
    age = res.settings.refund_review_after_seconds
    with res.uow() as uow:
        session = uow.session
        lock_order_status(session, target.order_id)  # order, payment, refund: as all do
        session.execute(select(Payment.id).where(Payment.id == target.payment_id)
                        .with_for_update())
        still = session.execute(
            select(Refund.id).where(Refund.id == target.refund_id,
                                    Refund.status == RefundStatus.PROCESSING.value,
                                    Refund.needs_review.is_(False))
            .with_for_update()).scalar_one_or_none()
        if still is None:  # settled or flagged meanwhile
            return "still processing"
        flag_refund(session, refund_id=target.refund_id, payment_id=target.payment_id,
                    audit_event="refund_overdue", actor=WORKER_ACTOR,
                    reason=f"no outcome from {target.provider} {age} s after the refund "
                           "was requested; needs review",
                    amount=target.amount, currency=target.currency,
                    provider=target.provider, provider_answer=answer,
                    review_after_seconds=age)
        uow.commit()
    log.warning("%s: refund %s has had no outcome from %s for over %s s; flagged for "
                "review and no longer asked", CHECK_TASK, target.refund_id, target.provider,
                age)
    return "flagged for review"


def _refund_request(target: _Execution) -> RefundRequest:
    return RefundRequest(
        refund_id=target.refund_id, out_refund_no=target.out_refund_no,
        payment_reference=target.provider_reference, out_trade_no=target.out_trade_no,
        amount=target.amount, payment_amount=target.payment_amount,
        currency=target.currency, reason=target.reason)


def _execution_target(res: Resources, refund_id: int, *,
                      accepted: bool = False) -> _Execution | None:
    """What to ask the provider: for a refund not yet accepted (refunds.execute) or, with
    `accepted`, for one the provider accepted and has not finished (refunds.check)."""
    with res.uow() as uow:
        row = uow.session.execute(
            select(Refund.status, Refund.amount, Refund.provider_refund_id, Refund.reason,
                   Refund.out_refund_no, Refund.needs_review, Payment.id, Payment.order_id,
                   Payment.provider, Payment.provider_reference,
                   Payment.amount.label("payment_amount"), Payment.currency,
                   Payment.out_trade_no,
                   (Refund.created_at < func.now() - func.make_interval(
                       0, 0, 0, 0, 0, 0, res.settings.refund_review_after_seconds)
                    ).label("overdue"))
            .join(Payment, Payment.id == Refund.payment_id)
            .where(Refund.id == refund_id)).first()
    if row is None:
        log.warning("%s: refund %s does not exist; nothing to do", EXECUTE_TASK, refund_id)
        return None
    if accepted:
        if row.status != RefundStatus.PROCESSING.value or row.provider_refund_id is None:
            log.info("%s: refund %s is %s; nothing to ask", CHECK_TASK, refund_id,
                     row.status)
            return None
    elif row.status not in IN_FLIGHT or row.provider_refund_id is not None:
        log.info("%s: refund %s is %s at the provider already", EXECUTE_TASK, refund_id,
                 row.status)
        return None
    if not row.provider_reference:
        # No provider payment to refund against: nothing can be asked of anyone. It
        # stays pending (and counts as in flight) until an operator looks at it.
        log.error("%s: refund %s cannot be executed: payment %s has no provider "
                  "reference; left pending for an operator", EXECUTE_TASK, refund_id, row.id)
        return None
    out_refund_no = row.out_refund_no
    if out_refund_no is None:
        with res.uow() as uow:
            out_refund_no = fix_out_refund_no(uow, res, refund_id)
    return _Execution(refund_id, row.amount, row.provider, row.provider_reference,
                      payment_id=row.id, payment_amount=row.payment_amount,
                      currency=row.currency,
                      # Sandbox payments started before references existed have none.
                      out_trade_no=row.out_trade_no or row.provider_reference,
                      out_refund_no=out_refund_no, reason=row.reason,
                      order_id=row.order_id, needs_review=bool(row.needs_review),
                      overdue=bool(row.overdue))


def _fail_refused(res: Resources, refund_id: int, exc: ProviderRejected) -> str:
    """The provider refused the refund for good: failed (refund_failed), and the order
    goes back to paid if it was waiting on this refund (§4)."""
    log.warning("%s: %s refused refund %s: %s", EXECUTE_TASK, exc.provider, refund_id,
                exc.detail)
    with res.uow() as uow:
        session = uow.session
        ids = session.execute(
            select(Payment.id, Payment.order_id).join(Refund, Refund.payment_id == Payment.id)
            .where(Refund.id == refund_id)).first()
        if ids is None:
            return "gone"
        lock_order_status(session, ids.order_id)  # order, payment, refund: the one order
        session.execute(select(Payment.id).where(Payment.id == ids.id).with_for_update())
        failed = session.execute(
            update(Refund).where(Refund.id == refund_id, Refund.status.in_(IN_FLIGHT))
            .values(status=RefundStatus.FAILED.value, updated_at=func.now())
            .returning(Refund.amount)
            .execution_options(synchronize_session=False)).scalar_one_or_none()
        if failed is None:
            return "already finished"
        count_on_commit(session, REFUNDS.labels(RefundStatus.FAILED.value))
        record_webhook_event(session, EventType.REFUND_FAILED, refund_id)
        record_event(session, "refund_failed", payment_id=ids.id, actor=WORKER_ACTOR,
                     refund_id=refund_id, amount=failed,
                     reason=f"provider refused the refund: {exc.detail}"[:500],
                     provider=exc.provider, provider_code=exc.code, provider_status=exc.status)
        restore_after_failed_refund(session, refund_id, actor=WORKER_ACTOR)  # a top-up's
        settle_order_after_refund(session, ids.order_id, actor=WORKER_ACTOR,
                                  reason=f"refund {refund_id} failed")
        uow.commit()
    return "failed"
