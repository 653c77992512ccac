"""Comparing a provider's statement of a day with our books of that day (issue #17). Pure.

What the provider took or paid out, line by line, against our payments and refunds:

- at the provider, not succeeded here: APPLY, through the very settlement a callback
  goes through (the service does it; a lost notification is caught within a day);
- at the provider, unknown here (a reference we never issued): FLAG `unknown_here`;
- succeeded here that day, absent from the statement: FLAG `missing_at_provider`
  ("that day" by the provider's time of the success where we know it, else ours: the
  service's books, services/reconciliation/books.py, say why);
- on both with another currency, amount or transaction id: FLAG the first difference;
- refunds likewise (a refund we hold as failed that the provider paid out is
  `status_mismatch`: a person decides, nothing is applied).
Anything else matches and is only counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from domain.statements import LineKind, StatementLine
from domain.statuses import PAID_PAYMENT_STATUSES, PaymentStatus, RefundStatus


class Action(StrEnum):
    MATCH = "match"
    APPLY = "apply"
    FLAG = "flag"


class Kind(StrEnum):
    """What differs. Also the `kind` label of payments_reconciliation_mismatches_total."""

    MISSING_HERE = "missing_here"  # the provider has it; we had not applied it
    UNKNOWN_HERE = "unknown_here"  # the provider names a reference we never issued
    MISSING_AT_PROVIDER = "missing_at_provider"
    AMOUNT_MISMATCH = "amount_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"
    TRANSACTION_ID_MISMATCH = "transaction_id_mismatch"
    STATUS_MISMATCH = "status_mismatch"


class ItemStatus(StrEnum):
    APPLIED = "applied"  # a success the provider reported, applied by the run
    FLAGGED = "flagged"  # for a person to look at


@dataclass(frozen=True)
class OurPayment:
    id: int
    out_trade_no: str | None
    status: PaymentStatus
    amount: Decimal
    currency: str
    transaction_id: str | None
    paid_that_day: bool  # its success is in the day's books (provider_paid_at, else paid_at)


@dataclass(frozen=True)
class OurRefund:
    id: int
    payment_id: int
    out_refund_no: str | None
    status: RefundStatus
    amount: Decimal
    currency: str
    provider_refund_id: str | None
    completed_that_day: bool


@dataclass(frozen=True)
class Finding:
    action: Action
    object: LineKind
    kind: Kind | None = None  # None for a match
    line: StatementLine | None = None  # None when the provider has nothing
    payment: OurPayment | None = None
    refund: OurRefund | None = None

    @property
    def reference(self) -> str:
        """The merchant reference the finding is about, as an operator searches for it."""
        if self.object is LineKind.REFUND:
            if self.refund is not None and self.refund.out_refund_no:
                return self.refund.out_refund_no
            return self.line.refund_key if self.line else f"refund {self.refund_id}"
        if self.payment is not None and self.payment.out_trade_no:
            return self.payment.out_trade_no
        return self.line.payment_key if self.line else f"payment {self.payment_id}"

    @property
    def payment_id(self) -> int | None:
        if self.payment is not None:
            return self.payment.id
        return self.refund.payment_id if self.refund is not None else None

    @property
    def refund_id(self) -> int | None:
        return self.refund.id if self.refund is not None else None

    @property
    def key(self) -> tuple[str, str, str]:
        """Identifies the same discrepancy in a re-run of the day (announced once)."""
        return (self.object.value, self.kind.value if self.kind else "", self.reference)


class Books:
    """Our side, indexed the ways a statement line may name a payment or refund."""

    def __init__(self, payments: Iterable[OurPayment], refunds: Iterable[OurRefund]) -> None:
        self.payments = {p.id: p for p in payments}
        self.refunds = {r.id: r for r in refunds}
        self._by_trade_no = {p.out_trade_no: p for p in self.payments.values()
                             if p.out_trade_no}
        self._by_refund_no = {r.out_refund_no: r for r in self.refunds.values()
                              if r.out_refund_no}

    def payment_for(self, line: StatementLine) -> OurPayment | None:
        if line.payment_id is not None:
            return self.payments.get(line.payment_id)
        return self._by_trade_no.get(line.out_trade_no or "")

    def refund_for(self, line: StatementLine) -> OurRefund | None:
        if line.refund_id is not None:
            return self.refunds.get(line.refund_id)
        return self._by_refund_no.get(line.out_refund_no or "")


def compare(lines: Sequence[StatementLine], books: Books) -> list[Finding]:
    """One finding per statement line, then one per success of the day the statement
    lacks. `books` holds the day's successes and whatever the lines name."""
    findings: list[Finding] = []
    seen_payments: set[int] = set()
    seen_refunds: set[int] = set()
    for line in lines:
        if line.kind is LineKind.PAYMENT:
            payment = books.payment_for(line)
            if payment is not None:
                seen_payments.add(payment.id)
            findings.append(_payment_finding(line, payment))
        else:
            refund = books.refund_for(line)
            if refund is not None:
                seen_refunds.add(refund.id)
            findings.append(_refund_finding(line, refund))
    for payment in books.payments.values():
        if (payment.paid_that_day and payment.id not in seen_payments
                and payment.status in PAID_PAYMENT_STATUSES):
            findings.append(Finding(Action.FLAG, LineKind.PAYMENT, Kind.MISSING_AT_PROVIDER,
                                    payment=payment))
    for refund in books.refunds.values():
        if (refund.completed_that_day and refund.id not in seen_refunds
                and refund.status is RefundStatus.SUCCEEDED):
            findings.append(Finding(Action.FLAG, LineKind.REFUND, Kind.MISSING_AT_PROVIDER,
                                    refund=refund))
    return findings


def _payment_finding(line: StatementLine, payment: OurPayment | None) -> Finding:
    if payment is None:
        return Finding(Action.FLAG, LineKind.PAYMENT, Kind.UNKNOWN_HERE, line=line)
    if payment.status not in PAID_PAYMENT_STATUSES:
        # The settlement decides (and refuses another amount as a callback's would).
        return Finding(Action.APPLY, LineKind.PAYMENT, Kind.MISSING_HERE, line=line,
                       payment=payment)
    difference = _difference(line, payment.currency, payment.amount)
    if difference is None and line.transaction_id and payment.transaction_id \
            and line.transaction_id != payment.transaction_id:
        difference = Kind.TRANSACTION_ID_MISMATCH
    if difference is None:
        return Finding(Action.MATCH, LineKind.PAYMENT, line=line, payment=payment)
    return Finding(Action.FLAG, LineKind.PAYMENT, difference, line=line, payment=payment)


def _refund_finding(line: StatementLine, refund: OurRefund | None) -> Finding:
    if refund is None:
        return Finding(Action.FLAG, LineKind.REFUND, Kind.UNKNOWN_HERE, line=line)
    if refund.status in (RefundStatus.PENDING, RefundStatus.PROCESSING):
        return Finding(Action.APPLY, LineKind.REFUND, Kind.MISSING_HERE, line=line,
                       refund=refund)
    if refund.status is RefundStatus.FAILED:
        return Finding(Action.FLAG, LineKind.REFUND, Kind.STATUS_MISMATCH, line=line,
                       refund=refund)
    difference = _difference(line, refund.currency, refund.amount)
    if difference is None and line.refund_reference and refund.provider_refund_id \
            and line.refund_reference != refund.provider_refund_id:
        difference = Kind.TRANSACTION_ID_MISMATCH
    if difference is None:
        return Finding(Action.MATCH, LineKind.REFUND, line=line, refund=refund)
    return Finding(Action.FLAG, LineKind.REFUND, difference, line=line, refund=refund)


def _difference(line: StatementLine, currency: str, amount: Decimal) -> Kind | None:
    if line.currency != currency:
        return Kind.CURRENCY_MISMATCH
    if line.amount != amount:  # Decimals compare by value: 88.8 == 88.80
        return Kind.AMOUNT_MISMATCH
    return None
