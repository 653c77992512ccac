"""The Alipay double's bill download (对账单下载), as the open platform serves it:

    alipay.data.dataservice.bill.downloadurl.query  {bill_type: "trade", bill_date}
        -> {"code": "10000", "bill_download_url": ".../doubles/alipay/bills/<token>"}
    GET /doubles/alipay/bills/<token>   a zip of two GBK-encoded CSV files

`<app>_<yyyymmdd>_业务明细.csv` has `#` comment lines above and below the table (title,
account, period; totals, export time), one line per trade (业务类型 交易) and per
refund (退款, the refund's request number in 退款批次号/请求号, negative 商家实收),
fields padded with a tab as Alipay pads them; `..._业务明细(汇总).csv` the day's totals.
"""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, timedelta
from typing import Any

from adapters.resources import Resources
from domain.money import format_amount, from_minor_units
from standins import statements
from standins.alipay.trades import PROVIDER, SUCCESS, business_error, invalid_parameter
from standins.models import StandinOrder

DETAIL_HEADER = ",".join((
    "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号",
    "门店名称", "操作员", "终端号", "对方账户", "订单金额（元）", "商家实收（元）",
    "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）", "商家优惠（元）",
    "券核销金额（元）", "券名称", "商家红包消费金额（元）", "卡消费金额（元）",
    "退款批次号/请求号", "服务费（元）", "分润（元）", "备注"))
BILLS_PATH = "/doubles/alipay/bills/"


def download_url_query(res: Resources, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    if biz.get("bill_type") != "trade":
        return invalid_parameter("bill_type 仅支持 trade")
    day = statements.parse_day(biz.get("bill_date"))
    if day is None:
        return invalid_parameter("bill_date 应为 yyyy-MM-dd")
    if day >= datetime.now(statements.BEIJING).date() + _ONE_DAY:
        return business_error("isp.bill_not_exist", "账单不存在")
    token = statements.keep_bill(res.redis, PROVIDER, bill_zip(res, app_id, day))
    return {**SUCCESS, "bill_download_url":
            f"{res.settings.public_base_url}{BILLS_PATH}{token}"}


def download(res: Resources, token: str) -> bytes | None:
    """The zip, or None for a link that expired. An armed "unavailable" fault answers
    None too (the caller makes it a 5xx)."""
    if statements.take_fault(res.redis, PROVIDER) is not None:
        return None
    return statements.kept_bill(res.redis, PROVIDER, token)


def bill_zip(res: Resources, app_id: str, day: date) -> bytes:
    with res.uow() as uow:
        rows = statements.day_rows(uow.session, PROVIDER, app_id, day,
                                   refund_statuses=("REFUND_SUCCESS",))
        table = [DETAIL_HEADER]
        paid = refunded = 0
        for order in rows.paid:
            paid += order.amount_minor
            table.append(_line(order, order.paid_at, "交易", _yuan(order.amount_minor),
                               _yuan(order.amount_minor), ""))
        for refund, order in rows.refunds:
            refunded += refund.amount_minor
            table.append(_line(order, refund.finished_at, "退款", _yuan(order.amount_minor),
                               "-" + _yuan(refund.amount_minor), refund.out_refund_no))
    stamp = day.strftime("%Y%m%d")
    period = day.strftime("%Y年%m月%d日")
    detail = "\r\n".join([
        "#支付宝业务明细查询", f"#账号：[{app_id}]",
        f"#起始日期：[{period} 00:00:00]   终止日期：[{period} 23:59:59]",
        "#-----------------------------------------业务明细列表----------------------------------------",
        *table,
        "#-----------------------------------------业务明细列表结束------------------------------------",
        f"#交易合计：{len(rows.paid)}笔，商家实收共计：{_yuan(paid)}元，商家优惠共计：0.00元",
        f"#退款合计：{len(rows.refunds)}笔，商家实收退款共计：-{_yuan(refunded)}元，商家优惠退款共计：0.00元",
        f"#导出时间：[{datetime.now(statements.BEIJING):%Y年%m月%d日 %H:%M:%S}]", ""])
    summary = "\r\n".join([
        "#支付宝业务汇总查询", f"#账号：[{app_id}]",
        "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）",
        f"合计,,{len(rows.paid)},{len(rows.refunds)},{_yuan(paid)},{_yuan(paid - refunded)}",
        f"#导出时间：[{datetime.now(statements.BEIJING):%Y年%m月%d日 %H:%M:%S}]", ""])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{app_id}_{stamp}_业务明细.csv", detail.encode("gbk"))
        archive.writestr(f"{app_id}_{stamp}_业务明细(汇总).csv", summary.encode("gbk"))
    return buffer.getvalue()


def _line(order: StandinOrder, when: datetime | None, kind: str, amount: str, received: str,
          request_no: str) -> str:
    at = when.astimezone(statements.BEIJING).strftime("%Y-%m-%d %H:%M:%S") if when else ""
    created = order.created_at.astimezone(statements.BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    cells = [order.transaction_id or "", order.out_trade_no, kind, order.description or "",
             created, at, "", "", "", "", "buy***@example.com", amount, received, "0.00",
             "0.00", "0.00", "0.00", "0.00", "", "0.00", "0.00", request_no, "0.00", "0.00",
             ""]
    # Alipay pads text fields with a tab so spreadsheets keep long numbers as text.
    return ",".join(cell + "\t" if index in _PADDED else cell
                    for index, cell in enumerate(cells))


_PADDED = frozenset({0, 1, 2, 3, 6, 7, 8, 9, 10, 18, 21})
_ONE_DAY = timedelta(days=1)


def _yuan(minor: int) -> str:
    return format_amount(from_minor_units(minor, "CNY"))
