"""The normalised provider event (DESIGN.md §6), and its JSON form. Pure.

Every connector turns its provider's callback into a CallbackEvent; the inbox stores
it in this JSON form (provider_callbacks.payload) beside the raw bytes, and the worker
reads it back with parse_callback_event, whichever provider sent it:

    {"id": "evt_...", "type": "payment.succeeded" | "payment.failed"
                              | "refund.succeeded" | "refund.failed" | "refund.abnormal",
     "data": {"payment_id": 123, "transaction_id": "txn_...", "amount": "100.00",
              "currency": "CNY", "refund_id": 7, "occurred_at": "<ISO 8601>"}}

It is also the sandbox provider's own callback body. `payment_id` is null when a real
provider names a merchant reference we never issued (the callback is kept, unmatched).
Anything else is a 400 at the door, so the inbox only ever holds events the worker can
read. Amounts go through parse_amount: Decimal, never float.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from domain.errors import InvalidInput
from domain.ids import parse_positive_id
from domain.money import format_amount, parse_amount, parse_currency

MAX_EVENT_ID_LENGTH = 128  # provider_callbacks.event_id
MAX_TRANSACTION_ID_LENGTH = 128  # payments.transaction_id
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_REFERENCE_LENGTH = 64  # payments.out_trade_no, refunds.out_refund_no


class CallbackEventType(StrEnum):
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    # The provider accepted the refund but could not pay it out (WeChat Pay's
    # REFUND.ABNORMAL: the buyer's card was closed, say): neither done nor failed,
    # it needs a person.
    REFUND_ABNORMAL = "refund.abnormal"

    @property
    def is_refund(self) -> bool:
        return self in (CallbackEventType.REFUND_SUCCEEDED, CallbackEventType.REFUND_FAILED,
                        CallbackEventType.REFUND_ABNORMAL)


@dataclass(frozen=True)
class CallbackEvent:
    event_id: str
    type: CallbackEventType
    payment_id: int | None  # None: the provider named a payment we never issued
    amount: Decimal
    currency: str
    transaction_id: str | None = None
    refund_id: int | None = None
    occurred_at: datetime | None = None
    # Real providers name our payment and refund by the merchant references we sent
    # them (domain/references.py); the inbox resolves these to payment_id / refund_id.
    out_trade_no: str | None = None
    out_refund_no: str | None = None


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
    check_storable_json(text, body)
    return body


def check_storable(doc: dict[str, Any]) -> None:
    """PostgreSQL's jsonb cannot store U+0000 nor a lone UTF-16 surrogate ("\ud800" is
    valid JSON): refuse them with a 400 rather than fail at the insert with a database
    error, which the provider would retry for ever. For every provider's event, whatever
    its wire format (a decrypted WeChat Pay resource too)."""
    if _has_unstorable(doc):
        raise InvalidInput("The callback must not contain NUL characters or lone "
                           "surrogates", code="malformed_json")


def check_storable_json(text: str, doc: dict[str, Any]) -> None:
    """check_storable for `doc`, parsed from or dumped to the JSON `text`. JSON text can
    carry U+0000 or a lone surrogate only as a \\u escape: a raw NUL is not valid JSON,
    strict UTF-8 decoding refuses an encoded surrogate, and json.dumps escapes every
    character outside ASCII. A text with no \\u at all (every callback we have seen)
    needs no walk through its values (B1)."""
    if "\\u" in text:
        check_storable(doc)


def storable_payload(event: CallbackEvent) -> str:
    """The event as the inbox stores it (event_payload as JSON text), or 400 when jsonb
    could not hold it (check_storable_json)."""
    payload = event_payload(event)
    text = json.dumps(payload)
    check_storable_json(text, payload)
    return text


def _has_unstorable(value: Any) -> bool:
    if isinstance(value, str):
        if value.isascii():  # no surrogate is ASCII: the regex only for the others
            return "\x00" in value
        return "\x00" in value or _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_unstorable(k) or _has_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unstorable(v) for v in value)
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
    out_trade_no = _optional_str(data, "out_trade_no", MAX_REFERENCE_LENGTH)
    # A real provider's event names our out_trade_no, which may resolve to no payment.
    if payment_id is None and out_trade_no is None:
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
    out_refund_no = _optional_str(data, "out_refund_no", MAX_REFERENCE_LENGTH)
    if event_type.is_refund and refund_id is None and out_refund_no is None:
        raise _invalid(f"data.refund_id is required for {event_type.value}", "data.refund_id")
    return CallbackEvent(
        event_id=event_id, type=event_type, payment_id=payment_id, amount=amount,
        currency=currency, transaction_id=transaction_id,
        refund_id=refund_id if event_type.is_refund else None,
        occurred_at=_optional_datetime(data.get("occurred_at"), "data.occurred_at"),
        out_trade_no=out_trade_no,
        out_refund_no=out_refund_no if event_type.is_refund else None,
    )


def event_payload(event: CallbackEvent) -> dict[str, Any]:
    """The event in its JSON form (what parse_callback_event reads back)."""
    data: dict[str, Any] = {"payment_id": event.payment_id,
                            "amount": format_amount(event.amount),
                            "currency": event.currency}
    if event.transaction_id is not None:
        data["transaction_id"] = event.transaction_id
    if event.refund_id is not None:
        data["refund_id"] = event.refund_id
    if event.occurred_at is not None:
        data["occurred_at"] = event.occurred_at.isoformat()
    if event.out_trade_no is not None:
        data["out_trade_no"] = event.out_trade_no
    if event.out_refund_no is not None:
        data["out_refund_no"] = event.out_refund_no
    return {"id": event.event_id, "type": event.type.value, "data": data}


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
