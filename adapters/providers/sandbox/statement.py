"""The sandbox's daily statement (standins/sandbox/statements.py) as our lines. Pure."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.ids import parse_positive_id
from domain.statements import LineKind, Statement, StatementLine, StatementUnavailable

PROVIDER = "sandbox"


def parse_statement(body: dict[str, Any], day: date) -> Statement:
    if body.get("date") != day.isoformat():
        raise _unreadable(f"a statement of {body.get('date')!r}, not of {day.isoformat()}")
    lines: list[StatementLine] = []
    for row in _rows(body, "payments"):
        lines.append(StatementLine(
            LineKind.PAYMENT, amount=_amount(row.get("amount")),
            currency=_text(row, "currency"), transaction_id=_text(row, "transaction_id"),
            payment_id=_id(row, "merchant_payment_id"), succeeded_at=_time(row)))
    for row in _rows(body, "refunds"):
        lines.append(StatementLine(
            LineKind.REFUND, amount=_amount(row.get("amount")),
            currency=_text(row, "currency"), transaction_id=None,
            payment_id=_id(row, "merchant_payment_id"), refund_id=_id(row, "merchant_refund_id"),
            refund_reference=_text(row, "reference"), succeeded_at=_time(row)))
    return Statement(PROVIDER, day, tuple(lines))


def _rows(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    rows = body.get(name)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise _unreadable(f"{name} is not a list of objects")
    return rows


def _text(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value:
        raise _unreadable(f"a line without {name}")
    return value


def _id(row: dict[str, Any], name: str) -> int:
    value = parse_positive_id(row.get(name))
    if value is None:
        raise _unreadable(f"a line without a valid {name}")
    return value


def _time(row: dict[str, Any]) -> datetime | None:
    """The line's `succeeded_at` (ISO 8601 with its offset), when the line has one."""
    value = row.get("succeeded_at")
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _unreadable(f"succeeded_at {value!r} is not a time with its offset")
    return parsed


def _amount(value: object) -> Decimal:
    try:
        amount = Decimal(value) if isinstance(value, str) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount <= 0:
        raise _unreadable(f"amount {value!r} is not a positive decimal string")
    return amount


def _unreadable(detail: str) -> StatementUnavailable:
    return StatementUnavailable(PROVIDER, f"unreadable statement: {detail}")
