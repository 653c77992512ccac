"""SQLAlchemy-mapped tables. No Session, Flask, Celery or redis here.

Money is NUMERIC(14, 2), timestamps are timestamptz. Statuses are plain text
checked by CHECK constraints, so adding one is a migration, not an enum dance.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from domain.statuses import CallbackStatus, OrderStatus, PaymentStatus, RefundStatus
from domain.wallet import OrderPurpose

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(14, 2, asdecimal=True)


def _in(column: str, values: Any) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("total_amount > 0", name="positive_total"),
        CheckConstraint(_in("status", OrderStatus), name="status"),
        CheckConstraint(_in("purpose", OrderPurpose), name="purpose"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_number: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    total_amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.PENDING)
    # wallet_topup: paying it credits the user's wallet (domain/wallet.py, DESIGN.md §10).
    purpose: Mapped[str] = mapped_column(String(16), default=OrderPurpose.PURCHASE,
                                         server_default=OrderPurpose.PURCHASE.value)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class OrderStatusHistory(Base):
    __tablename__ = "order_status_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="positive_amount"),
        CheckConstraint("refunded_amount >= 0 AND refunded_amount <= amount",
                        name="refund_within_amount"),
        CheckConstraint(_in("status", PaymentStatus), name="status"),
        UniqueConstraint("provider", "transaction_id"),
        # At most one active payment per order, enforced by the database.
        Index("uq_payments_one_active_per_order", "order_id", unique=True,
              postgresql_where=text("status IN ('init', 'processing')")),
        Index("ix_payments_due", "expires_at",
              postgresql_where=text("status IN ('init', 'processing')")),
        Index("ix_payments_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(24), default=PaymentStatus.INIT)
    provider: Mapped[str] = mapped_column(String(32))
    provider_reference: Mapped[str | None] = mapped_column(String(128))
    # Our reference at the provider (domain/references.py), set when first sent there.
    out_trade_no: Mapped[str | None] = mapped_column(String(64), unique=True)
    transaction_id: Mapped[str | None] = mapped_column(String(128))
    pay_url: Mapped[str | None] = mapped_column(Text)
    qr_payload: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    fee: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    refunded_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"),
                                                     server_default="0")
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # our clock
    # The provider's own time of the success, where it told us one (a callback's, a status
    # answer's, a statement line's): the day its statement puts the payment in.
    provider_paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PaymentEvent(Base):
    """Append-only audit trail. payment_id is null for events about no known payment."""

    __tablename__ = "payment_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # A payment's id, checked once per inserting statement rather than by a foreign key
    # once per row; payments are never deleted (both triggers: migration 0012).
    payment_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    # Not indexed: the trail is read by payment, never by event name (migration 0011).
    event: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="positive_amount"),
        CheckConstraint(_in("status", RefundStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.PENDING)
    reason: Mapped[str | None] = mapped_column(Text)
    provider_refund_id: Mapped[str | None] = mapped_column(String(128))
    out_refund_no: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The provider's own time of the refund's success, where known (as provider_paid_at).
    provider_completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Accepted by the provider but not paid out (WeChat Pay's REFUND.ABNORMAL).
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")


class ProviderCallback(Base):
    """The inbox: every verified callback, committed before the provider gets its 200."""

    __tablename__ = "provider_callbacks"
    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        CheckConstraint(_in("status", CallbackStatus), name="status"),
        Index("ix_provider_callbacks_status_received", "status", "received_at"),
        # What a batch claims from (services/callback_batches.py): the waiting rows in
        # id order, however many processed rows the table holds.
        Index("ix_provider_callbacks_waiting", "id",
              postgresql_where=text("status = 'received'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(64))
    payment_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default=CallbackStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when a batch claims the row (its attempt counted): no other batch claims it
    # before then. A batch killed mid-way leaves it set, and the row waits for it.
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CallbackAuthFailure(Base):
    """Refused callback signatures, one row per provider and minute (anonymous junk must
    not write a row per request): how many, the first and last reason, and when."""

    __tablename__ = "callback_auth_failures"
    __table_args__ = (UniqueConstraint("provider", "minute"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer)
    first_reason: Mapped[str] = mapped_column(String(32))
    last_reason: Mapped[str] = mapped_column(String(32))
    first_at: Mapped[datetime] = _now()
    last_at: Mapped[datetime] = _now()


class ApiKey(Base):
    """Only the SHA-256 of a key is stored; the key itself is shown once at creation."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'user')", name="role"),
        CheckConstraint("role = 'admin' OR user_id IS NOT NULL", name="user_has_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    name: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Coarse on purpose: refreshed at most once per LAST_USED_GRANULARITY (services/api_keys.py).
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    """Stripe-style idempotency: one row per (api key, Idempotency-Key)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("api_key_id", "key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[Any | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
