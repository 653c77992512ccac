"""The wallet's tables (DESIGN.md §10), on the same metadata as domain/models.py.

The balance lives on the wallet row, with a CHECK that it is never negative; every
movement is a row of wallet_entries, signed, with the balance after it. The ledger
is append-only (a trigger, in migration 0005, refuses UPDATE and DELETE). Partial
unique indexes make each cause move money once: one debit per balance payment, one
credit per top-up payment, at most one movement each way per refund.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from domain.models import Base, Money, _in, _now
from domain.wallet import WALLET_CURRENCY, EntryKind


class Wallet(Base):
    __tablename__ = "wallets"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"),)

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    balance: Mapped[Decimal] = mapped_column(Money, server_default="0")
    currency: Mapped[str] = mapped_column(String(3), server_default=WALLET_CURRENCY)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class WalletEntry(Base):
    __tablename__ = "wallet_entries"
    __table_args__ = (
        CheckConstraint(_in("kind", EntryKind), name="kind"),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
        # The sign each kind may have; a refund goes either way (see EntryKind).
        CheckConstraint("amount <> 0 AND (kind = 'refund' OR "
                        "(kind IN ('credit', 'topup') AND amount > 0) OR "
                        "(kind = 'payment' AND amount < 0))", name="signed_by_kind"),
        Index("ix_wallet_entries_user_id_id", "user_id", "id"),
        Index("uq_wallet_entries_debit_per_payment", "payment_id", unique=True,
              postgresql_where=text("kind = 'payment'")),
        Index("uq_wallet_entries_topup_per_payment", "payment_id", unique=True,
              postgresql_where=text("kind = 'topup'")),
        Index("uq_wallet_entries_refund_out", "refund_id", unique=True,
              postgresql_where=text("amount < 0")),
        Index("uq_wallet_entries_refund_in", "refund_id", unique=True,
              postgresql_where=text("amount > 0")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("wallets.user_id"))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Money)
    balance_after: Mapped[Decimal] = mapped_column(Money)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
