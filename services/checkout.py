"""The cashier page's use cases: a customer, holding only a payment's checkout link, sees
that payment, picks a method, pays, watches it, and retries a failed attempt.

The link's token is an HMAC of the payment id and its expires_at under a key derived
from the server's secret, so it needs no column, names exactly one payment, and dies
with the payment: past expires_at (database clock) every token of it is 404, whatever
the status. Until then the page also shows a final state (succeeded, failed,
cancelled). A wrong token is the same 404 as a missing payment: nothing leaks.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from adapters.resources import Resources
from config import Settings
from domain.errors import Conflict, NotFound
from domain.ids import MAX_BIGINT
from domain.methods import CATALOG, resolve_method, usable_methods
from domain.models import Order, Payment
from domain.pay_links import linkable_pay_url
from domain.statuses import RETRYABLE_PAYMENT_STATUSES, OrderStatus, PaymentStatus
from domain.wallet import BALANCE_METHOD, check_balance_method_allowed
from services import payments
from services.api_keys import Principal
from services.audit import record_event
from services.transitions import lock_payment_status, utc_now
from services.wallet.checkout_offer import wallet_offer

CHECKOUT_PATH = "/checkout/{payment_id}"
TOKEN_HEX_CHARS = 32  # 128 bits of the HMAC: unguessable, and a short URL


@dataclass(frozen=True)
class CheckoutCustomer(Principal):
    """Whoever holds a payment's checkout link: acts as that payment's owner, audited as
    the checkout page."""

    @property
    def actor(self) -> str:
        return f"checkout:user:{self.user_id}"


def checkout_token(settings: Settings, payment_id: int, expires_at: datetime) -> str:
    # Its own secret (CHECKOUT_TOKEN_SECRET): rotating a provider's key never kills a
    # live checkout link, and knowing one never mints links.
    key = hashlib.sha256(f"checkout:{settings.checkout_token_secret}".encode()).digest()
    # Whole microseconds since the epoch: the same instant always signs the same way.
    expiry = round(expires_at.timestamp() * 1_000_000)
    message = f"{payment_id}.{expiry}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:TOKEN_HEX_CHARS]


def checkout_url(settings: Settings, payment_id: int, expires_at: datetime) -> str:
    path = CHECKOUT_PATH.format(payment_id=payment_id)
    token = checkout_token(settings, payment_id, expires_at)
    return f"{settings.public_base_url}{path}?token={token}"


def with_checkout_url(settings: Settings, view: dict[str, Any]) -> dict[str, Any]:
    """A payment view (queries.payment_fields) with the customer's link added."""
    return {**view, "checkout_url": checkout_url(settings, view["id"], view["expires_at"])}


# --- reading ---------------------------------------------------------------------------

def checkout_page(res: Resources, payment_id: int, token: str) -> dict[str, Any]:
    """Everything the page shows: the order, the payment, the enabled methods."""
    with res.uow() as uow:
        payment, order_number = _authorized(res, uow.session, payment_id, token)
        view = {**_status_view(uow.session, payment, res.settings.public_base_url),
                "order_number": order_number, "amount": payment.amount,
                "currency": payment.currency, "expires_at": payment.expires_at}
        wallet = wallet_offer(uow.session, payment)
    methods = [{"code": m.code, "name": m.name, "supports_qr": m.supports_qr}
               for m in usable_methods(res.providers.available_methods)
               if m.code != BALANCE_METHOD]
    if wallet is not None:  # the owner's wallet, with what it holds
        methods.append(wallet)
    return {**view, "methods": methods, "token": token}


def checkout_status(res: Resources, payment_id: int, token: str) -> dict[str, Any]:
    """What the page polls: status, the pay link once there, the time left."""
    with res.uow() as uow:
        payment, _ = _authorized(res, uow.session, payment_id, token)
        return _status_view(uow.session, payment, res.settings.public_base_url)


def checkout_qr_payload(res: Resources, payment_id: int, token: str) -> str:
    with res.uow() as uow:
        payment, _ = _authorized(res, uow.session, payment_id, token)
        payload = payment.qr_payload
    if not payload:
        raise NotFound("This payment has no QR code (yet)", code="qr_not_available")
    return payload


# --- acting ----------------------------------------------------------------------------

def start_checkout_payment(res: Resources, payment_id: int, token: str,
                           method: object = None) -> dict[str, Any]:
    """The Pay button: the method the customer picked (while init), then the same start
    as POST /api/v1/payments/{id}/pay."""
    customer = _customer(res, payment_id, token)
    if method is not None:
        _change_method(res, customer, payment_id, method)
    payments.request_payment_start(res, customer, payment_id)
    return checkout_status(res, payment_id, token)


def retry_checkout_payment(res: Resources, payment_id: int, token: str) -> dict[str, Any]:
    """The Retry button: the same retry as the API; the new attempt has its own link."""
    customer = _customer(res, payment_id, token)
    view, created = payments.retry_payment(res, customer, payment_id)
    return {"payment_id": view["id"], "created": created,
            "checkout_url": checkout_url(res.settings, view["id"], view["expires_at"])}


# --- rules -----------------------------------------------------------------------------

def _authorized(res: Resources, session: Any, payment_id: int,
                token: str) -> tuple[Payment, str]:
    """The payment and its order number, if the token is this payment's and it has not
    expired; else NotFound, the same answer as for a payment that does not exist."""
    missing = NotFound("Payment not found", code="payment_not_found")
    if not 0 < payment_id <= MAX_BIGINT or not token:
        raise missing
    row = session.execute(
        select(Payment, Order.order_number).join(Order, Order.id == Payment.order_id)
        .where(Payment.id == payment_id)
        .execution_options(populate_existing=True)).first()
    if row is None:
        raise missing
    payment, order_number = row
    expected = checkout_token(res.settings, payment.id, payment.expires_at)
    if not hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace")):
        raise missing
    if payment.expires_at <= utc_now(session):
        raise missing
    return payment, order_number


def _customer(res: Resources, payment_id: int, token: str) -> CheckoutCustomer:
    with res.uow() as uow:
        payment, _ = _authorized(res, uow.session, payment_id, token)
        return CheckoutCustomer(key_id=0, role="user", user_id=payment.user_id)


def _status_view(session: Any, payment: Payment, own_origin: str) -> dict[str, Any]:
    now = utc_now(session)
    method = CATALOG.get(payment.method)
    return {
        "payment_id": payment.id,
        "status": payment.status,
        "method": payment.method,
        "method_name": method.name if method else payment.method,
        "supports_qr": bool(method and method.supports_qr),
        # Linked only with a scheme a provider uses (domain/pay_links.py): never javascript:.
        "pay_url": linkable_pay_url(payment.pay_url, own_origin),
        "has_qr": bool(payment.qr_payload),
        "seconds_left": max(0, int((payment.expires_at - now).total_seconds())),
        "can_retry": _may_retry(session, payment),
    }


def _may_retry(session: Any, payment: Payment) -> bool:
    """Whether to offer Retry; the retry itself re-checks everything (and the 30 s gap)."""
    if PaymentStatus(payment.status) not in RETRYABLE_PAYMENT_STATUSES:
        return False
    order_status, attempts = session.execute(
        select(Order.status, select(func.max(Payment.attempt))
               .where(Payment.order_id == payment.order_id).scalar_subquery())
        .where(Order.id == payment.order_id)).one()
    return bool(order_status == OrderStatus.PENDING
                and attempts <= payments.MAX_RETRIES_PER_ORDER)


def _change_method(res: Resources, customer: CheckoutCustomer, payment_id: int,
                   method: object) -> None:
    """Switch an init payment to another enabled method (its fee and provider follow)."""
    chosen = resolve_method(method, res.providers.available_methods)
    with res.uow() as uow:
        session = uow.session
        status = lock_payment_status(session, payment_id)
        current = session.execute(
            select(Payment.method, Payment.amount, Payment.currency, Order.purpose)
            .join(Order, Order.id == Payment.order_id).where(Payment.id == payment_id)).one()
        check_balance_method_allowed(chosen.code, purpose=current.purpose,
                                     currency=current.currency)
        if current.method == chosen.code:
            return
        if status != PaymentStatus.INIT:
            raise Conflict(f"Payment is {status.value if status else 'gone'}; the method "
                           "can only change before paying", code="payment_not_payable")
        session.execute(
            update(Payment).where(Payment.id == payment_id,
                                  Payment.status == PaymentStatus.INIT.value)
            .values(method=chosen.code, fee=chosen.fee_for(current.amount, current.currency),
                    provider=payments.provider_name_for(res, chosen.code),
                    updated_at=func.now())
            .execution_options(synchronize_session=False))
        record_event(session, "payment_method_changed", payment_id=payment_id,
                     actor=customer.actor, method=chosen.code, previous_method=current.method)
        uow.commit()
