"""The sandbox provider's own tables, on our metadata (migration 0002).

They belong to the pretend provider, not to us: nothing in services/ reads them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from domain.models import Base, Money

TICKET_STATUSES = ("pending", "succeeded", "failed", "closed")
REFUND_STATUSES = ("succeeded", "failed")
# held: out_of_order keeps it until a later callback of the ticket exists;
# waiting: sent only after after_delivery_id is delivered (or given up);
# pending: being attempted; delivered: got a 2xx; abandoned: attempts ran out.
DELIVERY_STATUSES = ("held", "waiting", "pending", "delivered", "abandoned")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class SandboxPayment(Base):
    """A payment at the sandbox, known to the merchant by its ticket (the reference)."""

    __tablename__ = "sandbox_payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="positive_amount"),
        CheckConstraint("refunded_amount >= 0 AND refunded_amount <= amount",
                        name="refund_within_amount"),
        CheckConstraint(_in("status", TICKET_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    ticket: Mapped[str] = mapped_column(String(64), unique=True)
    # The merchant's payment id: one sandbox payment per merchant payment, ever.
    merchant_payment_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    transaction_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    refunded_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"),
                                                     server_default="0")
    test_options: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict,
                                                         server_default="{}")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SandboxRefund(Base):
    __tablename__ = "sandbox_refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="positive_amount"),
        CheckConstraint(_in("status", REFUND_STATUSES), name="status"),
        # A redelivered refund request finds its first answer instead of refunding twice.
        UniqueConstraint("sandbox_payment_id", "merchant_refund_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    sandbox_payment_id: Mapped[int] = mapped_column(ForeignKey("sandbox_payments.id"),
                                                    index=True)
    merchant_refund_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _now()


class SandboxDelivery(Base):
    """One callback to send (an event; deliver_twice makes two rows with one event id)."""

    __tablename__ = "sandbox_deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        Index("ix_sandbox_deliveries_after", "after_delivery_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sandbox_payment_id: Mapped[int] = mapped_column(ForeignKey("sandbox_payments.id"),
                                                    index=True)
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # fail_first: this many first attempts are pretended failures (nothing is sent).
    simulated_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    not_before: Mapped[datetime] = _now()
    after_delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("sandbox_deliveries.id"))
    last_status: Mapped[int | None] = mapped_column(Integer)  # HTTP status of the last try
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
