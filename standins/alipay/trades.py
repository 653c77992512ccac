"""The pretend Alipay's trades: what precreate, query, close, refund and the pay page
do to them. One transaction per call, the trade's row locked while it changes.

Every function takes the merchant's biz_content and returns the response object (code
10000, or 40004 with Alipay's sub_code); the gateway signs it. Statuses are Alipay's:

    PRECREATED (a QR code, no trade yet) --scan--> WAIT_BUYER_PAY --pay--> TRADE_SUCCESS
    WAIT_BUYER_PAY --close/decline--> TRADE_CLOSED;  TRADE_SUCCESS --full refund--> TRADE_CLOSED

As at Alipay, a code nobody has scanned is no trade: query and close answer
ACQ.TRADE_NOT_EXIST, and the code can still be scanned afterwards, until the
precreate's timeout_express runs out: then a scanned trade is closed (and notified)
and an unscanned code leads nowhere.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
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
from standins.models import StandinOrder
from standins.notifications import send_after_commit

PROVIDER = "alipay"
PAY_PATH = "/doubles/alipay/pay/"
CURRENCY = "CNY"
BUYER = {"buyer_id": "2088102177846880", "buyer_logon_id": "buy***@example.com"}
SUCCESS = {"code": "10000", "msg": "Success"}
# Alipay's default when the merchant names no timeout_express.
DEFAULT_TIMEOUT = timedelta(days=15)
TIMEOUT_UNITS = {"m": 60, "h": 3600, "d": 86400}


def business_error(sub_code: str, sub_msg: str, **extra: Any) -> dict[str, Any]:
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code,
            "sub_msg": sub_msg, **extra}


def invalid_parameter(detail: str) -> dict[str, Any]:
    return {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-parameter",
            "sub_msg": detail}


def amount_value(value: object) -> Decimal | None:
    """Yuan with at most two places, more than zero (Alipay's Price type)."""
    try:
        amount = Decimal(str(value)) if isinstance(value, str | int | Decimal) else None
    except InvalidOperation:
        return None
    if amount is None or not amount.is_finite() or amount <= 0:
        return None
    return amount if amount == amount.quantize(Decimal("0.01")) else None


def find_order(session: Session, app_id: str, out_trade_no: object, *,
          lock: bool = True) -> StandinOrder | None:
    if not isinstance(out_trade_no, str) or not out_trade_no:
        return None
    query = select(StandinOrder).where(StandinOrder.provider == PROVIDER,
                                       StandinOrder.merchant == app_id,
                                       StandinOrder.out_trade_no == out_trade_no)
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


def express_timeout(biz: dict[str, Any]) -> timedelta:
    """timeout_express: 1m to 15d ("90m", "2h", "1d"); anything else is the default."""
    match = re.fullmatch(r"([1-9][0-9]{0,4})([mhd])", str(biz.get("timeout_express") or ""))
    if match is None:
        return DEFAULT_TIMEOUT
    return min(DEFAULT_TIMEOUT, timedelta(
        seconds=int(match.group(1)) * TIMEOUT_UNITS[match.group(2)]))


def _close_if_timed_out(res: Resources, uow: Any, order: StandinOrder) -> None:
    """An unpaid trade past its timeout closes, as Alipay closes it by itself."""
    now = utc_now(uow.session)
    if (order.status not in ("PRECREATED", "WAIT_BUYER_PAY")
            or now < order.created_at + express_timeout(order.request_body or {})):
        return
    scanned = order.status == "WAIT_BUYER_PAY"
    order.status, order.updated_at = "TRADE_CLOSED", now
    if scanned and order.notify_url:
        send_after_commit(res, uow, [notify.queue_trade_notification(uow.session, order,
                                                                     now=now)])


def yuan(minor: int) -> str:
    return str(from_minor_units(minor, CURRENCY))


def _trade_no(now: datetime) -> str:
    """Alipay's 28-digit trade numbers: the date, a channel code, then a sequence."""
    return now.strftime("%Y%m%d") + "22001" + "".join(secrets.choice("0123456789")
                                                      for _ in range(15))


def precreate(res: Resources, app_id: str, biz: dict[str, Any],
              notify_url: str | None) -> dict[str, Any]:
    out_trade_no, subject = biz.get("out_trade_no"), biz.get("subject")
    amount = amount_value(biz.get("total_amount"))
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
        order = find_order(session, app_id, out_trade_no)
        assert order is not None
        _close_if_timed_out(res, uow, order)
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
        order = find_order(uow.session, app_id, biz.get("out_trade_no"))
        if order is not None:
            _close_if_timed_out(res, uow, order)
            uow.commit()
        if order is None or order.status == "PRECREATED" or order.transaction_id is None:
            return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        answer = {**SUCCESS, "trade_no": order.transaction_id or "",
                  "out_trade_no": order.out_trade_no, "trade_status": order.status,
                  "total_amount": yuan(order.amount_minor)}
        if order.paid_at is not None:
            answer.update(BUYER, buyer_pay_amount=yuan(order.amount_minor),
                          send_pay_date=notify.beijing(order.paid_at))
        return {k: v for k, v in answer.items() if v != ""}


def close(res: Resources, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
    with res.uow() as uow:
        order = find_order(uow.session, app_id, biz.get("out_trade_no"))
        if order is not None:
            _close_if_timed_out(res, uow, order)
        if order is None or order.status == "PRECREATED" or order.transaction_id is None:
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
        _close_if_timed_out(res, uow, order)
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
        _close_if_timed_out(res, uow, order)
        if order.status not in ("PRECREATED", "WAIT_BUYER_PAY"):
            view = _page_view(order)
            uow.commit()
            return view
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
            "total_amount": yuan(order.amount_minor), "trade_status": order.status,
            "trade_no": order.transaction_id,
            "payable": order.status in ("PRECREATED", "WAIT_BUYER_PAY")}
