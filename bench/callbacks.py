"""Success callbacks as the sandbox provider sends them (its own body builder), signed
with the configured secret at the moment they are made."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

from adapters.providers.sandbox.signature import SIGNATURE_HEADER, build_signature_header
from config import Settings
from standins.sandbox.events import PAYMENT_SUCCEEDED, event_body, new_id

CALLBACK_PATH = "/callbacks/sandbox"


def success_body(payment_id: int) -> bytes:
    """A payment.succeeded event for a payment made by bench.fixtures (100.00 CNY)."""
    return event_body(new_id("evt"), PAYMENT_SUCCEEDED, merchant_payment_id=payment_id,
                      amount=Decimal("100.00"), currency="CNY",
                      transaction_id=new_id("txn"), occurred_at=datetime.now(UTC))


def signed_headers(settings: Settings, body: bytes) -> dict[str, str]:
    signature = build_signature_header(settings.sandbox_webhook_secret, body, int(time.time()))
    return {SIGNATURE_HEADER: signature, "Content-Type": "application/json"}
