"""Callback bodies the sandbox sends, in the §6 shape, and its retry schedule. Pure.

    {"id": "evt_...", "type": "payment.succeeded",
     "data": {"payment_id": 123, "transaction_id": "txn_...", "amount": "100.00",
              "currency": "CNY", "occurred_at": "2026-01-01T00:00:00+00:00"}}

Refund events carry data.refund_id (the merchant's refund id). The body is
serialised once, stored, and sent byte for byte on every attempt: the signature
covers those bytes.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from decimal import Decimal

from domain.money import format_amount

PAYMENT_SUCCEEDED = "payment.succeeded"
PAYMENT_FAILED = "payment.failed"
REFUND_SUCCEEDED = "refund.succeeded"
REFUND_FAILED = "refund.failed"

# Real providers keep trying for hours; the sandbox for about a quarter of an hour:
# 1, 2, 4 ... 32, then every 60 s, 20 attempts in all.
MAX_ATTEMPTS = 20
MAX_BACKOFF_SECONDS = 60


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def event_body(event_id: str, event_type: str, *, merchant_payment_id: int,
               amount: Decimal, currency: str, transaction_id: str | None,
               occurred_at: datetime, refund_id: int | None = None) -> bytes:
    data: dict[str, object] = {
        "payment_id": merchant_payment_id,
        "transaction_id": transaction_id,
        "amount": format_amount(amount),
        "currency": currency,
        "occurred_at": occurred_at.isoformat(),
    }
    if refund_id is not None:
        data["refund_id"] = refund_id
    return json.dumps({"id": event_id, "type": event_type, "data": data},
                      separators=(",", ":")).encode()


def backoff_seconds(attempts_made: int) -> int:
    """How long to wait after the `attempts_made`-th failed attempt: 1, 2, 4 ... 60."""
    return min(MAX_BACKOFF_SECONDS, 2 ** max(0, attempts_made - 1))
