"""Payment use cases: create (seed 000's checks), pay, cancel, retry.

The worker's start at the provider is services/payment_start.py.

Everything that creates a payment attempt locks its order row first, so creators
for one order run one at a time; the partial unique index "one active payment
per order" is the database's own guarantee behind that, and losing to it is
answered with the payment that won.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adapters.db import UnitOfWork
from adapters.metrics import PAYMENTS_CREATED, count_on_commit
from adapters.providers.base import Provider, ProviderRejected, ProviderUnavailable
from adapters.resources import Resources
from config import Settings
from domain.errors import AmountMismatch, Conflict, TooSoon
from domain.methods import PaymentMethod, resolve_method
from domain.models import Order, Payment
from domain.money import format_amount, parse_amount
from domain.statuses import (
    ACTIVE_PAYMENT_STATUSES,
    RETRYABLE_PAYMENT_STATUSES,
    OrderStatus,
    PaymentStatus,
)
from domain.wallet import BALANCE_METHOD, WALLET_PROVIDER, check_balance_method_allowed
from services.api_keys import Principal
from services.payment_attempts import AttemptResult, LockedOrder, insert_attempt, lock_order
from services.payment_start import INITIATE_TASK, close_quietly
from services.queries import find_payment, payment_detail
from services.transitions import transition_payment, utc_now
from services.wallet.balance_payments import pay_from_balance

log = logging.getLogger(__name__)

ALREADY_PAID = "already_paid"  # the provider's code when a paid payment is asked to close
MAX_RETRIES_PER_ORDER = 3  # seed 004: the first attempt plus at most three retries
RETRY_GAP_SECONDS = 30

PaymentView = dict[str, Any]


class KeyedAnswer(Protocol):
    """An Idempotency-Key claimed, and its answer stored, inside create_payment's own
    transaction (web/idempotency.InTransaction): claim, creation and answer commit
    together or not at all."""

    def claim(self, session: Session) -> None:
        """Claim the key first; raises when it is another request's (replay, 409, 422)."""

    def store(self, session: Session, view: PaymentView, created: bool) -> None:
        """Store the answer made of (view, created), just before the commit."""


def create_payment(res: Resources, principal: Principal, *, order_id: int, method: object,
                   amount: object, keyed: KeyedAnswer | None = None,
                   uow: UnitOfWork | None = None) -> tuple[PaymentView, bool]:
    """The new payment and True, or the order's live active payment and False.

    Checks run in seed 000's order: the order (404), the method (400), the
    amount's form (400) and value (400 amount_mismatch), the order's status and
    age (409). Nothing is written when one fails (the key's claim included). The common
    case, an order with no active payment, is two statements and a commit
    (services/payment_attempts.py); with a key, its claim and answer join them. `uow`:
    the one to run in (the web's, on the connection the API key was looked up on).
    """
    uow = uow or res.uow()
    with uow:
        session = uow.session
        if keyed is not None:
            keyed.claim(session)
        view, created = _create_in(session, res, principal, order_id=order_id,
                                   method=method, amount=amount)
        if keyed is not None:
            keyed.store(session, view, created)
        if created:
            count_on_commit(session, PAYMENTS_CREATED)
        uow.commit()
    return view, created


def _create_in(session: Session, res: Resources, principal: Principal, *, order_id: int,
               method: object, amount: object) -> tuple[PaymentView, bool]:
    """create_payment's work inside its transaction; the caller commits."""
    order = lock_order(session, principal, order_id)
    chosen = resolve_method(method, res.providers.available_methods)
    check_balance_method_allowed(chosen.code, purpose=order.purpose,
                                 currency=order.currency)
    requested = (order.total_amount if amount is None
                 else parse_amount(amount, currency=order.currency))
    if requested != order.total_amount:
        raise AmountMismatch(format_amount(order.total_amount, order.currency),
                             format_amount(requested, order.currency))
    _check_payable(order, order.now, res.settings)
    # Twice at most: an active payment already past its expiry is expired here (with
    # its audit row), so the client need not wait for the sweep, and the attempt is
    # inserted after it.
    for _ in range(2):
        attempt = _next_attempt(session, res, order, chosen, actor=principal.actor)
        if attempt.created is not None:
            return attempt.created, True
        if attempt.active_id is None:  # the index refused it: a creator past the lock
            return _view_instead_of_attempt(session, order.id, None), False
        assert attempt.active_expires_at is not None
        if attempt.active_expires_at > order.now:  # seed 000: the existing one, 200
            return payment_detail(session, attempt.active_id), False
        _expire_before_new_attempt(session, attempt.active_id, actor=principal.actor)
    raise RuntimeError(f"order {order.id}: its active payment was expired but is "
                       "still active")


def retry_payment(res: Resources, principal: Principal,
                  payment_id: int) -> tuple[PaymentView, bool]:
    """A new attempt after a failed/expired/cancelled one (seed 004's limits).

    Concurrent retries queue on the order lock; the first creates the attempt and
    the others find it active and get it back (False), never a second one.
    """
    with res.uow() as uow:
        session = uow.session
        order_id = find_payment(session, principal, payment_id).order_id
        order = lock_order(session, principal, order_id)
        previous = find_payment(session, principal, payment_id)  # re-read under the lock
        if PaymentStatus(previous.status) not in RETRYABLE_PAYMENT_STATUSES:
            raise Conflict(f"Payment is {previous.status}; only failed, expired or cancelled "
                           "payments can be retried", code="payment_not_retryable",
                           payment_status=previous.status)
        _check_payable(order, order.now, res.settings)
        active_id = _live_active_payment(session, order.id, order.now, actor=principal.actor)
        if active_id is not None:  # a concurrent retry (or create) won: that attempt, 200
            return payment_detail(session, active_id), False
        _check_retry_allowed(session, order.id, order.now)
        method = resolve_method(previous.method, res.providers.available_methods)
        attempt = _next_attempt(session, res, order, method, actor=principal.actor,
                                retry_of=previous.id)
        if attempt.created is None:  # the index refused it: a creator past the lock
            view = _view_instead_of_attempt(session, order.id, attempt.active_id)
        else:
            view = attempt.created
            count_on_commit(session, PAYMENTS_CREATED)
        uow.commit()
    return view, attempt.created is not None


def request_payment_start(res: Resources, principal: Principal, payment_id: int) -> PaymentView:
    """Accept `pay`: init -> processing (payment_start_requested) and the provider call
    queued. The worker stores the provider's payment (payment_started); a processing
    payment with no provider payment yet is what the start sweep sends again when its
    message was lost (services/resend.py). A balance payment is settled here instead,
    from the wallet (services/wallet/), and never becomes processing."""
    with res.uow() as uow:
        session = uow.session
        if find_payment(session, principal, payment_id).method == BALANCE_METHOD:
            return pay_from_balance(uow, principal, payment_id)
        payment = find_payment(session, principal, payment_id, lock=True)
        status = PaymentStatus(payment.status)
        if status == PaymentStatus.PROCESSING:  # already started: the same answer again
            return payment_detail(session, payment.id)
        if status != PaymentStatus.INIT:
            raise Conflict(f"Payment is {status.value}; only an init payment can be paid",
                           code="payment_not_payable", payment_status=status.value)
        now = utc_now(session)
        if payment.expires_at <= now:
            _expire(session, payment.id, actor=principal.actor, reason="pay after expiry")
            uow.commit()  # the expiry is a fact worth keeping even though we refuse
            raise Conflict("Payment has expired; create a new payment or retry this one",
                           code="payment_expired", payment_status=PaymentStatus.EXPIRED.value)
        order_status = session.execute(
            select(Order.status).where(Order.id == payment.order_id)).scalar_one()
        if order_status != OrderStatus.PENDING:
            raise Conflict(f"Order status is {order_status}; it cannot be paid",
                           code="order_not_payable", order_status=order_status)

        transition_payment(session, payment.id, PaymentStatus.PROCESSING,
                           actor=principal.actor, event="payment_start_requested",
                           allowed_from=frozenset({PaymentStatus.INIT}), locked=status)

        def enqueue() -> None:
            # A message lost to a broker outage is sent again by the start sweep.
            res.queue.send(INITIATE_TASK, payment_id)

        uow.after_commit(enqueue)
        view = payment_detail(session, payment.id)
        uow.commit()
    return view


def provider_name_for(res: Resources, method_code: str) -> str:
    """The provider a new payment of this method is recorded with: the routed one, or the
    wallet for the balance, which no provider ever sees."""
    if method_code == BALANCE_METHOD:
        return WALLET_PROVIDER
    return res.providers.for_method(method_code).name


def cancel_payment(res: Resources, principal: Principal, payment_id: int, *,
                   reason: str | None) -> PaymentView:
    """init/processing -> cancelled; cancelling a cancelled payment changes nothing.

    A processing payment is first closed at its provider, outside any transaction.
    If the provider says it is already paid, nothing is cancelled (409
    payment_already_paid): the money is real and its success callback, or the
    janitor, applies it.
    """
    with res.uow() as uow:
        payment = find_payment(uow.session, principal, payment_id)
        status = PaymentStatus(payment.status)
        if status == PaymentStatus.CANCELLED:
            return payment_detail(uow.session, payment.id)
        _check_cancellable(status)
        provider_name, reference = payment.provider, payment.provider_reference
    closed_reference = None
    if status == PaymentStatus.PROCESSING and reference:
        if _close_for_cancel(res.providers.by_name(provider_name), reference, payment_id):
            closed_reference = reference
    with res.uow() as uow:
        session = uow.session
        payment = find_payment(session, principal, payment_id, lock=True)
        status = PaymentStatus(payment.status)
        if status == PaymentStatus.CANCELLED:
            return payment_detail(session, payment.id)
        _check_cancellable(status)
        # A start that finished between our two looks has a provider payment we have
        # not closed: close it once the cancellation is committed.
        current_provider, current_reference = payment.provider, payment.provider_reference
        transition_payment(session, payment.id, PaymentStatus.CANCELLED, actor=principal.actor,
                           event="payment_cancelled", allowed_from=ACTIVE_PAYMENT_STATUSES,
                           reason=reason, closed_at_provider=closed_reference is not None)
        view = payment_detail(session, payment.id)
        uow.commit()
    if current_reference and current_reference not in (closed_reference, reference):
        close_quietly(res.providers.by_name(current_provider), current_reference, payment_id)
    return view


def _check_cancellable(status: PaymentStatus) -> None:
    if status not in ACTIVE_PAYMENT_STATUSES:
        raise Conflict(f"Payment is {status.value}; it cannot be cancelled",
                       code="payment_not_cancellable", payment_status=status.value)


def _close_for_cancel(provider: Provider, reference: str, payment_id: int) -> bool:
    """Close at the provider (True when it confirmed); already paid is a 409. Any other
    failure does not stop the cancellation: a success that still arrives is a late
    payment (§6), applied and refunded, never dropped."""
    try:
        provider.close(reference)
        return True
    except ProviderRejected as exc:
        if exc.code == ALREADY_PAID:
            raise Conflict("The payment was already paid at the provider; it cannot be "
                           "cancelled and will show as succeeded shortly",
                           code="payment_already_paid",
                           payment_status=PaymentStatus.PROCESSING.value) from exc
        log.warning("cancel: %s refused to close payment %s: %s", provider.name, payment_id,
                    exc)
    except ProviderUnavailable as exc:
        log.warning("cancel: could not reach %s to close payment %s: %s", provider.name,
                    payment_id, exc)
    return False


def _check_payable(order: Order | LockedOrder, now: datetime, settings: Settings) -> None:
    if order.status != OrderStatus.PENDING:
        raise Conflict(f"Order status is {order.status}; only pending orders can be paid",
                       code="order_not_payable", order_status=order.status)
    expired_at = order.created_at + timedelta(seconds=settings.order_ttl_seconds)
    if now >= expired_at:
        raise Conflict("Order has expired; create a new order", code="order_expired",
                       expired_at=expired_at)


def _check_retry_allowed(session: Session, order_id: int, now: datetime) -> None:
    last_attempt, last_created = session.execute(
        select(func.max(Payment.attempt), func.max(Payment.created_at))
        .where(Payment.order_id == order_id)).one()
    if last_attempt is not None and last_attempt > MAX_RETRIES_PER_ORDER:
        raise Conflict(f"This order has used all {MAX_RETRIES_PER_ORDER} retries",
                       code="retry_limit", max_retries=MAX_RETRIES_PER_ORDER)
    if last_created is not None:
        wait = RETRY_GAP_SECONDS - (now - last_created).total_seconds()
        if wait > 0:
            seconds = math.ceil(wait)
            raise TooSoon(f"Retry allowed {seconds} s from now ({RETRY_GAP_SECONDS} s "
                          "between attempts)", retry_after=seconds, code="retry_too_soon")


def _live_active_payment(session: Session, order_id: int, now: datetime, *,
                         actor: str) -> int | None:
    """The order's active payment if still within its TTL.

    One already past expires_at is expired here, with its audit row, so the
    caller can create a new attempt without waiting for the sweep.
    """
    # No FOR UPDATE here: locks go order -> payment only when a change needs it
    # (transition_payment locks), which keeps callers that lock payment first from
    # meeting us in a deadlock over a payment we merely return.
    row = session.execute(
        select(Payment.id, Payment.expires_at)
        .where(Payment.order_id == order_id,
               Payment.status.in_([s.value for s in ACTIVE_PAYMENT_STATUSES]))).first()
    if row is None:
        return None
    if row.expires_at > now:
        return int(row.id)
    _expire_before_new_attempt(session, row.id, actor=actor)
    return None


def _expire_before_new_attempt(session: Session, payment_id: int, *, actor: str) -> None:
    if not _expire(session, payment_id, actor=actor, reason="expired before a new attempt"):
        # It moved (e.g. a success callback) between our read and its lock: let the
        # client look again rather than open a second attempt next to a success.
        raise Conflict("The order's payment changed just now; try again",
                       code="payment_changed")


def _next_attempt(session: Session, res: Resources, order: LockedOrder, method: PaymentMethod,
                  *, actor: str, retry_of: int | None = None) -> AttemptResult:
    """The order's next attempt of `method` (insert_attempt), for creation and retry alike:
    recorded with the method's routed provider and its fee, expiring after the payment TTL."""
    return insert_attempt(
        session, order, method=method.code, provider=provider_name_for(res, method.code),
        fee=method.fee_for(order.total_amount, order.currency),
        expires_at=order.now + timedelta(seconds=res.settings.payment_ttl_seconds),
        actor=actor, retry_of=retry_of)


def _view_instead_of_attempt(session: Session, order_id: int,
                             active_id: int | None) -> PaymentView:
    """The order's active payment, answered when no attempt was inserted: the one the
    statement found, or (None) the one the unique index kept us from duplicating."""
    log.info("order %s already has an active payment; returning it", order_id)
    if active_id is None:
        active_id = int(session.execute(
            select(Payment.id).where(Payment.order_id == order_id, Payment.status.in_(
                [s.value for s in ACTIVE_PAYMENT_STATUSES]))).scalar_one())
    return payment_detail(session, active_id)


def _expire(session: Session, payment_id: int, *, actor: str, reason: str) -> bool:
    return transition_payment(session, payment_id, PaymentStatus.EXPIRED, actor=actor,
                              event="payment_expired", allowed_from=ACTIVE_PAYMENT_STATUSES,
                              reason=reason) is not None
