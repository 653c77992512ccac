"""Building, signing and sending provider callbacks in tests, as the sandbox provider would."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import requests
from sqlalchemy import func, select

from adapters.providers.sandbox.signature import SIGNATURE_HEADER, build_signature_header
from adapters.resources import Resources
from config_secrets import DEV_WEBHOOK_SECRET
from domain.models import PaymentEvent, ProviderCallback


def event_body(payment_id: int, *, event_type: str = "payment.succeeded",
               event_id: str | None = None, transaction_id: str | None = None,
               amount: str = "100.00", currency: str = "CNY",
               refund_id: int | None = None) -> bytes:
    data: dict[str, Any] = {"payment_id": payment_id, "amount": amount, "currency": currency,
                            "occurred_at": "2026-01-01T00:00:00Z"}
    if transaction_id is not None or event_type == "payment.succeeded":
        data["transaction_id"] = transaction_id or f"txn_{payment_id}"
    if refund_id is not None:
        data["refund_id"] = refund_id
    return json.dumps({"id": event_id or f"evt_{uuid.uuid4().hex}", "type": event_type,
                       "data": data}).encode()


def signed_headers(body: bytes, *, secret: str | list[str] = DEV_WEBHOOK_SECRET,
                   timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {SIGNATURE_HEADER: build_signature_header(secret, body, ts),
            "Content-Type": "application/json"}


def post_callback(base_url: str, body: bytes, *, provider: str = "sandbox",
                  headers: dict[str, str] | None = None, session: requests.Session | None = None,
                  timeout: float = 30) -> requests.Response:
    http = session or requests
    return http.post(f"{base_url}/callbacks/{provider}", data=body,
                     headers=signed_headers(body) if headers is None else headers,
                     timeout=timeout)


def store_callback(res: Resources, body: bytes, *, provider: str = "sandbox") -> int:
    """An inbox row as ingest stores it, without enqueueing (for tests that drive the
    processing themselves)."""
    payload = json.loads(body)
    with res.uow() as uow:
        row = ProviderCallback(provider=provider, event_id=payload["id"],
                               event_type=payload["type"],
                               payment_id=payload["data"]["payment_id"], raw_body=body,
                               payload=payload, status="received")
        uow.session.add(row)
        uow.session.flush()
        callback_id = row.id
        uow.commit()
    return int(callback_id)


def inbox_statuses(res: Resources) -> dict[str, int]:
    with res.uow() as uow:
        rows = uow.session.execute(select(ProviderCallback.status, func.count())
                                   .group_by(ProviderCallback.status)).all()
    return {status: count for status, count in rows}


def event_counts(res: Resources, event: str) -> dict[int | None, int]:
    """payment_id -> how many audit rows named `event` it has."""
    with res.uow() as uow:
        rows = uow.session.execute(
            select(PaymentEvent.payment_id, func.count()).where(PaymentEvent.event == event)
            .group_by(PaymentEvent.payment_id)).all()
    return {payment_id: count for payment_id, count in rows}
