"""Whether the cashier page offers the wallet: when the payment's owner has one and the
order may be paid from it (a CNY purchase, not a top-up). The balance is shown beside
it; whether it is enough is decided when the customer pays (409 otherwise)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.errors import InvalidInput
from domain.methods import CATALOG
from domain.models import Order, Payment
from domain.wallet import BALANCE_METHOD, check_balance_method_allowed
from services.wallet.accounts import wallet_balance


def wallet_offer(session: Session, payment: Payment) -> dict[str, Any] | None:
    """The balance method as the page lists it, with `balance`; None when not offered."""
    method = CATALOG[BALANCE_METHOD]
    if not method.enabled:
        return None
    purpose = session.execute(
        select(Order.purpose).where(Order.id == payment.order_id)).scalar_one()
    try:
        check_balance_method_allowed(BALANCE_METHOD, purpose=purpose,
                                     currency=payment.currency)
    except InvalidInput:
        return None
    balance = wallet_balance(session, payment.user_id)
    if balance is None:
        return None
    return {"code": method.code, "name": method.name, "supports_qr": method.supports_qr,
            "balance": balance}
