"""The pretend Alipay's trades: what precreate, query, close, refund and the pay page
do to them. One transaction per call, the trade's row locked while it changes.

Every function takes the merchant's biz_content and returns the response object (code
10000, or 40004 with Alipay's sub_code); the gateway signs it. Statuses are Alipay's:

    PRECREATED (a QR code, no trade yet) --scan--> WAIT_BUYER_PAY --pay--> TRADE_SUCCESS
    WAIT_BUYER_PAY --close/decline--> TRADE_CLOSED;  TRADE_SUCCESS --full refund--> TRADE_CLOSED

As at Alipay, a code nobody has scanned is no trade: query and close answer
ACQ.TRADE_NOT_EXIST, and the code can still be scanned afterwards.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from adapters.resources import Resources
from domain.errors import NotFound
from domain.money import from_minor_units, to_minor_units
from services.transitions import utc_now
from standins.alipay import notify
from standins.models import StandinOrder, StandinRefund
from standins.notifications import send_after_commit

PROVIDER = "alipay"
PAY_PATH = "/doubles/alipay/pay/"
CURRENCY = "CNY"
BUYER = {"buyer_id": "2088102177846880", "buyer_logon_id": "buy***@example.com"}
SUCCESS = {"code": "10000", "msg": "Success"}


def business_error(sub_code: str, sub_msg: str, **extra: Any) -> dict[str, Any]:
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code,
            "sub_msg": sub_msg, **extra}


def invalid_parameter(detail: str) -> dict[str, Any]:
    return {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-parameter",
            "sub_msg": detail}


def _amount(value: object) -> Decimal | None:
    """Yuan with at most two places, more than zero (Alipay's Price type)."""
    try:
        amount = Decimal(str(value)) if isinstance(value, str | int | Decimal) else None
    except InvalidOperation:
        return None
    if amount is None or not amount.is_finite() or amount <= 0:
        return None
    return amount if amount == amount.quantize(Decimal("0.01")) else None


def _find(session: Session, app_id: str, out_trade_no: object, *,
          lock: bool = True) -> StandinOrder | None:
    if not isinstance(out_trade_no, str) or not out_trade_no:
        return None
    query = select(StandinOrder).where(StandinOrder.provider == PROVIDER,
                                       StandinOrder.merchant == app_id,
                                       StandinOrder.out_trade_no == out_trade_no)
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


def _yuan(minor: int) -> str:
    return str(from_minor_units(minor, CURRENCY))


def _trade_no(now: datetime) -> str:
    """Alipay's 28-digit trade numbers: the date, a channel code, then a sequence."""
    return now.strftime("%Y%m%d") + "22001" + "".join(secrets.choice("0123456789")
                                                      for _ in range(15))


def precreate(res: Resources, app_id: str, biz: dict[str, Any],
              notify_url: str | None) -> dict[str, Any]:
    out_trade_no, subject = biz.get("out_trade_no"), biz.get("subject")
    amount = _amount(biz.get("total_amount"))
    if not isinstance(out_trade_no, str) or not 0 < len(out_trade_no) <= 64:
        return invalid_parameter("out_trade_no is required, at most 64 characters")
    if amount is None:
        return invalid_parameter("total_amount must be yuan with at most two decimals")
    if not isinstance(subject, str) or not subject:
        return invalid_parameter("subject is required")
    minor = to_minor_units(amount, CURRENCY)
    with res.uow() as uow:
        session = uow.session
        session.execute(pg_insert(StandinOrder).values(
            provider=PROVIDER, merchant=app_id, out_trade_no=out_trade_no,
            amount_minor=minor, currency=CURRENCY, description=subject,
            notify_url=notify_url, status="PRECREATED", pay_token=secrets.token_urlsafe(18),
            request_body=biz).on_conflict_do_nothing())
        order = _find(session, app_id, out_trade_no)
        assert order is not None
        if order.status == "TRADE_SUCCESS" or order.status == "TRADE_FINISHED":
            return business_error("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
        if order.status == "TRADE_CLOSED":
            return business_error("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        if order.amount_minor != minor:
            return business_error("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
        answer = {**SUCCESS, "out_trade_no": out_trade_no,
                  "qr_code": res.settings.public_base_url + PAY_PATH + order.pay_token}
        uow.commit()
    return answer


def query(res: Resources, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    with res.uow() as uow:
        order = _find(uow.session, app_id, biz.get("out_trade_no"), lock=False)
        if order is None or order.status == "PRECREATED":
            return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        answer = {**SUCCESS, "trade_no": order.transaction_id or "",
                  "out_trade_no": order.out_trade_no, "trade_status": order.status,
                  "total_amount": _yuan(order.amount_minor)}
        if order.paid_at is not None:
            answer.update(BUYER, buyer_pay_amount=_yuan(order.amount_minor),
                          send_pay_date=notify.beijing(order.paid_at))
        return {k: v for k, v in answer.items() if v != ""}


def close(res: Resources, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    with res.uow() as uow:
        order = _find(uow.session, app_id, biz.get("out_trade_no"))
        if order is None or order.status == "PRECREATED":
            return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        if order.status != "WAIT_BUYER_PAY" and order.status != "TRADE_CLOSED":
            return business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if order.status == "WAIT_BUYER_PAY":
            order.status, order.updated_at = "TRADE_CLOSED", utc_now(uow.session)
        answer = {**SUCCESS, "trade_no": order.transaction_id,
                  "out_trade_no": order.out_trade_no}
        uow.commit()
    return answer


def scan(res: Resources, token: str) -> dict[str, Any]:
    """The buyer opens the code's page: from now on Alipay has a trade."""
    with res.uow() as uow:
        order = _by_token(uow.session, token)
        if order.status == "PRECREATED":
            now = utc_now(uow.session)
            order.status, order.transaction_id, order.updated_at = (
                "WAIT_BUYER_PAY", _trade_no(now), now)
        view = _page_view(order)
        uow.commit()
    return view


def decide(res: Resources, token: str, *, approve: bool, send_notification: bool = True
           ) -> dict[str, Any]:
    """The pay page's buttons: paid (TRADE_SUCCESS) or given up (TRADE_CLOSED, as when the
    trade times out), each notified to the merchant unless told not to."""
    with res.uow() as uow:
        session = uow.session
        order = _by_token(session, token)
        if order.status not in ("PRECREATED", "WAIT_BUYER_PAY"):
            return _page_view(order)
        now = utc_now(session)
        order.transaction_id = order.transaction_id or _trade_no(now)
        order.status = "TRADE_SUCCESS" if approve else "TRADE_CLOSED"
        order.updated_at = now
        if approve:
            order.paid_at = now
        if send_notification and order.notify_url:
            notification_id = notify.queue_trade_notification(session, order, now=now)
            send_after_commit(res, uow, [notification_id])
        view = _page_view(order)
        uow.commit()
    return view


def refund(res: Resources, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    amount = _amount(biz.get("refund_amount"))
    if amount is None:
        return invalid_parameter("refund_amount must be yuan with at most two decimals")
    minor = to_minor_units(amount, CURRENCY)
    with res.uow() as uow:
        session = uow.session
        order = _find(session, app_id, biz.get("out_trade_no"))
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
                    "refund_fee": _yuan(order.refunded_minor)}
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
                  "refund_fee": _yuan(order.refunded_minor),
                  "gmt_refund_pay": notify.beijing(now), "send_back_fee": _yuan(minor)}
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
        order = _find(session, app_id, biz.get("out_trade_no"), lock=False)
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
                "out_request_no": request_no, "total_amount": _yuan(order.amount_minor),
                "refund_amount": _yuan(row.amount_minor), "refund_status": row.status}


def _by_token(session: Session, token: str) -> StandinOrder:
    order = None
    if len(token) <= 64:
        order = session.scalars(select(StandinOrder).where(
            StandinOrder.provider == PROVIDER, StandinOrder.pay_token == token
        ).with_for_update()).one_or_none()
    if order is None:
        raise NotFound("No such Alipay QR code", code="unknown_qr_code")
    return order


def _page_view(order: StandinOrder) -> dict[str, Any]:
    return {"out_trade_no": order.out_trade_no, "subject": order.description,
            "total_amount": _yuan(order.amount_minor), "trade_status": order.status,
            "trade_no": order.transaction_id,
            "payable": order.status in ("PRECREATED", "WAIT_BUYER_PAY")}
