"""The WeChat Pay double's refunds: accepted as PROCESSING, then settled at once with a
REFUND.SUCCESS notification (the real service takes seconds to days; TEST_OUTCOMES make
it REFUND.CLOSED or REFUND.ABNORMAL instead, or leave it PROCESSING, unnotified). One refund per
out_refund_no: asking again answers with the same refund, as the real one does."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from adapters.resources import Resources
from standins import notifications
from standins.models import StandinOrder, StandinRefund
from standins.wechatpay import notify
from standins.wechatpay.keys import DoubleKeys
from standins.wechatpay.notify import BEIJING, rfc3339
from standins.wechatpay.orders import OUT_TRADE_NO, PROVIDER, WechatError

# A test knob: a refund whose reason is one of these ends that way instead of SUCCESS
# (REFUND.CLOSED: refused; REFUND.ABNORMAL: the money could not reach the buyer), or,
# for PROCESSING, is not settled at all: it stays in progress and nothing is notified
# (the refund query then answers PROCESSING, as for a slow refund at the real service).
TEST_OUTCOMES = {"double:closed": "CLOSED", "double:abnormal": "ABNORMAL",
                 "double:processing": "PROCESSING"}


def create_refund(res: Resources, keys: DoubleKeys, body: dict[str, Any]) -> dict[str, Any]:
    out_trade_no, out_refund_no, refund, total = _fields(body)
    with res.uow() as uow:
        session = uow.session
        # The original payment is named by out_trade_no or by WeChat Pay's transaction_id.
        named = (StandinOrder.out_trade_no == out_trade_no if out_trade_no
                 else StandinOrder.transaction_id == body.get("transaction_id"))
        order = session.scalars(select(StandinOrder).where(
            StandinOrder.provider == PROVIDER, StandinOrder.merchant == keys.mchid,
            named).with_for_update()).first()
        if order is None:
            raise WechatError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        existing = _find(session, keys, out_refund_no)
        if existing is not None:
            if existing.order_id != order.id or existing.amount_minor != refund:
                raise WechatError(400, "INVALID_REQUEST", "退款单号已被使用，且参数不一致")
            return refund_view(order, existing, "PROCESSING" if existing.status ==
                               "SUCCESS" else existing.status)
        if order.status not in ("SUCCESS", "REFUND"):
            raise WechatError(400, "INVALID_REQUEST", "订单未支付，不能退款")
        if total != order.amount_minor:
            raise WechatError(400, "PARAM_ERROR", "订单金额与原订单不一致")
        if order.refunded_minor + refund > order.amount_minor:
            raise WechatError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        row = session.execute(insert(StandinRefund).values(
            provider=PROVIDER, merchant=keys.mchid, order_id=order.id,
            out_refund_no=out_refund_no, amount_minor=refund, status="PROCESSING",
            refund_ref="50" + "".join(secrets.choice("0123456789") for _ in range(27)),
            request_body=body).returning(StandinRefund)).scalar_one()
        answer = refund_view(order, row, "PROCESSING")
        # The double settles at once; the merchant hears it by notification, as from
        # the real service (the answer above still says PROCESSING).
        now = datetime.now(BEIJING)
        outcome = TEST_OUTCOMES.get(str(body.get("reason", "")).lower(), "SUCCESS")
        if outcome == "PROCESSING":
            uow.commit()
            return answer
        if outcome == "SUCCESS":
            session.execute(update(StandinOrder).where(StandinOrder.id == order.id).values(
                refunded_minor=StandinOrder.refunded_minor + refund, status="REFUND",
                updated_at=now))
        session.execute(update(StandinRefund).where(StandinRefund.id == row.id).values(
            status=outcome, finished_at=now, updated_at=now))
        ids = []
        notify_url = body.get("notify_url") or order.notify_url
        if notify_url:
            done = refund_view(order, row, outcome, finished_at=now)
            ids.append(notifications.queue_notification(
                session, provider=PROVIDER, url=notify_url,
                payload=notify.refund_payload(keys.mchid, done)))
        notifications.send_after_commit(res, uow, ids)
        uow.commit()
    return answer


def query_refund(res: Resources, keys: DoubleKeys, out_refund_no: str) -> dict[str, Any]:
    with res.uow() as uow:
        session = uow.session
        row = _find(session, keys, out_refund_no)
        order = session.get(StandinOrder, row.order_id) if row is not None else None
        if row is None or order is None:
            raise WechatError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return refund_view(order, row, row.status, finished_at=row.finished_at)


def refund_view(order: StandinOrder, refund: StandinRefund, status: str, *,
                finished_at: datetime | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "refund_id": refund.refund_ref, "out_refund_no": refund.out_refund_no,
        "transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
        "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
        "create_time": rfc3339(refund.created_at or datetime.now(BEIJING)),
        "status": status, "funds_account": "AVAILABLE",
        "amount": {"total": order.amount_minor, "refund": refund.amount_minor,
                   "payer_total": order.amount_minor, "payer_refund": refund.amount_minor,
                   "settlement_refund": refund.amount_minor,
                   "settlement_total": order.amount_minor, "discount_refund": 0,
                   "currency": order.currency},
    }
    if status == "SUCCESS" and finished_at is not None:
        view["success_time"] = rfc3339(finished_at)
    return view


def _fields(body: dict[str, Any]) -> tuple[str | None, str, int, int]:
    out_trade_no, out_refund_no = body.get("out_trade_no"), body.get("out_refund_no")
    if out_trade_no is None and isinstance(body.get("transaction_id"), str):
        pass  # named by transaction_id instead
    elif not isinstance(out_trade_no, str) or not OUT_TRADE_NO.fullmatch(out_trade_no):
        raise WechatError(400, "PARAM_ERROR", "out_trade_no 格式错误")
    if not isinstance(out_refund_no, str) or not OUT_TRADE_NO.fullmatch(out_refund_no):
        raise WechatError(400, "PARAM_ERROR", "out_refund_no 格式错误")
    amount = body.get("amount")
    if not isinstance(amount, dict):
        raise WechatError(400, "PARAM_ERROR", "amount 必填")
    if amount.get("currency", "CNY") != "CNY":
        raise WechatError(400, "PARAM_ERROR", "amount.currency 仅支持CNY")
    return out_trade_no, out_refund_no, _fen(amount, "refund"), _fen(amount, "total")


def _fen(amount: dict[str, Any], name: str) -> int:
    value = amount.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise WechatError(400, "PARAM_ERROR", f"amount.{name} 应为正整数（分）")
    return value


def _find(session: Session, keys: DoubleKeys, out_refund_no: str) -> StandinRefund | None:
    return session.scalars(select(StandinRefund).where(
        StandinRefund.provider == PROVIDER, StandinRefund.merchant == keys.mchid,
        StandinRefund.out_refund_no == out_refund_no)).first()
