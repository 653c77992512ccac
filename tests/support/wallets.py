"""Reading wallets straight from PostgreSQL in tests, and the few API calls every wallet
test makes. What the tests assert is counted in the database, not taken from answers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from adapters.resources import Resources
from domain.models import Order, OrderStatusHistory, Payment, PaymentEvent, Refund
from domain.wallet_models import Wallet, WalletEntry
from tests.support.live_server import Api


def balance(res: Resources, user_id: int) -> Decimal | None:
    with res.uow() as uow:
        value = uow.session.execute(
            select(Wallet.balance).where(Wallet.user_id == user_id)).scalar_one_or_none()
    return None if value is None else Decimal(value)


def entries(res: Resources, user_id: int) -> list[tuple[str, Decimal, Decimal]]:
    """(kind, amount, balance_after) oldest first."""
    with res.uow() as uow:
        rows = uow.session.execute(
            select(WalletEntry.kind, WalletEntry.amount, WalletEntry.balance_after)
            .where(WalletEntry.user_id == user_id).order_by(WalletEntry.id)).all()
    return [(r.kind, Decimal(r.amount), Decimal(r.balance_after)) for r in rows]


def ledger_sum(res: Resources, user_id: int) -> Decimal:
    with res.uow() as uow:
        total = uow.session.execute(
            select(func.coalesce(func.sum(WalletEntry.amount), 0))
            .where(WalletEntry.user_id == user_id)).scalar_one()
    return Decimal(total)


def counts(res: Resources) -> dict[str, int]:
    """Rows of every table a wallet movement may write."""
    tables = {"wallets": Wallet, "entries": WalletEntry, "orders": Order,
              "payments": Payment, "events": PaymentEvent, "history": OrderStatusHistory,
              "refunds": Refund}
    with res.uow() as uow:
        return {name: uow.session.execute(select(func.count()).select_from(model)).scalar_one()
                for name, model in tables.items()}


def credit(admin: Api, user_id: int, amount: str, reason: str = "test credit") -> dict[str, Any]:
    response = admin.post(f"/api/v1/wallets/{user_id}/credits",
                          json={"amount": amount, "reason": reason})
    assert response.status_code == 201, response.text
    return response.json()


def balance_order(admin: Api, user_id: int, total: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order of `user_id` and its (init) balance payment."""
    order = admin.post("/api/v1/orders", json={"total_amount": total, "user_id": user_id})
    assert order.status_code == 201, order.text
    payment = admin.post("/api/v1/payments",
                         json={"order_id": order.json()["id"], "method": "balance"})
    assert payment.status_code == 201, payment.text
    return order.json(), payment.json()
