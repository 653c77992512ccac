"""Paying from the wallet, and refunding such a payment (DESIGN.md §10).

A balance payment never goes to a provider: `POST /payments/{id}/pay` settles it in
the request, in one transaction. Rows are locked in the order every writer uses —
the order, then the payment, then the wallet — and the debit, payment succeeded,
order paid and their audit and history rows commit together or not at all. Not
enough money is 409 insufficient_balance and changes nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from adapters.db import UnitOfWork
from adapters.metrics import REFUNDS, WALLET_REFUSALS, count_on_commit
from domain.errors import Conflict
from domain.models import Payment, Refund
from domain.money import format_amount
from domain.settlement import REFUNDABLE_PAYMENT_STATUSES, PaymentFacts, payment_status_after_refund
from domain.statuses import ACTIVE_PAYMENT_STATUSES, OrderStatus, PaymentStatus, RefundStatus
from domain.wallet import EntryKind, InsufficientBalance
from domain.webhooks import EventType
from services.api_keys import Principal
from services.queries import find_payment, payment_detail
from services.settlement import settle_order_after_refund
from services.transitions import (
    NOW,
    lock_order_status,
    lock_payment_status,
    transition_order,
    transition_payment,
    utc_now,
)
from services.wallet.ledger import LedgerConflict, lock_wallet, post_entry
from services.webhooks.outbox import record_event as record_webhook_event

_INIT_ONLY = frozenset({PaymentStatus.INIT})


def pay_from_balance(uow: UnitOfWork, principal: Principal, payment_id: int) -> dict[str, Any]:
    """Settle a balance payment now; commits `uow`. The payment view (succeeded), or
    409 payment_not_payable / payment_expired / order_not_payable / insufficient_balance."""
    session = uow.session
    order_id = find_payment(session, principal, payment_id).order_id
    order_status = lock_order_status(session, order_id)
    status = lock_payment_status(session, payment_id)
    payment = find_payment(session, principal, payment_id)  # re-read under the lock
    if status is not PaymentStatus.INIT:
        raise Conflict(f"Payment is {payment.status}; only an init payment can be paid",
                       code="payment_not_payable", payment_status=payment.status)
    if payment.expires_at <= utc_now(session):
        transition_payment(session, payment_id, PaymentStatus.EXPIRED, actor=principal.actor,
                           event="payment_expired", allowed_from=ACTIVE_PAYMENT_STATUSES,
                           locked=status, reason="pay after expiry")
        uow.commit()  # the expiry is a fact worth keeping even though we refuse
        raise Conflict("Payment has expired; create a new payment or retry this one",
                       code="payment_expired", payment_status=PaymentStatus.EXPIRED.value)
    if order_status is not OrderStatus.PENDING:
        raise Conflict(f"Order status is {order_status}; it cannot be paid",
                       code="order_not_payable", order_status=order_status)
    balance = lock_wallet(session, payment.user_id)
    if balance < payment.amount:
        WALLET_REFUSALS.labels(InsufficientBalance.default_code).inc()
        raise InsufficientBalance(balance, payment.amount)
    entry = post_entry(session, payment.user_id, EntryKind.PAYMENT, -payment.amount,
                       actor=principal.actor, payment_id=payment_id, locked_balance=balance,
                       reason=f"payment {payment_id} of order {order_id}")
    transition_payment(session, payment_id, PaymentStatus.SUCCEEDED, actor=principal.actor,
                       event="payment_succeeded", values={"paid_at": NOW},
                       allowed_from=_INIT_ONLY, locked=status, method=payment.method,
                       wallet_entry_id=entry.id, balance_after=entry.balance_after)
    transition_order(session, order_id, OrderStatus.PAID, actor=principal.actor,
                     reason=f"payment {payment_id} paid from the wallet", locked=order_status)
    announce_balance_payment(session, payment_id=payment_id, order_id=order_id)
    view = payment_detail(session, payment_id)
    uow.commit()
    return view


def announce_balance_payment(session: Session, *, payment_id: int, order_id: int) -> None:
    """The place for the §9 events of a balance payment: `payment.succeeded` and
    `order.paid`, written in this same transaction. The merchant webhooks are being
    built elsewhere (services/webhooks); until they are, there is nothing to write."""


def refund_to_wallet(session: Session, payment: Payment, refund_id: int, *,
                     actor: str) -> None:
    """A balance payment's refund, finished at once: credited back to the wallet, the
    refund succeeded, the payment partially_refunded/refunded, the order settled as a
    provider's refund.succeeded would leave it. The caller holds the order's and the
    payment's row locks and has inserted the refund (pending)."""
    refund = session.execute(select(Refund.amount)
                             .where(Refund.id == refund_id).with_for_update()).one()
    entry = post_entry(session, payment.user_id, EntryKind.REFUND, refund.amount,
                       actor=actor, payment_id=payment.id, refund_id=refund_id,
                       reason=f"refund {refund_id} of payment {payment.id}")
    facts = PaymentFacts(id=payment.id, order_id=payment.order_id,
                         status=PaymentStatus(payment.status), amount=payment.amount,
                         currency=payment.currency, provider=payment.provider,
                         transaction_id=payment.transaction_id,
                         refunded_amount=payment.refunded_amount)
    refunded_after: Decimal = payment.refunded_amount + refund.amount
    moved = transition_payment(
        session, payment.id, payment_status_after_refund(facts, refunded_after), actor=actor,
        event="refund_succeeded", values={"refunded_amount": refunded_after},
        allowed_from=REFUNDABLE_PAYMENT_STATUSES, locked=facts.status, refund_id=refund_id,
        amount=format_amount(refund.amount), refunded_amount=refunded_after,
        wallet_entry_id=entry.id, balance_after=entry.balance_after)
    finished = session.execute(
        update(Refund).where(Refund.id == refund_id,
                             Refund.status == RefundStatus.PENDING.value)
        .values(status=RefundStatus.SUCCEEDED.value, completed_at=func.now(),
                provider_refund_id=f"wallet-entry-{entry.id}", updated_at=func.now())
        .returning(Refund.id).execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if moved is None or finished is None:  # unreachable under the caller's locks
        raise LedgerConflict(f"refund {refund_id} of payment {payment.id} moved while locked")
    count_on_commit(session, REFUNDS.labels(RefundStatus.SUCCEEDED.value))
    record_webhook_event(session, EventType.REFUND_SUCCEEDED, refund_id)  # §9
    settle_order_after_refund(session, payment.order_id, actor=actor,
                              reason=f"refund {refund_id} credited to the wallet")
