"""The daily reconciliation's tables (issue #17; migration 0007).

One run per provider and statement day: a re-run of a day updates that row (its
attempts, status and counts) and replaces its flagged items; the items a run
applied stay, as the record of what it changed.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from domain.models import Base, Money
from domain.reconciliation import ItemStatus, Kind
from domain.statements import LineKind

RUN_STATUSES = ("running", "succeeded", "failed")


def _in(column: str, values: Any) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class ReconciliationRun(Base):
    __tablename__ = "reconciliation_runs"
    __table_args__ = (
        UniqueConstraint("provider", "statement_date"),
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    statement_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    statement_lines: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    matched: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    applied: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    flagged: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    started_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class ReconciliationItem(Base):
    """One discrepancy: applied by the run, or flagged for a person."""

    __tablename__ = "reconciliation_items"
    __table_args__ = (
        CheckConstraint(_in("object", LineKind), name="object"),
        CheckConstraint(_in("kind", Kind), name="kind"),
        CheckConstraint(_in("status", ItemStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("reconciliation_runs.id", ondelete="CASCADE"), index=True)
    object: Mapped[str] = mapped_column(String(16))  # payment | refund
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(64))
    payment_id: Mapped[int | None] = mapped_column(BigInteger)
    refund_id: Mapped[int | None] = mapped_column(BigInteger)
    our_amount: Mapped[Decimal | None] = mapped_column(Money)
    provider_amount: Mapped[Decimal | None] = mapped_column(Money)
    our_currency: Mapped[str | None] = mapped_column(String(3))
    provider_currency: Mapped[str | None] = mapped_column(String(3))
    our_transaction_id: Mapped[str | None] = mapped_column(String(128))
    provider_transaction_id: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
