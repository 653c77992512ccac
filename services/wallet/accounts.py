"""A wallet and its ledger for its owner and admins; admin credits (DESIGN.md §10).

Another user's wallet is 404, as for orders and payments: existence never leaks. A user
is known when an API key or an order names them; a known user's wallet that was never
used reads as balance 0 without being written.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from adapters.resources import Resources
from domain.errors import NotFound
from domain.models import ApiKey, Order
from domain.money import parse_amount
from domain.wallet import WALLET_CURRENCY, EntryKind, check_not_self_credit
from domain.wallet_models import Wallet, WalletEntry
from services.api_keys import Principal
from services.queries import MAX_BIGINT
from services.wallet.ledger import entry_of, entry_view, post_entry

ZERO = Decimal("0.00")
WalletView = dict[str, Any]


def get_wallet(res: Resources, principal: Principal, user_id: int) -> WalletView:
    with res.uow() as uow:
        _check_visible(uow.session, principal, user_id)
        return _wallet_view(uow.session, user_id)


def list_ledger(res: Resources, principal: Principal, user_id: int, *, page: int,
                page_size: int) -> dict[str, Any]:
    """Entries newest first, one page of them."""
    with res.uow() as uow:
        session = uow.session
        _check_visible(session, principal, user_id)
        total = session.execute(select(func.count()).select_from(WalletEntry)
                                .where(WalletEntry.user_id == user_id)).scalar_one()
        rows = session.execute(
            select(WalletEntry).where(WalletEntry.user_id == user_id)
            .order_by(WalletEntry.id.desc())
            .offset((page - 1) * page_size).limit(page_size)).scalars().all()
        return {"items": [entry_view(entry_of(r)) for r in rows], "page": page,
                "page_size": page_size, "total": total}


def credit_wallet(res: Resources, principal: Principal, user_id: int, *, amount: object,
                  reason: str) -> dict[str, Any]:
    """An admin puts money in: one `credit` entry. Every check runs before anything is
    written: the amount (400), the user (404), not one's own wallet (403)."""
    credit = parse_amount(amount, currency=WALLET_CURRENCY)
    with res.uow() as uow:
        session = uow.session
        _check_known_user(session, user_id)
        check_not_self_credit(principal.user_id, user_id)
        entry = post_entry(session, user_id, EntryKind.CREDIT, credit, actor=principal.actor,
                           reason=reason)
        uow.commit()
    return entry_view(entry)


def wallet_balance(session: Session, user_id: int) -> Decimal | None:
    """The balance of a wallet that exists, else None (read only, no lock)."""
    balance = session.execute(
        select(Wallet.balance).where(Wallet.user_id == user_id)).scalar_one_or_none()
    return None if balance is None else Decimal(balance)


def _wallet_view(session: Session, user_id: int) -> WalletView:
    row = session.execute(select(Wallet.balance, Wallet.currency, Wallet.updated_at)
                          .where(Wallet.user_id == user_id)).first()
    if row is None:  # never used: balance 0, nothing written
        return {"user_id": user_id, "balance": ZERO, "currency": WALLET_CURRENCY,
                "updated_at": None}
    return {"user_id": user_id, "balance": row.balance, "currency": row.currency,
            "updated_at": row.updated_at}


def _check_visible(session: Session, principal: Principal, user_id: int) -> None:
    if not principal.is_admin and principal.user_id != user_id:
        raise _not_found()
    _check_known_user(session, user_id)


def _check_known_user(session: Session, user_id: int) -> None:
    if not 0 < user_id <= MAX_BIGINT:
        raise _not_found()
    known = session.execute(select(or_(
        exists().where(Wallet.user_id == user_id),
        exists().where(ApiKey.user_id == user_id),
        exists().where(Order.user_id == user_id)))).scalar_one()
    if not known:
        raise _not_found()


def _not_found() -> NotFound:
    return NotFound("Wallet not found", code="wallet_not_found")
