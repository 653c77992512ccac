"""Starting a payment at its provider: the work of the `payments.initiate` task.

The provider call runs outside any transaction or lock; only its answer is
written, in one short transaction. Everything here is safe to run twice for one
payment: the provider is asked with the payment's own idempotency key (the same
provider payment comes back), and its answer is stored under the payment's row lock
only while none is stored yet, so payment_started is written once. `pay` has usually
moved the payment to processing already (payment_start_requested); a start queued
while it was still init moves it itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from adapters.providers.base import (
    PaymentRequest,
    Provider,
    ProviderError,
    ProviderPayment,
    ProviderRejected,
)
from adapters.resources import Resources
from domain.models import Order, Payment
from domain.statuses import ACTIVE_PAYMENT_STATUSES, PaymentStatus
from services.audit import record_event
from services.merchant_references import fix_out_trade_no
from services.transitions import lock_payment_status, transition_payment, utc_now

log = logging.getLogger(__name__)

INITIATE_TASK = "payments.initiate"
WORKER_ACTOR = "worker"


def start_payment_processing(res: Resources, payment_id: int) -> str:
    """The `payments.initiate` task's work: the payment at its provider, then its answer
    stored on the payment (processing).

    The provider call runs outside any transaction or lock; the idempotency key is
    the payment's own, so a redelivered task gets the same provider payment back,
    never a second one. payment_started is written once (see the module docstring).
    ProviderUnavailable propagates (the task retries with backoff);
    ProviderRejected fails the payment. Returns what happened, for the log.
    """
    target = _initiation_target(res, payment_id)
    if target is None:
        return "nothing to do"
    provider = res.providers.for_method(target.method)
    try:
        created = provider.create_payment(PaymentRequest(
            payment_id=target.id, out_trade_no=target.out_trade_no, amount=target.amount,
            currency=target.currency, method=target.method,
            description=f"Order {target.order_number}",
            idempotency_key=f"payment-{target.id}"))
    except ProviderRejected as exc:
        return _fail_rejected_start(res, payment_id, provider.name, exc)
    return _record_provider_payment(res, payment_id, provider, created)


@dataclass(frozen=True)
class _Target:
    id: int
    amount: Decimal
    currency: str
    method: str
    out_trade_no: str
    order_number: str


def _initiation_target(res: Resources, payment_id: int) -> _Target | None:
    """What to ask the provider for, if the payment still needs it; else None (logged).

    The payment's out_trade_no is fixed here, before the provider hears of it: a retry
    sends the same one even if OUT_TRADE_NO_PREFIX changed meanwhile, and a callback
    naming it finds the payment whenever it arrives.
    """
    with res.uow() as uow:
        payment = uow.session.execute(
            select(Payment.id, Payment.status, Payment.provider, Payment.provider_reference,
                   Payment.amount, Payment.currency, Payment.method, Payment.expires_at,
                   Payment.out_trade_no, Order.order_number)
            .join(Order, Order.id == Payment.order_id)
            .where(Payment.id == payment_id)).first()
        if payment is None:
            log.warning("%s: payment %s does not exist; nothing to do", INITIATE_TASK,
                        payment_id)
            return None
        status = PaymentStatus(payment.status)
        if status == PaymentStatus.PROCESSING and payment.provider_reference:
            log.info("%s: payment %s already started at %s", INITIATE_TASK, payment_id,
                     payment.provider)
            return None
        if status not in ACTIVE_PAYMENT_STATUSES:
            log.info("%s: payment %s is already %s", INITIATE_TASK, payment_id, status.value)
            return None
        if payment.expires_at <= utc_now(uow.session):
            log.info("%s: payment %s expired before it started; the expiry sweep closes it",
                     INITIATE_TASK, payment_id)
            return None
        out_trade_no = payment.out_trade_no or fix_out_trade_no(uow, res, payment_id)
        return _Target(payment.id, payment.amount, payment.currency, payment.method,
                       out_trade_no, payment.order_number)


def _record_provider_payment(res: Resources, payment_id: int, provider: Provider,
                             created: ProviderPayment) -> str:
    """One transaction: the provider's answer stored on the payment (audited once)."""
    fields = {"provider": provider.name, "provider_reference": created.reference,
              "pay_url": created.pay_url, "qr_payload": created.qr_payload}
    with res.uow() as uow:
        session = uow.session
        status = lock_payment_status(session, payment_id)
        outcome, close = "started", False
        if status == PaymentStatus.INIT and _is_due(session, payment_id):
            outcome, close = "expired before it started", True
        elif status == PaymentStatus.INIT:  # a start queued before `pay` moved it itself
            transition_payment(session, payment_id, PaymentStatus.PROCESSING,
                               actor=WORKER_ACTOR, event="payment_started", values=fields,
                               allowed_from=frozenset({PaymentStatus.INIT}),
                               provider=provider.name, provider_reference=created.reference)
        elif status == PaymentStatus.PROCESSING:
            # Fill in the provider payment, never replace one: a copy of this task that
            # got there first has already stored the same answer.
            stored = session.execute(select(Payment.provider_reference).where(
                Payment.id == payment_id)).scalar_one()
            if stored is not None:
                outcome = "already started"
            elif _is_due(session, payment_id):
                outcome, close = "expired before it started", True
            else:
                session.execute(
                    update(Payment).where(Payment.id == payment_id)
                    .values(updated_at=func.now(), **fields)
                    .execution_options(synchronize_session=False))
                record_event(session, "payment_started", payment_id=payment_id,
                             actor=WORKER_ACTOR, provider=provider.name,
                             provider_reference=created.reference)
        else:
            outcome, close = f"no longer active ({status.value if status else 'gone'})", True
        uow.commit()
    if close:
        # Nobody will be shown this pay_url, so it must not take money either.
        close_quietly(provider, created.reference, payment_id)
    log.info("%s: payment %s at %s (%s): %s", INITIATE_TASK, payment_id, provider.name,
             created.reference, outcome)
    return outcome


def _fail_rejected_start(res: Resources, payment_id: int, provider_name: str,
                         exc: ProviderRejected) -> str:
    """The provider refused the payment for good: it fails, with the provider's reason."""
    log.warning("%s: %s refused payment %s: %s", INITIATE_TASK, provider_name, payment_id,
                exc.detail)
    with res.uow() as uow:
        moved = transition_payment(uow.session, payment_id, PaymentStatus.FAILED,
                                   actor=WORKER_ACTOR, event="payment_failed",
                                   allowed_from=ACTIVE_PAYMENT_STATUSES,
                                   reason=f"provider refused the payment: {exc.detail}"[:500],
                                   provider=provider_name, provider_code=exc.code,
                                   provider_status=exc.status)
        uow.commit()
    return "failed" if moved is not None else "refused, payment no longer active"


def _is_due(session: Session, payment_id: int) -> bool:
    expires_at = session.execute(
        select(Payment.expires_at).where(Payment.id == payment_id)).scalar_one()
    return bool(expires_at <= utc_now(session))


def close_quietly(provider: Provider, reference: str, payment_id: int) -> bool:
    """Best effort: True when the provider confirmed the payment can no longer be paid."""
    try:
        provider.close(reference)
        return True
    except ProviderError as exc:
        # already_paid here is money for a payment we no longer wait for: its success
        # callback (or the janitor) applies it as a late payment, and §6 refunds it.
        log.warning("could not close payment %s at %s: %s", payment_id, provider.name, exc)
        return False
