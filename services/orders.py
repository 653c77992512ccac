"""Order use cases: create an order, move it through the state machine (admin)."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from adapters.resources import Resources
from domain.errors import Conflict, Forbidden, InvalidInput
from domain.models import Order, OrderStatusHistory, Payment
from domain.money import parse_amount, parse_currency
from domain.statuses import ACTIVE_PAYMENT_STATUSES, OrderStatus, PaymentStatus
from domain.wallet import check_manual_order_transition, parse_purpose
from services.api_keys import Principal
from services.queries import find_order, order_detail
from services.transitions import transition_order, transition_payment, utc_now

ORDER_NUMBER = re.compile(r"[A-Za-z0-9._-]{1,64}")
# An order that can no longer be paid takes its open payment attempts with it.
CLOSING_STATUSES = frozenset({OrderStatus.CANCELLED, OrderStatus.EXPIRED})


def create_order(res: Resources, principal: Principal, *, total_amount: object,
                 currency: object, order_number: str | None,
                 user_id: int | None, purpose: object = None) -> dict[str, Any]:
    owner = _owner_for(principal, user_id)
    code = parse_currency(currency, supported=res.settings.supported_currencies)
    amount = parse_amount(total_amount, field="total_amount", currency=code)
    order_purpose = parse_purpose(purpose, code)  # wallet_topup: paying it fills the wallet
    with res.uow() as uow:
        number = _checked_order_number(order_number) or _new_order_number(utc_now(uow.session))
        # ON CONFLICT: a duplicate number is an answer (409), not an exception to untangle.
        order_id = uow.session.execute(
            pg_insert(Order)
            .values(order_number=number, user_id=owner, total_amount=amount, currency=code,
                    status=OrderStatus.PENDING.value, purpose=order_purpose.value)
            .on_conflict_do_nothing(index_elements=[Order.order_number])
            .returning(Order.id)
        ).scalar_one_or_none()
        if order_id is None:
            raise Conflict(f"Order number {number!r} already exists",
                           code="duplicate_order_number")
        uow.session.execute(insert(OrderStatusHistory).values(
            order_id=order_id, from_status=None, to_status=OrderStatus.PENDING.value,
            reason="order created", actor=principal.actor))
        view = order_detail(uow.session, order_id)
        uow.commit()
    return view


def change_order_status(res: Resources, principal: Principal, order_id: int, *,
                        to: str, reason: str | None) -> dict[str, Any]:
    """Admin move through the §4 state machine; an illegal move is 409 and changes nothing."""
    target = _known_order_status(to)
    with res.uow() as uow:
        order = find_order(uow.session, principal, order_id, lock=True)
        check_manual_order_transition(order.purpose, target)
        transition_order(uow.session, order_id, target, actor=principal.actor, reason=reason,
                         strict=True)
        if target in CLOSING_STATUSES:
            _cancel_active_payments(uow.session, order_id, actor=principal.actor,
                                    reason=f"order {target.value}")
        view = order_detail(uow.session, order_id)
        uow.commit()
    return view


def _owner_for(principal: Principal, user_id: int | None) -> int:
    if principal.is_admin:
        if user_id is None:
            raise InvalidInput("user_id is required when an admin creates an order",
                               code="user_id_required", field="user_id")
        return user_id
    assert principal.user_id is not None  # a user key always carries its user id
    if user_id is not None and user_id != principal.user_id:
        raise Forbidden("A user key can only create orders for its own user",
                        code="user_id_not_allowed")
    return principal.user_id


def _checked_order_number(value: str | None) -> str | None:
    if value is None:
        return None
    if not ORDER_NUMBER.fullmatch(value):
        raise InvalidInput("order_number must be 1-64 letters, digits, '.', '_' or '-'",
                           code="invalid_field", field="order_number")
    return value


def _new_order_number(now: datetime) -> str:
    return f"ORD-{now:%Y%m%d}-{secrets.token_hex(6).upper()}"


def _known_order_status(value: str) -> OrderStatus:
    try:
        return OrderStatus(value)
    except ValueError:
        raise InvalidInput(f"to must be one of {', '.join(s.value for s in OrderStatus)}",
                           code="invalid_status", field="to") from None


def _cancel_active_payments(session: Session, order_id: int, *, actor: str,
                            reason: str) -> None:
    active = session.execute(
        select(Payment.id).where(Payment.order_id == order_id,
                                 Payment.status.in_([s.value for s in ACTIVE_PAYMENT_STATUSES]))
    ).scalars().all()
    for payment_id in active:
        transition_payment(session, payment_id, PaymentStatus.CANCELLED, actor=actor,
                           event="payment_cancelled", allowed_from=ACTIVE_PAYMENT_STATUSES,
                           reason=reason)
