"""The WeChat Pay double's notifications: TRANSACTION.SUCCESS and REFUND.* to notify_url.

A payload (what standins/notifications.py stores) holds the notification's id, type and
the resource in clear; `render` seals the resource with the APIv3 key and signs the body
with a fresh timestamp and nonce on every attempt, as the real service does. The
merchant has it when it answers 200 or 204; otherwise it is sent again on WeChat Pay's
published schedule: 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from config import Settings
from standins.notifications import NotificationFormat, register_format
from standins.wechatpay.keys import load_double_keys
from standins.wechatpay.protocol import seal_resource, signed_headers

PROVIDER = "wechatpay"
BEIJING = timezone(timedelta(hours=8))  # WeChat Pay writes its times in UTC+8
RETRY_SCHEDULE = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600,
                  10800, 10800, 10800, 21600, 21600)
_SUMMARIES = {"TRANSACTION.SUCCESS": "支付成功", "REFUND.SUCCESS": "退款成功",
              "REFUND.CLOSED": "退款关闭", "REFUND.ABNORMAL": "退款异常"}
_REFUND_EVENTS = {"SUCCESS": "REFUND.SUCCESS", "CLOSED": "REFUND.CLOSED",
                  "ABNORMAL": "REFUND.ABNORMAL"}


def transaction_payload(transaction: Mapping[str, Any]) -> dict[str, Any]:
    return _payload("TRANSACTION.SUCCESS", "transaction", dict(transaction))


def refund_payload(mchid: str, refund: Mapping[str, Any]) -> dict[str, Any]:
    """A REFUND.* notification for a refund view (refunds.refund_view) in its final state."""
    amount = refund["amount"]
    resource = {
        "mchid": mchid, "out_trade_no": refund["out_trade_no"],
        "transaction_id": refund["transaction_id"], "out_refund_no": refund["out_refund_no"],
        "refund_id": refund["refund_id"], "refund_status": refund["status"],
        "user_received_account": refund["user_received_account"],
        # Refund notifications carry no currency (domestic refunds are in yuan).
        "amount": {k: amount[k] for k in ("total", "refund", "payer_total", "payer_refund")},
    }
    if "success_time" in refund:
        resource["success_time"] = refund["success_time"]
    return _payload(_REFUND_EVENTS[refund["status"]], "refund", resource)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def _payload(event_type: str, original_type: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "create_time": rfc3339(datetime.now(BEIJING)),
            "event_type": event_type, "summary": _SUMMARIES[event_type],
            "original_type": original_type, "resource": resource}


def render_notification(settings: Settings, payload: Mapping[str, Any], *,
                        timestamp: int | None = None) -> tuple[dict[str, str], bytes]:
    """One attempt's headers and body. `payload["signer"]` = "certificate" signs with the
    platform certificate instead of the public key (both modes exist in the wild)."""
    keys = load_double_keys(settings.run_dir)
    body = json.dumps({
        "id": payload["id"], "create_time": payload["create_time"],
        "resource_type": "encrypt-resource", "event_type": payload["event_type"],
        "summary": payload["summary"],
        "resource": seal_resource(keys, payload["resource"],
                                  original_type=payload["original_type"],
                                  associated_data=payload["original_type"]),
    }, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json",
               **signed_headers(keys, body, signer=payload.get("signer", "public_key"),
                                timestamp=timestamp)}
    return headers, body


def accepted(status: int, body: bytes) -> bool:
    return status in (200, 204)


register_format(PROVIDER, NotificationFormat(render=render_notification, accepted=accepted,
                                             schedule=RETRY_SCHEDULE))
