"""domain/reconciliation.py: what a statement line and our books make of each other."""

from __future__ import annotations

from decimal import Decimal

from domain.reconciliation import Action, Books, Kind, OurPayment, OurRefund, compare
from domain.statements import LineKind, StatementLine
from domain.statuses import PaymentStatus, RefundStatus


def paid(pid: int, amount: str = "88.80", status: PaymentStatus = PaymentStatus.SUCCEEDED,
         *, that_day: bool = True, txn: str | None = "T1") -> OurPayment:
    return OurPayment(pid, f"P{pid:010d}", status, Decimal(amount), "CNY", txn, that_day)


def line(pid: int, amount: str = "88.80", currency: str = "CNY", txn: str = "T1"
         ) -> StatementLine:
    return StatementLine(LineKind.PAYMENT, Decimal(amount), currency, txn,
                         out_trade_no=f"P{pid:010d}")


def refund(rid: int, status: RefundStatus, amount: str = "8.80", *,
           that_day: bool = True) -> OurRefund:
    return OurRefund(rid, 1, f"R{rid:010d}", status, Decimal(amount), "CNY", None, that_day)


def refund_line(rid: int, amount: str = "8.80") -> StatementLine:
    return StatementLine(LineKind.REFUND, Decimal(amount), "CNY", "T1",
                         out_trade_no="P0000000001", out_refund_no=f"R{rid:010d}")


def verdicts(lines, payments=(), refunds=()) -> list[tuple[Action, Kind | None, str]]:
    return [(f.action, f.kind, f.reference)
            for f in compare(lines, Books(payments, refunds))]


def test_the_same_on_both_sides_matches_whatever_the_decimals_look_like():
    assert verdicts([line(1, "88.8")], [paid(1)]) == [
        (Action.MATCH, None, "P0000000001")]
    # Refunded since (in part or whole): still the payment the statement took.
    assert verdicts([line(1)], [paid(1, status=PaymentStatus.REFUNDED)])[0][0] is Action.MATCH


def test_paid_there_not_here_is_applied_and_unknown_there_is_flagged():
    for status in (PaymentStatus.PROCESSING, PaymentStatus.EXPIRED, PaymentStatus.INIT):
        assert verdicts([line(1)], [paid(1, status=status, txn=None)]) == [
            (Action.APPLY, Kind.MISSING_HERE, "P0000000001")]
    assert verdicts([line(9)]) == [(Action.FLAG, Kind.UNKNOWN_HERE, "P0000000009")]


def test_succeeded_here_that_day_and_absent_there_is_flagged_other_days_are_not():
    assert verdicts([], [paid(1), paid(2, that_day=False)]) == [
        (Action.FLAG, Kind.MISSING_AT_PROVIDER, "P0000000001")]


def test_a_difference_is_flagged_by_the_first_that_differs():
    assert verdicts([line(1, currency="USD", amount="1.00")], [paid(1)])[0][1] is \
        Kind.CURRENCY_MISMATCH
    assert verdicts([line(1, amount="99.00")], [paid(1)])[0][1] is Kind.AMOUNT_MISMATCH
    assert verdicts([line(1, txn="T2")], [paid(1)])[0][1] is Kind.TRANSACTION_ID_MISMATCH


def test_refunds_likewise():
    assert verdicts([refund_line(3)], refunds=[refund(3, RefundStatus.PROCESSING)]) == [
        (Action.APPLY, Kind.MISSING_HERE, "R0000000003")]
    assert verdicts([refund_line(3)], refunds=[refund(3, RefundStatus.SUCCEEDED)])[0][0] is \
        Action.MATCH
    assert verdicts([refund_line(3, "9.99")], refunds=[refund(3, RefundStatus.SUCCEEDED)]
                    )[0][1] is Kind.AMOUNT_MISMATCH
    assert verdicts([refund_line(3)], refunds=[refund(3, RefundStatus.FAILED)])[0][1] is \
        Kind.STATUS_MISMATCH
    assert verdicts([refund_line(4)]) == [(Action.FLAG, Kind.UNKNOWN_HERE, "R0000000004")]
    assert verdicts([], refunds=[refund(5, RefundStatus.SUCCEEDED),
                                 refund(6, RefundStatus.SUCCEEDED, that_day=False),
                                 refund(7, RefundStatus.PROCESSING)]) == [
        (Action.FLAG, Kind.MISSING_AT_PROVIDER, "R0000000005")]
