"""A provider's statement of one day, in our terms (issue #17). Pure.

Every connector turns its provider's own statement (WeChat Pay's trade bill, Alipay's
bill zip, the sandbox's JSON) into these lines: one per payment the provider took and
one per refund it paid out that day. The provider names our payment and refund by the
merchant references we sent (out_trade_no / out_refund_no), the sandbox by our ids.
A line carries the provider's time of the success where its statement gives one (the
reconciliation records it on what it applies, so later days' books place it right).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum


class LineKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


@dataclass(frozen=True)
class StatementLine:
    kind: LineKind
    amount: Decimal  # this payment's, or this refund's, in the currency's units
    currency: str
    transaction_id: str | None  # the provider's id of the payment
    out_trade_no: str | None = None
    payment_id: int | None = None  # the sandbox names our ids instead of references
    out_refund_no: str | None = None
    refund_id: int | None = None
    refund_reference: str | None = None  # the provider's id of the refund
    succeeded_at: datetime | None = None  # the provider's time of it, when the line says

    @property
    def payment_key(self) -> str:
        """How the line names its payment, for messages and the items' `reference`."""
        return self.out_trade_no or f"payment {self.payment_id}"

    @property
    def refund_key(self) -> str:
        return self.out_refund_no or f"refund {self.refund_id}"


@dataclass(frozen=True)
class Statement:
    provider: str
    day: date
    lines: tuple[StatementLine, ...]

    def of_kind(self, kind: LineKind) -> list[StatementLine]:
        return [line for line in self.lines if line.kind is kind]


# WeChat Pay and Alipay write their bills' times in Beijing time, without an offset.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
LOCAL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def beijing_time(raw: str | None) -> datetime | None:
    """A bill's "yyyy-MM-dd HH:mm:ss" as an aware time; None when the cell is empty.
    Raises ValueError on anything else (the parser calls the bill unreadable)."""
    if not raw or not raw.strip():
        return None
    return datetime.strptime(raw.strip(), LOCAL_TIME_FORMAT).replace(tzinfo=BEIJING)


class StatementUnavailable(Exception):
    """The statement could not be fetched, or what came back cannot be trusted (a hash
    that does not match, an unreadable file): the run fails with this reason and
    touches nothing; it is tried again later."""

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
