"""The pretend Alipay's asynchronous notifications (notify_type trade_status_sync).

The stored payload is the notification without notify_time, sign_type and sign: each
attempt is stamped and signed afresh when it is sent (render), with the same notify_id,
as a form in UTF-8. The merchant has it only when it answers exactly `success`; until
then Alipay retries 4m, 10m, 10m, 1h, 2h, 6h, 15h after the first attempt (25 h in all).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from config import Settings
from domain.money import from_minor_units
from standins.alipay.crypto import signed_notification
from standins.alipay.keys import load_double_keys
from standins.models import StandinOrder
from standins.notifications import NotificationFormat, queue_notification, register_format

PROVIDER = "alipay"
BEIJING = timezone(timedelta(hours=8))
SCHEDULE = (4 * 60.0, 10 * 60.0, 10 * 60.0, 3600.0, 2 * 3600.0, 6 * 3600.0, 15 * 3600.0)
SELLER_ID = "2088101117955611"


def beijing(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _yuan(minor: int) -> str:
    return str(from_minor_units(minor, "CNY"))


def _notify_id() -> str:
    return datetime.now(BEIJING).strftime("%Y%m%d") + secrets.token_hex(14)


def trade_fields(order: StandinOrder, *, now: datetime) -> dict[str, str]:
    """What a notification says about the trade as it is now."""
    fields = {
        "notify_id": _notify_id(), "notify_type": "trade_status_sync",
        "app_id": order.merchant, "auth_app_id": order.merchant, "charset": "utf-8",
        "version": "1.0", "trade_no": order.transaction_id or "",
        "out_trade_no": order.out_trade_no, "trade_status": order.status,
        "total_amount": _yuan(order.amount_minor), "subject": order.description or "",
        "buyer_id": "2088102177846880", "buyer_logon_id": "buy***@example.com",
        "seller_id": SELLER_ID, "gmt_create": beijing(order.created_at),
    }
    if order.paid_at is not None:
        fields.update(gmt_payment=beijing(order.paid_at),
                      receipt_amount=_yuan(order.amount_minor),
                      buyer_pay_amount=_yuan(order.amount_minor))
    if order.status == "TRADE_CLOSED":
        fields["gmt_close"] = beijing(now)
    return {k: v for k, v in fields.items() if v}


def queue_trade_notification(session: Session, order: StandinOrder, *,
                             now: datetime) -> int:
    assert order.notify_url
    return queue_notification(session, provider=PROVIDER, url=order.notify_url,
                              payload=trade_fields(order, now=now))


def queue_refund_notification(session: Session, order: StandinOrder, out_request_no: str,
                              *, now: datetime) -> int:
    """A refund is notified as the trade's status (TRADE_SUCCESS after a partial refund,
    TRADE_CLOSED after a full one) with out_biz_no, gmt_refund and refund_fee, which is
    the trade's total refunded so far, as Alipay documents it."""
    assert order.notify_url
    fields = trade_fields(order, now=now)
    fields.update(out_biz_no=out_request_no, refund_fee=_yuan(order.refunded_minor),
                  gmt_refund=beijing(now))
    return queue_notification(session, provider=PROVIDER, url=order.notify_url,
                              payload=fields)


def render(settings: Settings, payload: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """One attempt: stamped now and signed with the double's Alipay key."""
    fields = {str(k): str(v) for k, v in payload.items()}
    fields["notify_time"] = beijing(datetime.now(BEIJING))
    signed = signed_notification(fields, load_double_keys(settings.run_dir).alipay_private_key)
    return ({"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            urlencode(signed).encode("ascii"))


def accepted(status: int, body: bytes) -> bool:
    # Alipay reads the body only, and wants exactly these seven characters.
    return body == b"success"


register_format(PROVIDER, NotificationFormat(render=render, accepted=accepted,
                                             schedule=SCHEDULE))
