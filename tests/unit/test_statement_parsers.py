"""The statement parsers on fixed sample files (tests/fixtures/reconciliation/), and the
quirks each provider's files have."""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.providers.alipay.statement import parse_bill_zip, parse_detail_csv
from adapters.providers.sandbox.statement import parse_statement
from adapters.providers.wechatpay.statement import check_hash, parse_trade_bill
from domain.statements import BEIJING, LineKind, StatementLine, StatementUnavailable

FIXTURES = Path(__file__).parent.parent / "fixtures" / "reconciliation"
DAY = date(2026, 11, 30)


def _beijing(*parts: int) -> datetime:
    """A bill's time (each provider writes Beijing time, no offset), as the line has it."""
    return datetime(*parts, tzinfo=BEIJING)
WECHAT_BILL = (FIXTURES / "wechatpay_tradebill_2026-11-30.csv").read_bytes()
ALIPAY_ZIP = (FIXTURES / "alipay_bill_2026-11-30.zip").read_bytes()
ALIPAY_DETAIL = (FIXTURES / "alipay_detail_2026-11-30.csv").read_bytes()


def test_the_wechatpay_bill_gives_its_successes_and_finished_refunds_without_backticks():
    statement = parse_trade_bill(WECHAT_BILL, DAY)

    assert statement.lines == (
        StatementLine(LineKind.PAYMENT, Decimal("88.80"), "CNY",
                      "4200000001202611300000000001", out_trade_no="P0000000101",
                      succeeded_at=_beijing(2026, 11, 30, 9, 15, 2)),
        # 订单金额, what the buyer was charged in all, not 应结 (less the coupon).
        StatementLine(LineKind.PAYMENT, Decimal("100.00"), "CNY",
                      "4200000001202611300000000002", out_trade_no="P0000000102",
                      succeeded_at=_beijing(2026, 11, 30, 11, 40, 51)),
        # REVOKED is no money; a refund still PROCESSING is not paid out yet.
        StatementLine(LineKind.REFUND, Decimal("30.00"), "CNY",
                      "4200000001202611290000000009", out_trade_no="P0000000099",
                      out_refund_no="R0000000007",
                      refund_reference="50300000012026113000000000001",
                      succeeded_at=_beijing(2026, 11, 30, 18, 30, 0)),
    )


def test_the_wechatpay_bill_is_believed_only_with_its_own_sha1():
    check_hash(WECHAT_BILL, "SHA1", hashlib.sha1(WECHAT_BILL).hexdigest().upper())
    with pytest.raises(StatementUnavailable, match="does not match"):
        check_hash(WECHAT_BILL + b"`1", "SHA1", hashlib.sha1(WECHAT_BILL).hexdigest())
    with pytest.raises(StatementUnavailable, match="unsupported"):
        check_hash(WECHAT_BILL, "MD5", hashlib.md5(WECHAT_BILL).hexdigest())
    # The hash is of the bill itself, not of its gzip.
    with pytest.raises(StatementUnavailable):
        check_hash(WECHAT_BILL, "SHA1", hashlib.sha1(gzip.compress(WECHAT_BILL)).hexdigest())


def test_a_wechatpay_bill_read_by_column_name_not_place():
    header, *rest = WECHAT_BILL.decode().split("\r\n")
    columns = header.split(",")
    order = list(reversed(range(len(columns))))
    def reorder(line: str) -> str:
        cells = line.split(",")
        return ",".join(cells[i] for i in order) if len(cells) == len(columns) else line
    shuffled = "\r\n".join([reorder(header), *map(reorder, rest)]).encode()
    assert parse_trade_bill(shuffled, DAY) == parse_trade_bill(WECHAT_BILL, DAY)


@pytest.mark.parametrize(("bill", "problem"), [
    (b"", "empty"),
    ("交易时间,商户号\r\n`x,`y\r\n".encode(), "lacks"),
    (WECHAT_BILL.replace(b"`88.80,`0.00,`", b"`88.80,`"), "fields under"),
    (WECHAT_BILL.replace(b"`0.60%,`88.80,", b"`0.60%,`abc,"), "amount"),
    (b"\xff\xfe", "UTF-8"),
])
def test_a_wechatpay_bill_that_does_not_read_is_not_a_statement(bill, problem):
    with pytest.raises(StatementUnavailable, match=problem):
        parse_trade_bill(bill, DAY)


ALIPAY_LINES = (
    StatementLine(LineKind.PAYMENT, Decimal("88.80"), "CNY", "2026113022001400000000000001",
                  out_trade_no="P0000000201",
                  succeeded_at=_beijing(2026, 11, 30, 10, 0, 9)),
    StatementLine(LineKind.PAYMENT, Decimal("1200.00"), "CNY",
                  "2026113022001400000000000002", out_trade_no="P0000000202",
                  succeeded_at=_beijing(2026, 11, 30, 13, 21, 52)),
    StatementLine(LineKind.REFUND, Decimal("25.50"), "CNY", "2026112922001400000000000009",
                  out_trade_no="P0000000199", out_refund_no="R0000000031",
                  succeeded_at=_beijing(2026, 11, 30, 15, 3, 11)),
)


def test_the_alipay_zip_gives_its_trades_and_refunds_from_the_gbk_detail_file():
    # The member names are GBK without the UTF-8 flag; comment lines and tabs dropped.
    assert parse_bill_zip(ALIPAY_ZIP, DAY).lines == ALIPAY_LINES
    assert parse_detail_csv(ALIPAY_DETAIL, DAY).lines == ALIPAY_LINES


def test_an_alipay_detail_file_in_utf8_with_a_bom_reads_the_same():
    utf8 = b"\xef\xbb\xbf" + ALIPAY_DETAIL.decode("gbk").encode("utf-8")
    assert parse_detail_csv(utf8, DAY).lines == ALIPAY_LINES


def _zip(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(("content", "problem"), [
    (b"not a zip", "not a zip"),
    (_zip(**{"x_20261130_业务明细(汇总).csv": b"#"}), "0 detail files"),
    (_zip(**{"x_20261130_业务明细.csv": "#只有注释\r\n".encode("gbk")}), "no header"),
    (_zip(**{"x_20261130_业务明细.csv": "商户订单号,业务类型\r\nP1,交易\r\n".encode("gbk")}),
     "lacks"),
])
def test_an_alipay_download_that_does_not_read_is_not_a_statement(content, problem):
    with pytest.raises(StatementUnavailable, match=problem):
        parse_bill_zip(content, DAY)


def test_the_sandbox_statement_names_our_ids():
    statement = parse_statement({
        "date": "2026-11-30",
        "payments": [{"merchant_payment_id": 42, "reference": "tkt_1", "transaction_id":
                      "txn_1", "amount": "88.80", "currency": "CNY"}],
        "refunds": [{"merchant_refund_id": 7, "merchant_payment_id": 42, "reference": "rfd_1",
                     "amount": "8.80", "currency": "CNY"}]}, DAY)
    assert statement.lines == (
        StatementLine(LineKind.PAYMENT, Decimal("88.80"), "CNY", "txn_1", payment_id=42),
        StatementLine(LineKind.REFUND, Decimal("8.80"), "CNY", None, payment_id=42,
                      refund_id=7, refund_reference="rfd_1"))
    with pytest.raises(StatementUnavailable, match="not of 2026-11-30"):
        parse_statement({"date": "2026-11-29", "payments": [], "refunds": []}, DAY)
