"""The pretend Alipay's refunds: alipay.trade.refund (synchronous: the answer is the
outcome) and alipay.trade.fastpay.refund.query. One refund per out_request_no: asked
again with the same number and amount, no money moves and the answer says
fund_change "N"; the same number with another amount is refused.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select

from adapters.resources import Resources
from domain.money import to_minor_units
from services.transitions import utc_now
from standins.alipay import notify
from standins.alipay.trades import (
    BUYER,
    CURRENCY,
    PROVIDER,
    SUCCESS,
    amount_value,
    business_error,
    find_order,
    invalid_parameter,
    yuan,
)
from standins.models import StandinRefund
from standins.notifications import send_after_commit


def refund(res: Resources, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    amount = amount_value(biz.get("refund_amount"))
    if amount is None:
        return invalid_parameter("refund_amount must be yuan with at most two decimals")
    minor = to_minor_units(amount, CURRENCY)
    with res.uow() as uow:
        session = uow.session
        order = find_order(session, app_id, biz.get("out_trade_no"))
        if order is None or order.status == "PRECREATED":
            return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        request_no = str(biz.get("out_request_no") or order.out_trade_no)
        base = {"trade_no": order.transaction_id, "out_trade_no": order.out_trade_no,
                **BUYER}
        existing = session.scalars(select(StandinRefund).where(
            StandinRefund.provider == PROVIDER, StandinRefund.merchant == app_id,
            StandinRefund.out_refund_no == request_no)).one_or_none()
        if existing is not None:
            if existing.amount_minor != minor or existing.order_id != order.id:
                return business_error("ACQ.DISCORDANT_REPEAT_REQUEST", "请求信息不一致")
            # Already refunded: no money moves this time.
            return {**SUCCESS, **base, "fund_change": "N",
                    "refund_fee": yuan(order.refunded_minor)}
        refusal = (order.request_body or {}).get("test_refund_refusal")
        if refusal:
            return business_error(str(refusal), "测试: 退款被拒绝")
        if order.status != "TRADE_SUCCESS":
            return business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if order.refunded_minor + minor > order.amount_minor:
            return business_error("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额无效")
        now = utc_now(session)
        session.add(StandinRefund(
            provider=PROVIDER, merchant=app_id, order_id=order.id, out_refund_no=request_no,
            refund_ref=request_no + "-" + secrets.token_hex(4), amount_minor=minor,
            status="REFUND_SUCCESS", request_body=biz, finished_at=now))
        order.refunded_minor += minor
        order.updated_at = now
        if order.refunded_minor == order.amount_minor:
            order.status = "TRADE_CLOSED"
        answer = {**SUCCESS, **base, "fund_change": "Y",
                  "refund_fee": yuan(order.refunded_minor),
                  "gmt_refund_pay": notify.beijing(now), "send_back_fee": yuan(minor)}
        if order.notify_url:
            notification_id = notify.queue_refund_notification(session, order, request_no,
                                                               now=now)
            send_after_commit(res, uow, [notification_id])
        uow.commit()
    return answer


def refund_query(res: Resources, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    """Found: refund_status REFUND_SUCCESS. Not found: a plain 10000 with no refund data,
    which Alipay means as "not refunded"."""
    with res.uow() as uow:
        session = uow.session
        order = find_order(session, app_id, biz.get("out_trade_no"), lock=False)
        if order is None:
            return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        request_no = str(biz.get("out_request_no") or "")
        row = session.scalars(select(StandinRefund).where(
            StandinRefund.provider == PROVIDER, StandinRefund.merchant == app_id,
            StandinRefund.order_id == order.id,
            StandinRefund.out_refund_no == request_no)).one_or_none()
        if row is None:
            return {**SUCCESS, "out_trade_no": order.out_trade_no}
        return {**SUCCESS, "trade_no": order.transaction_id, "out_trade_no": order.out_trade_no,
                "out_request_no": request_no, "total_amount": yuan(order.amount_minor),
                "refund_amount": yuan(row.amount_minor), "refund_status": row.status}
