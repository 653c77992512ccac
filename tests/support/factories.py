"""Rows for tests that need data in a given state without walking the API to it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import insert

from adapters.resources import Resources
from domain.models import Order, Payment


def make_order(res: Resources, *, user_id: int = 1, total: str = "100.00",
               currency: str = "CNY", status: str = "pending",
               created_at: datetime | None = None) -> int:
    values = dict(order_number=f"T-{uuid.uuid4().hex[:16]}", user_id=user_id,
                  total_amount=Decimal(total), currency=currency, status=status)
    if created_at is not None:
        values.update(created_at=created_at, updated_at=created_at)
    with res.uow() as uow:
        order_id = uow.session.execute(insert(Order).values(**values).returning(Order.id)
                                       ).scalar_one()
        uow.commit()
    return int(order_id)


def make_payment(res: Resources, order_id: int, *, user_id: int = 1, amount: str = "100.00",
                 currency: str = "CNY", method: str = "wechat", status: str = "init",
                 provider: str = "sandbox", attempt: int = 1,
                 created_at: datetime | None = None,
                 expires_at: datetime | None = None) -> int:
    now = datetime.now(UTC)
    created = created_at or now
    values = dict(order_id=order_id, user_id=user_id, amount=Decimal(amount),
                  currency=currency, method=method, status=status, provider=provider,
                  attempt=attempt, fee=Decimal("0.00"), created_at=created, updated_at=created,
                  expires_at=expires_at or created + timedelta(minutes=30))
    with res.uow() as uow:
        payment_id = uow.session.execute(
            insert(Payment).values(**values).returning(Payment.id)).scalar_one()
        uow.commit()
    return int(payment_id)
