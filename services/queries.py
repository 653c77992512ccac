"""Read models: what the API shows of orders, payments and the method catalog.

Also the ownership rule every endpoint shares: a user key sees only its own
orders and payments, and anything else is "not found" so existence never leaks.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from adapters.resources import Resources
from domain.errors import Forbidden, InvalidInput, NotFound
from domain.ids import MAX_BIGINT
from domain.methods import ALIASES, CATALOG
from domain.models import Order, OrderStatusHistory, Payment, PaymentEvent
from domain.money import ZERO, in_units
from domain.statuses import PAID_PAYMENT_STATUSES, PaymentStatus
from services.api_keys import Principal

# --- ownership -------------------------------------------------------------------------

def _visible_to(principal: Principal, owner_id: int) -> bool:
    return principal.is_admin or principal.user_id == owner_id


def find_order(session: Session, principal: Principal, order_id: int, *,
               lock: bool = False) -> Order:
    """The order if this caller may see it, else NotFound (also for another user's)."""
    if not 0 < order_id <= MAX_BIGINT:
        raise NotFound("Order not found", code="order_not_found")
    query = select(Order).where(Order.id == order_id).execution_options(populate_existing=True)
    if lock:
        query = query.with_for_update()
    order = session.execute(query).scalar_one_or_none()
    if order is None or not _visible_to(principal, order.user_id):
        raise NotFound("Order not found", code="order_not_found")
    return order


def find_payment(session: Session, principal: Principal, payment_id: int, *,
                 lock: bool = False) -> Payment:
    if not 0 < payment_id <= MAX_BIGINT:
        raise NotFound("Payment not found", code="payment_not_found")
    query = (select(Payment).where(Payment.id == payment_id)
             .execution_options(populate_existing=True))
    if lock:
        query = query.with_for_update()
    payment = session.execute(query).scalar_one_or_none()
    if payment is None or not _visible_to(principal, payment.user_id):
        raise NotFound("Payment not found", code="payment_not_found")
    return payment


# --- serialisation ---------------------------------------------------------------------

def payment_fields(payment: Any) -> dict[str, Any]:
    """The payment as DESIGN.md §5 lists it (without logs). Money stays Decimal. From the
    mapped object, or any row with these columns as attributes (the new attempt's, in
    services/payment_attempts.py)."""
    return {
        "id": payment.id,
        "order_id": payment.order_id,
        "amount": in_units(payment.amount, payment.currency),
        "currency": payment.currency,
        "method": payment.method,
        "status": payment.status,
        "provider": payment.provider,
        "transaction_id": payment.transaction_id,
        "out_trade_no": payment.out_trade_no,
        "pay_url": payment.pay_url,
        "attempt": payment.attempt,
        "fee": in_units(payment.fee, payment.currency),
        "refunded_amount": in_units(payment.refunded_amount, payment.currency),
        "created_at": payment.created_at,
        "updated_at": payment.updated_at,
        "expires_at": payment.expires_at,
        "paid_at": payment.paid_at,
        "needs_review": payment.needs_review,
    }


def payment_logs(session: Session, payment_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(PaymentEvent.event, PaymentEvent.detail, PaymentEvent.actor,
               PaymentEvent.created_at)
        .where(PaymentEvent.payment_id == payment_id)
        .order_by(PaymentEvent.id)
    ).all()
    return [{"event": r.event, "detail": r.detail, "actor": r.actor, "at": r.created_at}
            for r in rows]


def payment_detail(session: Session, payment_id: int) -> dict[str, Any]:
    """Fresh from the database (status changes are UPDATEs the identity map never saw)."""
    payment = session.execute(
        select(Payment).where(Payment.id == payment_id)
        .execution_options(populate_existing=True)).scalar_one()
    return {**payment_fields(payment), "logs": payment_logs(session, payment_id)}


def order_detail(session: Session, order_id: int) -> dict[str, Any]:
    order = session.execute(
        select(Order).where(Order.id == order_id)
        .execution_options(populate_existing=True)).scalar_one()
    paid_statuses = [s.value for s in PAID_PAYMENT_STATUSES]
    totals = session.execute(
        select(
            func.coalesce(func.sum(Payment.amount).filter(Payment.status.in_(paid_statuses)),
                          ZERO).label("paid"),
            func.coalesce(func.sum(Payment.refunded_amount), ZERO).label("refunded"),
        ).where(Payment.order_id == order_id)
    ).one()
    history = session.execute(
        select(OrderStatusHistory).where(OrderStatusHistory.order_id == order_id)
        .order_by(OrderStatusHistory.id)
    ).scalars().all()
    return {
        "id": order.id,
        "order_number": order.order_number,
        "user_id": order.user_id,
        "total_amount": in_units(order.total_amount, order.currency),
        "currency": order.currency,
        "status": order.status,
        "purpose": order.purpose,
        "amount_paid": in_units(Decimal(totals.paid), order.currency),
        "amount_refunded": in_units(Decimal(totals.refunded), order.currency),
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "history": [{"from": h.from_status, "to": h.to_status, "reason": h.reason,
                     "actor": h.actor, "at": h.created_at} for h in history],
    }


# --- read use cases --------------------------------------------------------------------

def get_order(res: Resources, principal: Principal, order_id: int) -> dict[str, Any]:
    with res.uow() as uow:
        order = find_order(uow.session, principal, order_id)
        return order_detail(uow.session, order.id)


def get_payment(res: Resources, principal: Principal, payment_id: int) -> dict[str, Any]:
    with res.uow() as uow:
        payment = find_payment(uow.session, principal, payment_id)
        return payment_detail(uow.session, payment.id)


def get_payment_status(res: Resources, principal: Principal,
                       payment_id: int) -> dict[str, Any]:
    with res.uow() as uow:
        payment = find_payment(uow.session, principal, payment_id)
        return {"id": payment.id, "status": payment.status, "updated_at": payment.updated_at}


@dataclass(frozen=True)
class PaymentFilters:
    """Already type-checked by the web layer; values are checked against the domain here."""

    order_id: int | None = None
    status: str | None = None
    method: str | None = None
    user_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None  # exclusive
    needs_review: bool | None = None  # flagged for a person (services/review.py)


def list_payments(res: Resources, principal: Principal, filters: PaymentFilters,
                  page: int, page_size: int) -> dict[str, Any]:
    query = _filtered(principal, filters)
    with res.uow() as uow:
        total = uow.session.execute(
            select(func.count()).select_from(query.subquery())).scalar_one()
        rows = uow.session.execute(
            query.order_by(Payment.created_at.desc(), Payment.id.desc())
            .offset((page - 1) * page_size).limit(page_size)
        ).scalars().all()
        return {"items": [payment_fields(p) for p in rows], "page": page,
                "page_size": page_size, "total": total}


def _filtered(principal: Principal, filters: PaymentFilters) -> Select[Any]:
    query = select(Payment)
    if not principal.is_admin:
        if filters.user_id is not None and filters.user_id != principal.user_id:
            raise Forbidden("Only an admin key may list another user's payments",
                            code="admin_only")
        query = query.where(Payment.user_id == principal.user_id)
    elif filters.user_id is not None:
        query = query.where(Payment.user_id == filters.user_id)
    if filters.order_id is not None:
        query = query.where(Payment.order_id == filters.order_id)
    if filters.status is not None:
        query = query.where(Payment.status == _known_status(filters.status))
    if filters.method is not None:
        query = query.where(Payment.method == _known_method(filters.method))
    if filters.needs_review is not None:
        query = query.where(Payment.needs_review.is_(filters.needs_review))
    if filters.created_from is not None:
        query = query.where(Payment.created_at >= filters.created_from)
    if filters.created_to is not None:
        query = query.where(Payment.created_at < filters.created_to)
    return query


def _known_status(value: str) -> str:
    try:
        return PaymentStatus(value).value
    except ValueError:
        raise InvalidInput(
            f"status must be one of {', '.join(s.value for s in PaymentStatus)}",
            code="invalid_field", field="status") from None


def _known_method(value: str) -> str:
    code = ALIASES.get(value, value)
    if code not in CATALOG:
        raise InvalidInput(f"method must be one of {', '.join(CATALOG)}",
                           code="invalid_field", field="method")
    return code


def list_payment_methods(available: Collection[str] | None = None) -> dict[str, Any]:
    """The whole catalog, disabled methods included, so a client can show why. A method
    no provider serves here (`available`) is disabled too."""
    aliases: dict[str, list[str]] = {}
    for alias, code in ALIASES.items():
        aliases.setdefault(code, []).append(alias)
    return {"items": [
        {"code": m.code, "name": m.name,
         "enabled": m.enabled and (available is None or m.code in available),
         "supports_qr": m.supports_qr,
         "refundable": m.refundable, "fee_rate": str(m.fee_rate),
         "aliases": aliases.get(m.code, [])}
        for m in CATALOG.values()
    ]}
