"""Applying one stored provider event, in the caller's transaction (DESIGN.md §6).

The caller holds the payment's Redis lock and commits. Here every row is
re-read under a row lock, always in the same order: the inbox row (so a callback
is never settled twice even when two messages for it arrive at once), then the
order, the payment, the refund. The rules of domain/settlement.py decide, and
each change is a compare-and-set with its audit or history row. The inbox row is
marked in the same transaction, so the effect and "this callback was handled"
commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, exists, func, insert, select, text, update
from sqlalchemy.orm import Session

from adapters.metrics import REFUNDS, count_on_commit
from domain.callback_events import CallbackEvent, CallbackEventType
from domain.models import Payment, ProviderCallback, Refund
from domain.settlement import (
    REFUNDABLE_PAYMENT_STATUSES,
    Action,
    Decision,
    PaymentFacts,
    RefundFacts,
    decide_payment_event,
    decide_refund_event,
    order_status_after_refunds,
    order_takes_payment,
    payment_status_after_refund,
)
from domain.statuses import (
    ACTIVE_PAYMENT_STATUSES,
    PAID_PAYMENT_STATUSES,
    RETRYABLE_PAYMENT_STATUSES,
    CallbackStatus,
    OrderStatus,
    PaymentStatus,
    RefundStatus,
)
from domain.webhooks import EventType
from services.audit import record_event
from services.review_flags import flag_payment, flag_refund
from services.transitions import (
    NOW,
    lock_order_status,
    transition_order,
    transition_payment,
)
from services.wallet.topups import (
    credit_topup,
    restore_after_failed_refund,
    review_if_given_back,
)
from services.webhooks.outbox import record_event as record_webhook_event

# Bounds on one settlement, so the task's worst case (and so the lock TTL) is bounded.
LOCK_TIMEOUT = "5s"
STATEMENT_TIMEOUT = "10s"

INBOX_STATUS = {
    Action.SUCCEED: CallbackStatus.PROCESSED,
    Action.LATE_SUCCEED: CallbackStatus.PROCESSED,
    Action.FAIL: CallbackStatus.PROCESSED,
    Action.REFUND_SUCCEED: CallbackStatus.PROCESSED,
    Action.FLAG_REFUND: CallbackStatus.PROCESSED,
    Action.IGNORE: CallbackStatus.PROCESSED,
    Action.REJECT: CallbackStatus.REJECTED,
    Action.UNMATCHED: CallbackStatus.UNMATCHED,
}


class SettlementConflict(Exception):
    """A compare-and-set lost although the row was locked: retry the whole settlement."""


@dataclass(frozen=True)
class Settlement:
    status: CallbackStatus
    note: str | None = None
    # A refund created here (late or duplicate money) for the refunds worker to execute.
    refund_id: int | None = None


@dataclass(frozen=True)
class _Context:
    provider: str
    event: CallbackEvent
    actor: str
    callback_id: int | None = None  # None for a provider's answer to a status query

    @property
    def detail(self) -> dict[str, object]:
        detail: dict[str, object] = {"event_id": self.event.event_id,
                                     "provider": self.provider}
        if self.callback_id is not None:
            detail["callback_id"] = self.callback_id
        return detail


# Both limits for this transaction only (set_config(..., true) is SET LOCAL), in one trip.
_BOUND_WAITS = text(f"SELECT set_config('lock_timeout', '{LOCK_TIMEOUT}', true), "
                    f"set_config('statement_timeout', '{STATEMENT_TIMEOUT}', true)")
_LOCK_INBOX = (select(ProviderCallback.status)
               .where(ProviderCallback.id == bindparam("id")).with_for_update())


def bound_waits(session: Session) -> None:
    """Both limits for the rest of this transaction (a batch sets them once, outside its
    savepoints: a rolled-back savepoint would take a SET LOCAL made inside it along)."""
    session.execute(_BOUND_WAITS)


_bound_waits = bound_waits


def settle_callback(session: Session, callback_id: int, event: CallbackEvent, *,
                    provider: str, waits_bound: bool = False) -> Settlement | None:
    """Apply the event; None when the inbox row is gone or already handled.
    `waits_bound`: the caller ran bound_waits in this transaction already."""
    if not waits_bound:
        _bound_waits(session)
    inbox_status = session.execute(_LOCK_INBOX, {"id": callback_id}).scalar_one_or_none()
    if inbox_status != CallbackStatus.RECEIVED:
        return None
    ctx = _Context(provider, event, actor=f"provider:{provider}"[:64],
                   callback_id=callback_id)
    if event.type.is_refund:
        settlement = _settle_refund_event(session, ctx)
    else:
        settlement = _settle_payment_event(session, ctx)
    _mark_inbox(session, callback_id, settlement.status, settlement.note)
    return settlement


def settle_provider_report(session: Session, event: CallbackEvent, *, provider: str,
                           actor: str) -> Settlement:
    """A payment's (or refund's) outcome learned from the provider's answer (the
    janitor's status query, a synchronous refund) instead of from a callback: the same
    rules, row locks, compare-and-set and audit, with no inbox row. Its callback arriving
    later (or earlier) is then a no-op; the caller holds the payment's Redis lock, as
    the callback worker does."""
    _bound_waits(session)
    ctx = _Context(provider, event, actor=actor[:64])
    if event.type.is_refund:  # a refund's outcome in the provider's answer (Alipay)
        return _settle_refund_event(session, ctx)
    return _settle_payment_event(session, ctx)


# --- payment.succeeded / payment.failed --------------------------------------------------

def _settle_payment_event(session: Session, ctx: _Context) -> Settlement:
    event = ctx.event
    payment, order_status = _lock_payment(session, event.payment_id)
    owner = None
    if event.type is CallbackEventType.PAYMENT_SUCCEEDED and payment is not None:
        owner = session.execute(_TRANSACTION_OWNER, {
            "provider": ctx.provider, "transaction_id": event.transaction_id}).scalars().first()
    decision = decide_payment_event(payment, event, provider=ctx.provider,
                                    transaction_owner=owner)
    if decision.action in (Action.SUCCEED, Action.LATE_SUCCEED):
        assert payment is not None
        return _apply_success(session, ctx, payment, order_status, decision)
    if decision.action is Action.FAIL:
        assert payment is not None
        _cas_payment(session, payment, PaymentStatus.FAILED, ctx, "payment_failed",
                     ACTIVE_PAYMENT_STATUSES)
        return Settlement(CallbackStatus.PROCESSED)
    return _record_non_application(session, ctx, decision, payment)


def _apply_success(session: Session, ctx: _Context, payment: PaymentFacts,
                   order_status: OrderStatus | None, decision: Decision) -> Settlement:
    """`order_status` as _lock_payment read it: the order is still locked."""
    late = decision.action is Action.LATE_SUCCEED
    _cas_payment(session, payment, PaymentStatus.SUCCEEDED, ctx,
                 "late_payment_received" if late else "payment_succeeded",
                 RETRYABLE_PAYMENT_STATUSES if late else ACTIVE_PAYMENT_STATUSES,
                 values={"transaction_id": ctx.event.transaction_id, "paid_at": NOW,
                         # the provider's time of it, when the report carries one: the
                         # day its statement lists it under (reconciliation's books)
                         "provider_paid_at": ctx.event.occurred_at},
                 transaction_id=ctx.event.transaction_id, amount=ctx.event.amount,
                 currency=ctx.event.currency)
    if order_status is not None and order_takes_payment(order_status):
        transition_order(session, payment.order_id, OrderStatus.PAID, actor=ctx.actor,
                         reason=f"payment {payment.id} succeeded", locked=order_status)
        # A wallet top-up order credits its wallet as it becomes paid (services/wallet/).
        credit_topup(session, order_id=payment.order_id, payment_id=payment.id,
                     amount=payment.amount, actor=ctx.actor)
        return Settlement(CallbackStatus.PROCESSED, decision.note)
    # The order can no longer take this money (expired, cancelled, or paid by another
    # attempt): it goes back in full. Nothing is dropped.
    reason = (f"payment {payment.id} succeeded after its order became "
              f"{order_status.value if order_status else 'unknown'}")
    refund_id = _create_full_refund(session, ctx, payment, reason)
    note = f"{decision.note or 'success'}; order {order_status}: full refund {refund_id}"
    return Settlement(CallbackStatus.PROCESSED, note, refund_id=refund_id)


def _create_full_refund(session: Session, ctx: _Context, payment: PaymentFacts,
                        reason: str) -> int:
    refund_id: int = session.execute(
        insert(Refund).values(payment_id=payment.id, amount=payment.amount,
                              currency=payment.currency, status=RefundStatus.PENDING.value,
                              reason=reason)
        .returning(Refund.id)).scalar_one()
    record_event(session, "refund_requested", payment_id=payment.id, actor=ctx.actor,
                 refund_id=refund_id, amount=payment.amount, currency=payment.currency,
                 reason=reason, automatic=True, **ctx.detail)
    count_on_commit(session, REFUNDS.labels("requested"))
    return refund_id


# --- refund.succeeded / refund.failed -----------------------------------------------------

def _settle_refund_event(session: Session, ctx: _Context) -> Settlement:
    event = ctx.event
    payment, _ = _lock_payment(session, event.payment_id)
    refund = _lock_refund(session, event.refund_id) if event.refund_id else None
    decision = decide_refund_event(refund, payment, event, provider=ctx.provider)
    if decision.action is Action.REFUND_SUCCEED:
        assert refund is not None and payment is not None
        refunded_after = payment.refunded_amount + refund.amount
        _cas_payment(session, payment, payment_status_after_refund(payment, refunded_after),
                     ctx, "refund_succeeded", REFUNDABLE_PAYMENT_STATUSES,
                     values={"refunded_amount": refunded_after}, refund_id=refund.id,
                     amount=refund.amount, refunded_amount=refunded_after)
        _finish_refund(session, refund, RefundStatus.SUCCEEDED, ctx.event.transaction_id,
                       provider_time=ctx.event.occurred_at)
        if refund.status is RefundStatus.FAILED:  # a top-up given back is now paid twice
            review_if_given_back(session, refund_id=refund.id, payment_id=payment.id,
                                 actor=ctx.actor)
        settle_order_after_refund(session, payment.order_id, actor=ctx.actor,
                                  reason=f"refund callback {ctx.event.event_id}")
        return Settlement(CallbackStatus.PROCESSED)
    if decision.action is Action.FAIL:
        assert refund is not None and payment is not None
        _finish_refund(session, refund, RefundStatus.FAILED, ctx.event.transaction_id)
        record_event(session, "refund_failed", payment_id=payment.id, actor=ctx.actor,
                     refund_id=refund.id, amount=refund.amount, **ctx.detail)
        # A top-up's refund took its money out of the wallet; it goes back in.
        restore_after_failed_refund(session, refund.id, actor=ctx.actor)
        settle_order_after_refund(session, payment.order_id, actor=ctx.actor,
                                  reason=f"refund callback {ctx.event.event_id}")
        return Settlement(CallbackStatus.PROCESSED)
    if decision.action is Action.FLAG_REFUND:
        assert refund is not None and payment is not None
        # Still in flight (the money has not reached the buyer, nor come back to us):
        # a person decides, with the payment listed for review.
        flag_refund(session, refund_id=refund.id, payment_id=payment.id,
                    audit_event=decision.audit_event or "refund_abnormal", actor=ctx.actor,
                    reason=decision.note, amount=refund.amount, **ctx.detail)
        return Settlement(CallbackStatus.PROCESSED, decision.note)
    if (decision.action is Action.REJECT and decision.audit_event == "amount_mismatch"
            and refund is not None and payment is not None):
        # The provider refunded another amount than ours: not settled with either. The
        # refund is flagged with its payment (so the check stops asking about it), and
        # the audit row carries both amounts.
        flag_refund(session, refund_id=refund.id, payment_id=payment.id,
                    audit_event="amount_mismatch", actor=ctx.actor, reason=decision.note,
                    event_type=event.type.value, received_amount=event.amount,
                    received_currency=event.currency, expected_amount=refund.amount,
                    expected_currency=refund.currency, refund_status=refund.status.value,
                    transaction_id=event.transaction_id, **ctx.detail)
        return Settlement(INBOX_STATUS[decision.action], decision.note)
    return _record_non_application(session, ctx, decision, payment)


def _finish_refund(session: Session, refund: RefundFacts, status: RefundStatus,
                   provider_refund_id: str | None, *,
                   provider_time: datetime | None = None) -> None:
    values: dict[str, object] = {"status": status.value, "updated_at": func.now()}
    if status is RefundStatus.SUCCEEDED:
        values["completed_at"] = func.now()
        values["provider_completed_at"] = provider_time
    if provider_refund_id:
        values["provider_refund_id"] = func.coalesce(Refund.provider_refund_id,
                                                     provider_refund_id)
    changed = session.execute(
        update(Refund).where(Refund.id == refund.id, Refund.status == refund.status.value)
        .values(**values).returning(Refund.id)
        .execution_options(synchronize_session=False)).scalar_one_or_none()
    if changed is None:
        raise SettlementConflict(f"refund {refund.id} changed while locked")
    count_on_commit(session, REFUNDS.labels(status.value))
    record_webhook_event(session, EventType.REFUND_SUCCEEDED if status is RefundStatus.SUCCEEDED
                         else EventType.REFUND_FAILED, refund.id)


def settle_order_after_refund(session: Session, order_id: int, *, actor: str,
                              reason: str | None = None) -> OrderStatus | None:
    """Once no refund of a `refunding` order is in flight: refunded when no money is left
    with us, back to paid otherwise. Returns the new status, None when nothing moved.
    Shared with the refunds service (a refund the provider refuses outright)."""
    order_status = lock_order_status(session, order_id)
    if order_status is None:
        return None
    in_flight = session.execute(select(exists().where(
        Refund.payment_id == Payment.id, Payment.order_id == order_id,
        Refund.status.in_([RefundStatus.PENDING.value, RefundStatus.PROCESSING.value])
    ))).scalar_one()
    net_paid = session.execute(
        select(func.coalesce(func.sum(Payment.amount - Payment.refunded_amount), 0))
        .where(Payment.order_id == order_id,
               Payment.status.in_([s.value for s in PAID_PAYMENT_STATUSES]))
    ).scalar_one()
    target = order_status_after_refunds(order_status, refunds_in_flight=bool(in_flight),
                                        net_paid=Decimal(net_paid))
    if target is None:
        return None
    if transition_order(session, order_id, target, actor=actor, reason=reason) is None:
        return None
    return target


# --- shared ---------------------------------------------------------------------------

def _record_non_application(session: Session, ctx: _Context, decision: Decision,
                            payment: PaymentFacts | None) -> Settlement:
    """Ignored, rejected or unmatched: nothing moves, but the trace stays."""
    if decision.action is Action.REJECT and payment is not None:
        flag_payment(session, payment.id)
    if decision.action is Action.REJECT:
        record_event(session, decision.audit_event or "callback_rejected",
                     payment_id=payment.id if payment else None, actor=ctx.actor,
                     reason=decision.note, event_type=ctx.event.type.value,
                     received_amount=ctx.event.amount, received_currency=ctx.event.currency,
                     expected_amount=payment.amount if payment else None,
                     expected_currency=payment.currency if payment else None,
                     transaction_id=ctx.event.transaction_id, **ctx.detail)
    elif decision.action is Action.UNMATCHED:
        record_event(session, "callback_unmatched",
                     payment_id=payment.id if payment else None, actor=ctx.actor,
                     reason=decision.note, event_type=ctx.event.type.value,
                     claimed_payment_id=ctx.event.payment_id, refund_id=ctx.event.refund_id,
                     **ctx.detail)
    return Settlement(INBOX_STATUS[decision.action], decision.note)


def _cas_payment(session: Session, payment: PaymentFacts, to: PaymentStatus, ctx: _Context,
                 event: str, allowed_from: frozenset[PaymentStatus], *,
                 values: dict[str, object] | None = None, **detail: object) -> None:
    previous = transition_payment(session, payment.id, to, actor=ctx.actor, event=event,
                                  values=values, allowed_from=allowed_from,
                                  locked=payment.status, **ctx.detail, **detail)
    if previous is None:
        # We hold the row lock, so this means the decision and the table disagree:
        # roll back and let the retry decide again from fresh facts.
        raise SettlementConflict(f"payment {payment.id} could not go "
                                 f"{payment.status.value} -> {to.value}")


def _lock_payment(session: Session, payment_id: int | None
                  ) -> tuple[PaymentFacts | None, OrderStatus | None]:
    """The payment, locked, after its order: every writer takes the order before its
    payments (the order sweep, the payments API), so none waits on another in a cycle.
    Also the order's status as locked, which holds until the transaction ends."""
    if payment_id is None:  # a merchant reference we never issued
        return None, None
    order_id = session.execute(_PAYMENTS_ORDER, {"id": payment_id}).scalar_one_or_none()
    if order_id is None:
        return None, None
    order_status = lock_order_status(session, order_id)
    row = session.execute(_LOCK_PAYMENT_FACTS, {"id": payment_id}).first()
    if row is None:
        return None, order_status
    return PaymentFacts(id=row.id, order_id=row.order_id, status=PaymentStatus(row.status),
                        amount=row.amount, currency=row.currency, provider=row.provider,
                        transaction_id=row.transaction_id,
                        refunded_amount=row.refunded_amount), order_status


_TRANSACTION_OWNER = select(Payment.id).where(
    Payment.provider == bindparam("provider"),
    Payment.transaction_id == bindparam("transaction_id"))
_PAYMENTS_ORDER = select(Payment.order_id).where(Payment.id == bindparam("id"))
_LOCK_PAYMENT_FACTS = (
    select(Payment.id, Payment.order_id, Payment.status, Payment.amount, Payment.currency,
           Payment.provider, Payment.transaction_id, Payment.refunded_amount)
    .where(Payment.id == bindparam("id")).with_for_update())


def _lock_refund(session: Session, refund_id: int) -> RefundFacts | None:
    row = session.execute(
        select(Refund.id, Refund.payment_id, Refund.status, Refund.amount, Refund.currency)
        .where(Refund.id == refund_id).with_for_update()).first()
    if row is None:
        return None
    return RefundFacts(id=row.id, payment_id=row.payment_id, status=RefundStatus(row.status),
                       amount=row.amount, currency=row.currency)


_MARK_INBOX = (update(ProviderCallback)
               .where(ProviderCallback.id == bindparam("callback_id"),
                      ProviderCallback.status == CallbackStatus.RECEIVED.value)
               .values(status=bindparam("new_status"), last_error=bindparam("note"),
                       processed_at=func.now(), updated_at=func.now())
               .execution_options(synchronize_session=False))


def _mark_inbox(session: Session, callback_id: int, status: CallbackStatus,
                note: str | None) -> None:
    session.execute(_MARK_INBOX, {"callback_id": callback_id, "new_status": status.value,
                                  "note": note})
