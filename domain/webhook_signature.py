"""The Payments-Signature header on our webhooks (DESIGN.md §9). Pure: no I/O.

    Payments-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]
    v1 = hex(HMAC-SHA256(secret, "<t>." + raw body bytes))

The same scheme as the callbacks we accept (§6), so a shop verifies us the way we
verify providers: on the raw bytes, constant-time, any one v1 matching. There are
two v1 values for 24 h after a secret is rotated (the new one and the old one).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SIGNATURE_HEADER = "Payments-Signature"
EVENT_ID_HEADER = "Payments-Event-Id"
EVENT_TYPE_HEADER = "Payments-Event-Type"


def compute(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secrets: Sequence[str], body: bytes, timestamp: int) -> str:
    return ",".join([f"t={timestamp}"] + [f"v1={compute(s, timestamp, body)}" for s in secrets])


def verify(header: str, body: bytes, secret: str, *, now: int, tolerance: int = 300) -> bool:
    """What a receiver does (the README's example does the same in ten lines)."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit() or abs(now - int(stamps[0])) > tolerance:
        return False
    expected = compute(secret, int(stamps[0]), body)
    return any(hmac.compare_digest(expected, v) for k, v in parts if k == "v1")
