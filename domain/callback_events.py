"""The JSON body of a provider callback (DESIGN.md §6), parsed into a typed event. Pure.

    {"id": "evt_...", "type": "payment.succeeded" | "payment.failed"
                              | "refund.succeeded" | "refund.failed",
     "data": {"payment_id": 123, "transaction_id": "txn_...", "amount": "100.00",
              "currency": "CNY", "refund_id": 7, "occurred_at": "<ISO 8601>"}}

Anything else is a 400 at the door, so the inbox only ever holds bodies the
worker can read. Amounts go through parse_amount: Decimal, never float.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from domain.errors import InvalidInput
from domain.ids import parse_positive_id
from domain.money import parse_amount, parse_currency

MAX_EVENT_ID_LENGTH = 128  # provider_callbacks.event_id
MAX_TRANSACTION_ID_LENGTH = 128  # payments.transaction_id


class CallbackEventType(StrEnum):
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"

    @property
    def is_refund(self) -> bool:
        return self in (CallbackEventType.REFUND_SUCCEEDED, CallbackEventType.REFUND_FAILED)


@dataclass(frozen=True)
class CallbackEvent:
    event_id: str
    type: CallbackEventType
    payment_id: int
    amount: Decimal
    currency: str
    transaction_id: str | None = None
    refund_id: int | None = None
    occurred_at: datetime | None = None


def _invalid(detail: str, field: str | None = None) -> InvalidInput:
    extra = {"field": field} if field else {}
    return InvalidInput(detail, code="invalid_callback", **extra)


def _reject_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not allowed in JSON", code="malformed_json")


def decode_callback_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object (numbers as Decimal), or 400 malformed_json."""
    if not raw.strip():
        raise InvalidInput("The callback body is empty", code="malformed_json")
    try:
        text = raw.decode("utf-8")
        body = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except InvalidInput:
        raise
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        raise InvalidInput("The callback body is not valid UTF-8 JSON",
                           code="malformed_json") from None
    if not isinstance(body, dict):
        raise InvalidInput("The callback body must be a JSON object", code="malformed_json")
    if _has_nul(body):
        # PostgreSQL's jsonb cannot store U+0000; refuse it here rather than fail later.
        raise InvalidInput("The callback body must not contain NUL characters",
                           code="malformed_json")
    return body


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def parse_callback_body(raw: bytes) -> CallbackEvent:
    return parse_callback_event(decode_callback_body(raw))


def parse_callback_event(body: dict[str, Any]) -> CallbackEvent:
    event_id = _required_str(body, "id", MAX_EVENT_ID_LENGTH)
    raw_type = body.get("type")
    try:
        event_type = CallbackEventType(raw_type) if isinstance(raw_type, str) else None
    except ValueError:
        event_type = None
    if event_type is None:
        allowed = ", ".join(t.value for t in CallbackEventType)
        raise _invalid(f"type must be one of {allowed}", "type")
    data = body.get("data")
    if not isinstance(data, dict):
        raise _invalid("data must be a JSON object", "data")

    payment_id = _positive_id(data.get("payment_id"), "data.payment_id")
    if payment_id is None:
        raise _invalid("data.payment_id is required", "data.payment_id")
    transaction_id = _optional_str(data, "transaction_id", MAX_TRANSACTION_ID_LENGTH)
    if event_type is CallbackEventType.PAYMENT_SUCCEEDED and transaction_id is None:
        raise _invalid("data.transaction_id is required for payment.succeeded",
                       "data.transaction_id")
    if "amount" not in data:
        raise _invalid("data.amount is required", "data.amount")
    amount = parse_amount(data.get("amount"), field="data.amount")
    if data.get("currency") is None:
        raise _invalid("data.currency is required", "data.currency")
    currency = parse_currency(data.get("currency"))
    refund_id = _positive_id(data.get("refund_id"), "data.refund_id")
    if event_type.is_refund and refund_id is None:
        raise _invalid(f"data.refund_id is required for {event_type.value}", "data.refund_id")
    return CallbackEvent(
        event_id=event_id, type=event_type, payment_id=payment_id, amount=amount,
        currency=currency, transaction_id=transaction_id,
        refund_id=refund_id if event_type.is_refund else None,
        occurred_at=_optional_datetime(data.get("occurred_at"), "data.occurred_at"),
    )


def _required_str(body: dict[str, Any], field: str, max_len: int) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise _invalid(f"{field} must be a non-empty string of at most {max_len} characters",
                       field)
    return value


def _optional_str(data: dict[str, Any], field: str, max_len: int) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise _invalid(f"data.{field} must be a non-empty string of at most {max_len} "
                       "characters", f"data.{field}")
    return value


def _positive_id(value: object, field: str) -> int | None:
    if value is None:
        return None
    number = parse_positive_id(value)
    if number is None:
        raise _invalid(f"{field} must be a positive whole number", field)
    return number


def _optional_datetime(value: object, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise _invalid(f"{field} must be an ISO 8601 timestamp", field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _invalid(f"{field} must be an ISO 8601 timestamp", field) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
