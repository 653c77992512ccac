"""Posting an entry: the only way a wallet's balance changes.

The wallet row is locked (SELECT ... FOR UPDATE, created first if it never was),
the domain rule computes the balance after, and the UPDATE re-checks the balance it
read (compare-and-set) while the entry is inserted in the same transaction. So the
balance equals the sum of the entries after every commit, and never goes below zero:
the CHECK constraint stands behind the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from adapters.metrics import WALLET_ENTRIES, count_on_commit
from domain.wallet import EntryKind, balance_after
from domain.wallet_models import Wallet, WalletEntry

_CREATE_WALLET = (pg_insert(Wallet).values(user_id=bindparam("user_id"))
                  .on_conflict_do_nothing(index_elements=[Wallet.user_id]))
_LOCK_WALLET = (select(Wallet.balance).where(Wallet.user_id == bindparam("user_id"))
                .with_for_update())
_MOVE_BALANCE = (update(Wallet)
                 .where(Wallet.user_id == bindparam("wallet_user_id"),
                        Wallet.balance == bindparam("expected"))
                 .values(balance=bindparam("new_balance"), updated_at=func.now())
                 .returning(Wallet.user_id)
                 .execution_options(synchronize_session=False))


class LedgerConflict(Exception):
    """The balance changed under our row lock: a bug, never a business answer."""


@dataclass(frozen=True)
class Entry:
    id: int
    user_id: int
    kind: str
    amount: Decimal
    balance_after: Decimal
    payment_id: int | None
    refund_id: int | None
    reason: str | None
    created_at: datetime


def lock_wallet(session: Session, user_id: int) -> Decimal:
    """The wallet's balance, its row locked until the transaction ends. A wallet is made
    on first use: ON CONFLICT, so two first uses at once make one."""
    balance = session.execute(_LOCK_WALLET, {"user_id": user_id}).scalar_one_or_none()
    if balance is None:
        session.execute(_CREATE_WALLET, {"user_id": user_id})
        balance = session.execute(_LOCK_WALLET, {"user_id": user_id}).scalar_one()
    return Decimal(balance)


def post_entry(session: Session, user_id: int, kind: EntryKind, amount: Decimal, *,
               actor: str, reason: str | None = None, payment_id: int | None = None,
               refund_id: int | None = None, locked_balance: Decimal | None = None) -> Entry:
    """Move the balance by the signed `amount` and append its entry.

    InsufficientBalance (409) when the balance would go below zero; nothing is
    written then. `locked_balance`: what lock_wallet returned in this transaction.
    """
    current = locked_balance if locked_balance is not None else lock_wallet(session, user_id)
    after = balance_after(current, amount)
    moved = session.execute(_MOVE_BALANCE, {"wallet_user_id": user_id, "expected": current,
                                            "new_balance": after}).scalar_one_or_none()
    if moved is None:
        raise LedgerConflict(f"wallet {user_id} changed while locked")
    row = session.execute(
        insert(WalletEntry).values(user_id=user_id, kind=kind.value, amount=amount,
                                   balance_after=after, payment_id=payment_id,
                                   refund_id=refund_id, reason=reason, actor=actor[:64])
        .returning(WalletEntry)).scalar_one()
    count_on_commit(session, WALLET_ENTRIES.labels(kind.value))
    return entry_of(row)


def entry_of(row: WalletEntry) -> Entry:
    return Entry(id=row.id, user_id=row.user_id, kind=row.kind, amount=row.amount,
                 balance_after=row.balance_after, payment_id=row.payment_id,
                 refund_id=row.refund_id, reason=row.reason, created_at=row.created_at)


def entry_view(entry: Entry) -> dict[str, object]:
    """An entry as the API shows it (DESIGN.md §10); money stays Decimal."""
    return {"id": entry.id, "user_id": entry.user_id, "amount": entry.amount,
            "balance_after": entry.balance_after, "kind": entry.kind,
            "payment_id": entry.payment_id, "refund_id": entry.refund_id,
            "reason": entry.reason, "created_at": entry.created_at}
