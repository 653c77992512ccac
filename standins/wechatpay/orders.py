"""The WeChat Pay double's orders: Native create, query, close, and the pay page's
approve/decline. Idempotent per out_trade_no like the real service: the same order asked
for again gives the same code_url; a different one under a used number is refused.

Amounts are kept as WeChat Pay keeps them, in fen. Errors are WechatError, answered in
WeChat Pay's own JSON ({"code", "message"}) by api.py.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from adapters.resources import Resources
from domain.money import from_minor_units
from standins import notifications
from standins.models import StandinOrder
from standins.wechatpay import notify
from standins.wechatpay.keys import DOUBLE_PATH, DoubleKeys
from standins.wechatpay.notify import BEIJING, rfc3339

PROVIDER = "wechatpay"
OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_\-*|]{6,32}")


class WechatError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def create_native(res: Resources, keys: DoubleKeys, body: dict[str, Any]) -> dict[str, Any]:
    fields = _native_fields(keys, body)
    token = secrets.token_urlsafe(18)
    with res.uow() as uow:
        session = uow.session
        session.execute(insert(StandinOrder).values(
            provider=PROVIDER, merchant=keys.mchid, status="NOTPAY", pay_token=token,
            request_body=body, **fields).on_conflict_do_nothing())
        order = _find(session, keys, fields["out_trade_no"])
        assert order is not None
        status, token = order.status, order.pay_token
        asked = (order.amount_minor, order.currency, order.description)
        uow.commit()
    if status in ("SUCCESS", "REFUND"):
        raise WechatError(400, "ORDERPAID", "该订单已支付")
    if status == "CLOSED":
        raise WechatError(400, "ORDER_CLOSED", "订单已关闭")
    if asked != (fields["amount_minor"], fields["currency"], fields["description"]):
        raise WechatError(403, "OUT_TRADE_NO_USED", "商户订单号重复")
    return {"code_url": code_url(res, token)}


def code_url(res: Resources, token: str) -> str:
    # The real one is weixin://wxpay/bizpayurl?pr=...; ours opens the double's pay page.
    return f"{res.settings.public_base_url}{DOUBLE_PATH}/pay/{token}"


def query_order(res: Resources, keys: DoubleKeys, out_trade_no: str) -> dict[str, Any]:
    with res.uow() as uow:
        order = _find(uow.session, keys, out_trade_no)
        if order is None:
            raise WechatError(404, "ORDER_NOT_EXIST", "订单不存在")
        return order_view(keys, order)


def order_view(keys: DoubleKeys, order: StandinOrder) -> dict[str, Any]:
    """The transaction as the query API (and a TRANSACTION.SUCCESS resource) shows it."""
    view: dict[str, Any] = {
        "appid": keys.appid, "mchid": keys.mchid, "out_trade_no": order.out_trade_no,
        "trade_type": "NATIVE", "trade_state": order.status,
        "trade_state_desc": _STATE_DESC.get(order.status, order.status),
        "attach": "",
    }
    if order.transaction_id:
        view.update(transaction_id=order.transaction_id, bank_type="OTHERS",
                    success_time=rfc3339(order.paid_at) if order.paid_at else None,
                    payer={"openid": "o" + order.transaction_id[-16:]},
                    amount={"total": order.amount_minor, "payer_total": order.amount_minor,
                            "currency": order.currency, "payer_currency": order.currency})
    return view


_STATE_DESC = {"NOTPAY": "未支付", "SUCCESS": "支付成功", "CLOSED": "已关闭",
               "PAYERROR": "支付失败", "REFUND": "转入退款"}


def close_order(res: Resources, keys: DoubleKeys, out_trade_no: str) -> None:
    with res.uow() as uow:
        session = uow.session
        closed = session.execute(
            update(StandinOrder).where(*_key(keys, out_trade_no),
                                       StandinOrder.status.in_(("NOTPAY", "PAYERROR")))
            .values(status="CLOSED", updated_at=datetime.now(BEIJING))
            .returning(StandinOrder.id)).scalar_one_or_none()
        order = _find(session, keys, out_trade_no)
        status = order.status if order is not None else None
        uow.commit()
    if closed is not None or status == "CLOSED":
        return  # closing twice is fine, as at the real service
    if status is None:
        raise WechatError(404, "ORDER_NOT_EXIST", "订单不存在")
    raise WechatError(400, "ORDERPAID", "该订单已支付")


def pay_page_view(res: Resources, token: str) -> dict[str, Any]:
    with res.uow() as uow:
        order = uow.session.scalars(select(StandinOrder).where(
            StandinOrder.provider == PROVIDER, StandinOrder.pay_token == token)).first()
        if order is None:
            raise WechatError(404, "ORDER_NOT_EXIST", "订单不存在")
        return {"out_trade_no": order.out_trade_no, "description": order.description,
                "amount": str(from_minor_units(order.amount_minor, order.currency)),
                "currency": order.currency,
                "status": order.status, "transaction_id": order.transaction_id,
                "can_pay": order.status == "NOTPAY", "token": token}


def approve(res: Resources, keys: DoubleKeys, token: str, *, send_notification: bool) -> str:
    """The customer pays: SUCCESS, and (unless told not to) a TRANSACTION.SUCCESS
    notification queued in the same transaction and sent after commit."""
    transaction_id = "4200" + "".join(secrets.choice("0123456789") for _ in range(24))
    with res.uow() as uow:
        session = uow.session
        order = _leave_notpay(session, token, status="SUCCESS",
                              transaction_id=transaction_id, paid_at=datetime.now(BEIJING))
        ids = []
        if send_notification and order.notify_url:
            ids.append(notifications.queue_notification(
                session, provider=PROVIDER, url=order.notify_url,
                payload=notify.transaction_payload(order_view(keys, order))))
        notifications.send_after_commit(res, uow, ids)
        uow.commit()
    return transaction_id


def decline(res: Resources, token: str) -> None:
    """The payment fails at the bank. WeChat Pay sends no notification for that: the
    merchant learns it by asking (trade_state PAYERROR)."""
    with res.uow() as uow:
        session = uow.session
        _leave_notpay(session, token, status="PAYERROR")
        uow.commit()


def _leave_notpay(session: Session, token: str, **values: Any) -> StandinOrder:
    """The pay page's order moved on from NOTPAY (compare-and-set: a second click, or
    a close that came first, finds it gone)."""
    order = session.execute(
        update(StandinOrder).where(StandinOrder.provider == PROVIDER,
                                   StandinOrder.pay_token == token,
                                   StandinOrder.status == "NOTPAY")
        .values(updated_at=datetime.now(BEIJING), **values)
        .returning(StandinOrder)).scalar_one_or_none()
    if order is None:
        raise _not_payable(session, token)
    return order


def _not_payable(session: Session, token: str) -> WechatError:
    exists = session.scalars(select(StandinOrder.id).where(
        StandinOrder.provider == PROVIDER, StandinOrder.pay_token == token)).first()
    if exists is None:
        return WechatError(404, "ORDER_NOT_EXIST", "订单不存在")
    return WechatError(400, "ORDER_CLOSED", "订单已支付或已关闭")


def _native_fields(keys: DoubleKeys, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("appid") != keys.appid or body.get("mchid") != keys.mchid:
        raise WechatError(400, "APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配")
    description = body.get("description")
    if not isinstance(description, str) or not 0 < len(description) <= 127:
        raise _param("description", "长度应在1到127之间")
    out_trade_no = body.get("out_trade_no")
    if not isinstance(out_trade_no, str) or not OUT_TRADE_NO.fullmatch(out_trade_no):
        raise _param("out_trade_no", "应为6到32位数字、大小写字母或_-*|")
    notify_url = body.get("notify_url")
    if not isinstance(notify_url, str) or not notify_url.startswith(("http://", "https://")):
        raise _param("notify_url", "应为http(s)地址")
    amount = body.get("amount")
    total = amount.get("total") if isinstance(amount, dict) else None
    if isinstance(total, bool) or not isinstance(total, int) or total <= 0:
        raise _param("amount.total", "应为正整数（分）")
    currency = amount.get("currency", "CNY") if isinstance(amount, dict) else "CNY"
    if currency != "CNY":
        raise _param("amount.currency", "仅支持CNY")
    return {"out_trade_no": out_trade_no, "amount_minor": total, "currency": currency,
            "description": description, "notify_url": notify_url}


def _param(field: str, problem: str) -> WechatError:
    return WechatError(400, "PARAM_ERROR", f"输入源“/body/{field}”映射到值字段“{field}”"
                                           f"{problem}")


def _key(keys: DoubleKeys, out_trade_no: str) -> tuple[Any, ...]:
    return (StandinOrder.provider == PROVIDER, StandinOrder.merchant == keys.mchid,
            StandinOrder.out_trade_no == out_trade_no)


def _find(session: Session, keys: DoubleKeys, out_trade_no: str) -> StandinOrder | None:
    return session.scalars(select(StandinOrder).where(*_key(keys, out_trade_no))
                           .execution_options(populate_existing=True)).first()
