"""Alipay's trade bill (对账单, bill_type trade) as our statement lines. Pure.

The download is a zip of CSV files in GBK: the detail file (`..._业务明细.csv`) and a
summary (`..._业务明细(汇总).csv`, not read: its totals are the detail's sums). The
detail has `#` comment lines above and below the table (title, account, period;
totals, export time); Alipay pads fields with tabs, stripped here. Zip member names are
GBK too, without the zip's UTF-8 flag, so they are read back as GBK. Columns are found
by name (with or without their "（元）" unit). A 交易 line is a payment (订单金额); a 退款
line a refund (退款批次号/请求号 is our out_request_no = out_refund_no; its amount is the
negative 商家实收 turned positive).
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from domain.statements import (
    LineKind,
    Statement,
    StatementLine,
    StatementUnavailable,
    beijing_time,
)

PROVIDER = "alipay"
CURRENCY = "CNY"
DETAIL_SUFFIX = "_业务明细.csv"
REQUIRED = ("支付宝交易号", "商户订单号", "业务类型", "订单金额", "商家实收", "退款批次号/请求号")
MAX_BILL_BYTES = 64 * 1024 * 1024  # unzipped: a bound against a zip bomb


def parse_bill_zip(content: bytes, day: date) -> Statement:
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile:
        raise _unreadable("the download is not a zip") from None
    with archive:
        details = [info for info in archive.infolist()
                   if _member_name(info).endswith(DETAIL_SUFFIX)]
        if len(details) != 1:
            raise _unreadable(f"{len(details)} detail files (*{DETAIL_SUFFIX}) in the zip")
        if details[0].file_size > MAX_BILL_BYTES:
            raise _unreadable("the detail file is too large")
        raw = archive.read(details[0])
    return parse_detail_csv(raw, day)


def parse_detail_csv(raw: bytes, day: date) -> Statement:
    text = _decode(raw)
    table = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    rows = [[cell.strip() for cell in row] for row in csv.reader(table)]
    if not rows:
        raise _unreadable("the detail file has no header")
    header = [_column(name) for name in rows[0]]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise _unreadable(f"the header lacks {', '.join(missing)}")
    lines: list[StatementLine] = []
    for row in rows[1:]:
        if len(row) != len(header):
            raise _unreadable(f"a line of {len(row)} fields under {len(header)} columns")
        fields = dict(zip(header, row, strict=True))
        kind = fields["业务类型"]
        trade_no = fields["支付宝交易号"] or None
        out_trade_no = fields["商户订单号"] or None
        if kind == "交易":
            lines.append(StatementLine(LineKind.PAYMENT, _amount(fields, "订单金额"), CURRENCY,
                                       trade_no, out_trade_no=out_trade_no,
                                       succeeded_at=_time(fields)))
        elif kind == "退款":
            lines.append(StatementLine(LineKind.REFUND, abs(_amount(fields, "商家实收")),
                                       CURRENCY, trade_no, out_trade_no=out_trade_no,
                                       out_refund_no=fields["退款批次号/请求号"] or None,
                                       succeeded_at=_time(fields)))
    return Statement(PROVIDER, day, tuple(lines))


def _member_name(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & 0x800:  # the name is UTF-8 (and zipfile read it so)
        return info.filename
    try:  # zipfile read the bytes as cp437; Alipay wrote GBK
        return info.filename.encode("cp437").decode("gbk")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _decode(raw: bytes) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw.decode("utf-8-sig")
    try:
        return raw.decode("gb18030")  # a superset of GBK: every GBK file reads the same
    except UnicodeDecodeError:
        raise _unreadable("the detail file is not GBK") from None


def _column(name: str) -> str:
    return name.strip().replace("（元）", "").replace("(元)", "")


def _time(fields: dict[str, str]) -> datetime | None:
    """完成时间: when the trade or refund went through (a bill without the column has
    none; the reconciliation then dates the line by the bill's day)."""
    raw = fields.get("完成时间")
    try:
        return beijing_time(raw)
    except ValueError:
        raise _unreadable(f"完成时间 {raw!r} is not a time") from None


def _amount(fields: dict[str, str], name: str) -> Decimal:
    raw = fields[name]
    try:
        amount = Decimal(raw)
    except InvalidOperation:
        raise _unreadable(f"{name} {raw!r} is not an amount") from None
    if not amount.is_finite() or amount == 0:
        raise _unreadable(f"{name} {raw!r} is not an amount of money")
    return amount


def _unreadable(detail: str) -> StatementUnavailable:
    return StatementUnavailable(PROVIDER, f"unreadable bill: {detail}")
