"""The provider doubles' own tables (migration 0003), shared by both doubles.

They belong to the pretend WeChat Pay and Alipay, not to us: nothing in services/
reads them. Amounts are kept as the providers keep them, in minor units (fen).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from domain.models import Base

# What each double calls its states is its own business (WeChat Pay: NOTPAY, SUCCESS,
# CLOSED...; Alipay: WAIT_BUYER_PAY, TRADE_SUCCESS...); these columns hold those words.
NOTIFICATION_STATUSES = ("pending", "delivered", "abandoned")


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class StandinOrder(Base):
    """A payment at a double, as the merchant (us) named it: one per out_trade_no."""

    __tablename__ = "standin_orders"
    __table_args__ = (
        UniqueConstraint("provider", "merchant", "out_trade_no"),
        CheckConstraint("amount_minor > 0", name="positive_amount"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))  # wechatpay | alipay
    merchant: Mapped[str] = mapped_column(String(64))  # mchid / app_id
    out_trade_no: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str | None] = mapped_column(Text)
    notify_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    transaction_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The secret part of the pay page's URL (what the QR code leads to).
    pay_token: Mapped[str] = mapped_column(String(64), unique=True)
    # The request as the merchant sent it, for tests that check what we asked for.
    request_body: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StandinRefund(Base):
    """A refund at a double: one per out_refund_no (the merchant's refund reference)."""

    __tablename__ = "standin_refunds"
    __table_args__ = (
        UniqueConstraint("provider", "merchant", "out_refund_no"),
        CheckConstraint("amount_minor > 0", name="positive_amount"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    merchant: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int] = mapped_column(BigInteger, index=True)  # standin_orders.id
    out_refund_no: Mapped[str] = mapped_column(String(64))
    refund_ref: Mapped[str] = mapped_column(String(64), unique=True)  # the provider's id
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32))
    request_body: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StandinNotification(Base):
    """One notification a double sends to the merchant, retried on the provider's own
    schedule until the merchant accepts it (standins/notifications.py)."""

    __tablename__ = "standin_notifications"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'abandoned')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    # What the double's format renders afresh on every attempt (signed then).
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    not_before: Mapped[datetime] = _now()
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
