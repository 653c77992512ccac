"""WeChat Pay's trade bill (交易账单, bill_type ALL) as our statement lines. Pure.

The bill is CSV: a header line, one line per trade, then a summary section that starts
with its own header (总交易单数,...). Every field of the data lines is led by a backtick
(WeChat Pay's way of keeping spreadsheets from reading long numbers as numbers), which
is dropped here. Columns are found by their names, not their places, so a column WeChat
Pay adds does not shift the others. A SUCCESS line is a payment (订单金额, in yuan); a
REFUND line with 退款状态 SUCCESS is a refund (申请退款金额, what the merchant asked
back, falling back to 退款金额). REVOKED and other lines are not money that moved.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from domain.statements import (
    LineKind,
    Statement,
    StatementLine,
    StatementUnavailable,
    beijing_time,
)

PROVIDER = "wechatpay"
SUMMARY_FIRST_COLUMN = "总交易单数"
REQUIRED = ("交易状态", "微信订单号", "商户订单号", "货币种类")


def check_hash(bill: bytes, hash_type: object, hash_value: object) -> None:
    """The announced digest of the (uncompressed) bill must be its own."""
    if hash_type != "SHA1" or not isinstance(hash_value, str) or not hash_value:
        raise StatementUnavailable(PROVIDER, f"unsupported bill hash {hash_type!r}")
    if not hmac.compare_digest(hashlib.sha1(bill).hexdigest(), hash_value.lower()):
        raise StatementUnavailable(PROVIDER, "the bill does not match its SHA1 hash_value")


def parse_trade_bill(bill: bytes, day: date) -> Statement:
    try:
        text = bill.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _unreadable("the bill is not UTF-8") from None
    rows = [[_cell(c) for c in row] for row in csv.reader(text.splitlines()) if row]
    if not rows:
        raise _unreadable("the bill is empty (not even a header)")
    header, *data = rows
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise _unreadable(f"the header lacks {', '.join(missing)}")
    lines: list[StatementLine] = []
    for row in data:
        if row[0] == SUMMARY_FIRST_COLUMN:
            break  # the summary section: totals, not trades
        if len(row) != len(header):
            raise _unreadable(f"a line of {len(row)} fields under {len(header)} columns")
        line = _line(dict(zip(header, row, strict=True)))
        if line is not None:
            lines.append(line)
    return Statement(PROVIDER, day, tuple(lines))


def _line(fields: dict[str, str]) -> StatementLine | None:
    state = fields["交易状态"]
    currency = fields["货币种类"] or "CNY"
    if state == "SUCCESS":
        return StatementLine(LineKind.PAYMENT, _amount(fields, "订单金额", "应结订单金额"),
                             currency, fields["微信订单号"] or None,
                             out_trade_no=fields["商户订单号"] or None,
                             succeeded_at=_time(fields))
    if state == "REFUND" and fields.get("退款状态") == "SUCCESS":
        return StatementLine(LineKind.REFUND, _amount(fields, "申请退款金额", "退款金额"),
                             currency, fields["微信订单号"] or None,
                             out_trade_no=fields["商户订单号"] or None,
                             out_refund_no=fields.get("商户退款单号") or None,
                             refund_reference=fields.get("微信退款单号") or None,
                             succeeded_at=_time(fields))
    return None


def _time(fields: dict[str, str]) -> datetime | None:
    """交易时间: the line's time in the bill (a refund line's is the refund's)."""
    raw = fields.get("交易时间")
    try:
        return beijing_time(raw)
    except ValueError:
        raise _unreadable(f"交易时间 {raw!r} is not a time") from None


def _cell(raw: str) -> str:
    value = raw.strip()
    return value[1:] if value.startswith("`") else value


def _amount(fields: dict[str, str], *names: str) -> Decimal:
    for name in names:
        raw = fields.get(name)
        if raw:
            try:
                amount = Decimal(raw)
            except InvalidOperation:
                raise _unreadable(f"{name} {raw!r} is not an amount") from None
            if amount.is_finite() and amount > 0:
                return amount
    raise _unreadable(f"a line without a positive {' or '.join(names)}")


def _unreadable(detail: str) -> StatementUnavailable:
    return StatementUnavailable(PROVIDER, f"unreadable trade bill: {detail}")
