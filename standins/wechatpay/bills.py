"""The WeChat Pay double's trade bill (交易账单), as API v3 serves it:

    GET /v3/bill/tradebill?bill_date=YYYY-MM-DD&bill_type=ALL[&tar_type=GZIP]
        -> {"hash_type": "SHA1", "hash_value": <SHA1 of the bill, uncompressed>,
            "download_url": ".../v3/billdownload/file?token=..."}
    GET /v3/billdownload/file?token=...   the bill (gzip when asked), a signed request

The bill is CSV: a header line, one line per trade of the day with every field led by
a backtick (so spreadsheets keep long numbers as text), then a summary section (its own
header and one line of totals). A paid order is a SUCCESS line; each refund paid out
that day a REFUND line naming the refund. Amounts in yuan.
"""

from __future__ import annotations

import gzip
import hashlib
from datetime import date
from typing import Any

from adapters.resources import Resources
from domain.money import format_amount, from_minor_units
from standins import statements
from standins.models import StandinOrder
from standins.wechatpay.keys import DOUBLE_PATH, DoubleKeys
from standins.wechatpay.orders import PROVIDER, WechatError

HEADER = ",".join((
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号",
    "用户标识", "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额",
    "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态",
    "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额", "费率备注"))
SUMMARY_HEADER = ",".join((
    "总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额",
    "订单总金额", "申请退款总金额"))
FEE_RATE = "0.60%"


def request_bill(res: Resources, keys: DoubleKeys, args: dict[str, str]) -> dict[str, Any]:
    day = statements.parse_day(args.get("bill_date"))
    if day is None:
        raise WechatError(400, "PARAM_ERROR", "bill_date 应为 YYYY-MM-DD")
    if args.get("bill_type", "ALL") != "ALL":
        raise WechatError(400, "PARAM_ERROR", "本服务只提供 ALL 账单")
    tar_type = args.get("tar_type")
    if tar_type not in (None, "", "GZIP"):
        raise WechatError(400, "PARAM_ERROR", "tar_type 仅支持 GZIP")
    fault = statements.take_fault(res.redis, PROVIDER)
    if fault == "unavailable":
        raise WechatError(500, "SYSTEM_ERROR", "系统繁忙，请稍后重试")
    bill = render_bill(res, keys, day).encode("utf-8")
    digest = hashlib.sha1(bill).hexdigest()
    if fault == "hash":
        digest = hashlib.sha1(bill + b"tampered").hexdigest()
    content = gzip.compress(bill) if tar_type == "GZIP" else bill
    token = statements.keep_bill(res.redis, PROVIDER, content)
    base = res.settings.public_base_url + DOUBLE_PATH
    return {"hash_type": "SHA1", "hash_value": digest,
            "download_url": f"{base}/v3/billdownload/file?token={token}"}


def download(res: Resources, token: str | None) -> bytes:
    content = statements.kept_bill(res.redis, PROVIDER, token or "")
    if content is None:
        raise WechatError(400, "PARAM_ERROR", "下载链接已失效")
    return content


def render_bill(res: Resources, keys: DoubleKeys, day: date) -> str:
    with res.uow() as uow:
        rows = statements.day_rows(uow.session, PROVIDER, keys.mchid, day,
                                   refund_statuses=("SUCCESS",))
        lines = [HEADER]
        paid_total = refund_total = 0
        for order in rows.paid:
            paid_total += order.amount_minor
            lines.append(_line(keys, order, when=order.paid_at, state="SUCCESS",
                               total=order.amount_minor))
        for refund, order in rows.refunds:
            refund_total += refund.amount_minor
            lines.append(_line(keys, order, when=refund.finished_at, state="REFUND",
                               total=order.amount_minor, refund_no=refund.out_refund_no,
                               refund_id=refund.refund_ref, refund=refund.amount_minor))
    count = len(rows.paid) + len(rows.refunds)
    lines.append(SUMMARY_HEADER)
    lines.append(_fields([str(count), _yuan(paid_total), _yuan(refund_total), "0.00",
                          "0.00000", _yuan(paid_total), _yuan(refund_total)]))
    return "\r\n".join(lines) + "\r\n"


def _line(keys: DoubleKeys, order: StandinOrder, *, when: Any, state: str, total: int,
          refund_no: str = "0", refund_id: str = "0", refund: int = 0) -> str:
    refunding = state == "REFUND"
    return _fields([
        when.astimezone(statements.BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
        keys.appid, keys.mchid, "0", "", order.transaction_id or "", order.out_trade_no,
        "o" + (order.transaction_id or "")[-16:], "NATIVE", state, "OTHERS", order.currency,
        _yuan(0 if refunding else total), "0.00", refund_id, refund_no, _yuan(refund),
        "0.00", "ORIGINAL" if refunding else "", "SUCCESS" if refunding else "",
        order.description or "", "", "0.00000", FEE_RATE, _yuan(total),
        _yuan(refund), ""])


def _fields(values: list[str]) -> str:
    return ",".join("`" + value for value in values)


def _yuan(minor: int) -> str:
    return format_amount(from_minor_units(minor, "CNY"))
