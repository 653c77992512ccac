"""What the doubles put in a day's statement: read from their own tables (standin_orders,
standin_refunds), so a test makes a double "know" a payment our books lack (a paid order
whose notification never went out) or lack one we hold, by their rows alone.

Both providers cut their days in Beijing time. A bill, once made, is kept under a token
for a few minutes (Redis), as the real ones hand out a download link to a fixed file.
A test may arm a fault for a double's next statement(s) (`arm_fault`): "unavailable"
(the provider answers 5xx) or "hash" (WeChat Pay: the announced hash does not match).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from standins.models import StandinOrder, StandinRefund

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
BILL_TTL_SECONDS = 300
FAULTS = ("unavailable", "hash")


@dataclass(frozen=True)
class DayRows:
    paid: list[StandinOrder]  # orders paid that day (refunded since or not)
    refunds: list[tuple[StandinRefund, StandinOrder]]  # refunds paid out that day


def day_rows(session: Session, provider: str, merchant: str, day: date, *,
             refund_statuses: tuple[str, ...]) -> DayRows:
    start = datetime.combine(day, time(0), BEIJING)
    end = start + timedelta(days=1)
    paid = list(session.scalars(
        select(StandinOrder).where(StandinOrder.provider == provider,
                                   StandinOrder.merchant == merchant,
                                   StandinOrder.transaction_id.is_not(None),
                                   StandinOrder.paid_at >= start, StandinOrder.paid_at < end)
        .order_by(StandinOrder.paid_at, StandinOrder.id)))
    refunds = [(r, o) for r, o in session.execute(
        select(StandinRefund, StandinOrder).join(StandinOrder,
                                                 StandinOrder.id == StandinRefund.order_id)
        .where(StandinRefund.provider == provider, StandinRefund.merchant == merchant,
               StandinRefund.status.in_(refund_statuses),
               StandinRefund.finished_at >= start, StandinRefund.finished_at < end)
        .order_by(StandinRefund.finished_at, StandinRefund.id)).tuples()]
    return DayRows(paid, refunds)


def parse_day(value: object) -> date | None:
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


# --- bills kept for download ----------------------------------------------------------

def keep_bill(redis: Redis, provider: str, content: bytes) -> str:
    token = secrets.token_urlsafe(18)
    redis.set(_bill_key(provider, token), content, ex=BILL_TTL_SECONDS)
    return token


def kept_bill(redis: Redis, provider: str, token: str) -> bytes | None:
    value = redis.get(_bill_key(provider, token))
    return bytes(value) if value is not None else None  # type: ignore[arg-type]


def _bill_key(provider: str, token: str) -> str:
    return f"standin:bill:{provider}:{token}"


# --- test faults ------------------------------------------------------------------------

def arm_fault(redis: Redis, provider: str, fault: str, times: int = 1) -> None:
    """The double's next `times` statements go wrong this way (tests only)."""
    assert fault in FAULTS
    redis.rpush(_fault_key(provider), *([fault] * times))


def take_fault(redis: Redis, provider: str) -> str | None:
    value = redis.lpop(_fault_key(provider))
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def clear_faults(redis: Redis, provider: str) -> None:
    redis.delete(_fault_key(provider))


def _fault_key(provider: str) -> str:
    return f"standin:statement-fault:{provider}"
