"""WeChat Pay's notifications (payment and refund results) into our CallbackEvent.

    POST /callbacks/wechatpay
    Wechatpay-Timestamp, Wechatpay-Nonce, Wechatpay-Serial, Wechatpay-Signature
    {"id": "EV-...", "create_time": "...", "event_type": "TRANSACTION.SUCCESS",
     "resource_type": "encrypt-resource", "summary": "...",
     "resource": {"algorithm": "AEAD_AES_256_GCM", "ciphertext": "...", "nonce": "...",
                  "associated_data": "...", "original_type": "transaction"}}

Checked in this order, so the cheapest refusal comes first and nothing is decrypted
before the sender is known: headers present, not a probe, the serial names a key we
hold, the signature verifies over the exact bytes, the timestamp is fresh. Then the
resource is decrypted and read. Nothing decrypted is ever logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from adapters.providers.base import CallbackAnswer, CallbackRequest, HeaderLookup
from adapters.providers.wechatpay.signing import (
    SCHEME,
    WechatPayKeys,
    answer_message,
    decrypt_resource,
    verify,
)
from domain.callback_auth import (
    MalformedSignature,
    MissingSignature,
    SignatureMismatch,
    SignatureProbe,
    UnknownSigningKey,
    WrongMerchant,
    check_timestamp,
)
from domain.callback_events import (
    MAX_EVENT_ID_LENGTH,
    CallbackEvent,
    CallbackEventType,
    decode_callback_body,
)
from domain.errors import InvalidInput
from domain.money import from_minor_units, parse_currency

SIGNATURE_HEADER = "Wechatpay-Signature"
TIMESTAMP_HEADER = "Wechatpay-Timestamp"
NONCE_HEADER = "Wechatpay-Nonce"
SERIAL_HEADER = "Wechatpay-Serial"
SIGNATURE_TYPE_HEADER = "Wechatpay-Signature-Type"
# WeChat Pay sends these now and then with a deliberately wrong signature; a merchant
# that accepts one is not verifying at all.
PROBE_PREFIX = "WECHATPAY/SIGNTEST"
# Refund notifications carry no currency: domestic refunds are always in yuan.
REFUND_CURRENCY = "CNY"
_MAX_HEADER = 1024

_REFUND_EVENTS = {
    "REFUND.SUCCESS": ("SUCCESS", CallbackEventType.REFUND_SUCCEEDED),
    "REFUND.CLOSED": ("CLOSED", CallbackEventType.REFUND_FAILED),
    "REFUND.ABNORMAL": ("ABNORMAL", CallbackEventType.REFUND_ABNORMAL),
}


@dataclass(frozen=True)
class NotificationVerifier:
    mchid: str
    apiv3_key: bytes
    keys: WechatPayKeys
    tolerance_seconds: int

    def parse(self, request: CallbackRequest, *, now: float) -> CallbackEvent:
        self.authenticate(request.headers, request.body, now=now)
        body = decode_callback_body(request.body)
        event_id = _string(body, "id", MAX_EVENT_ID_LENGTH)
        event_type = _string(body, "event_type")
        resource = self.decrypt(body)
        if resource.get("mchid") != self.mchid:
            raise WrongMerchant("The notification is addressed to another merchant")
        if event_type == "TRANSACTION.SUCCESS":
            return _payment_event(event_id, resource)
        if event_type in _REFUND_EVENTS:
            return _refund_event(event_id, event_type, resource, body)
        raise InvalidInput(f"Unsupported WeChat Pay event_type {event_type[:40]!r}",
                           code="invalid_callback", field="event_type")

    def authenticate(self, headers: HeaderLookup, body: bytes, *, now: float) -> None:
        signature = _header(headers, SIGNATURE_HEADER)
        timestamp = _header(headers, TIMESTAMP_HEADER)
        nonce = _header(headers, NONCE_HEADER)
        serial = _header(headers, SERIAL_HEADER)
        if signature.startswith(PROBE_PREFIX):
            raise SignatureProbe("A WeChat Pay signature probe is refused by design")
        kind = headers.get(SIGNATURE_TYPE_HEADER)
        if kind is not None and kind != SCHEME:
            raise MalformedSignature(f"{SIGNATURE_TYPE_HEADER} must be {SCHEME}")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise MalformedSignature(f"{TIMESTAMP_HEADER} must be unix seconds")
        key = self.keys.key_for(serial, now=now)
        if key is None:
            raise UnknownSigningKey(f"{SERIAL_HEADER} names a key we do not hold")
        if not verify(key, answer_message(timestamp, nonce, body), signature):
            raise SignatureMismatch("The notification signature does not match its body")
        check_timestamp(int(timestamp), now=now, tolerance_seconds=self.tolerance_seconds)

    def decrypt(self, body: dict[str, Any]) -> dict[str, Any]:
        resource = body.get("resource")
        if body.get("resource_type") != "encrypt-resource" or not isinstance(resource, dict):
            raise _invalid("resource must be an encrypt-resource object", "resource")
        if resource.get("algorithm") != "AEAD_AES_256_GCM":
            raise _invalid("resource.algorithm must be AEAD_AES_256_GCM", "resource.algorithm")
        nonce, ciphertext = resource.get("nonce"), resource.get("ciphertext")
        associated = resource.get("associated_data") or ""
        if not (isinstance(nonce, str) and nonce and isinstance(ciphertext, str)
                and ciphertext and isinstance(associated, str)):
            raise _invalid("resource needs nonce and ciphertext", "resource")
        plaintext = decrypt_resource(self.apiv3_key, nonce=nonce, ciphertext=ciphertext,
                                     associated_data=associated)
        if plaintext is None:
            # Signed by WeChat Pay, yet not sealed with our APIv3 key: a key mix-up.
            raise _invalid("resource does not decrypt with our APIv3 key", "resource")
        try:
            decrypted = json.loads(plaintext, parse_float=Decimal)
        except ValueError:
            decrypted = None
        if not isinstance(decrypted, dict):
            raise _invalid("resource does not decrypt to a JSON object", "resource")
        return decrypted


def _payment_event(event_id: str, resource: dict[str, Any]) -> CallbackEvent:
    if resource.get("trade_state") != "SUCCESS":
        raise _invalid("TRANSACTION.SUCCESS must carry trade_state SUCCESS", "trade_state")
    amount = resource.get("amount")
    if not isinstance(amount, dict):
        raise _invalid("amount must be an object", "amount")
    currency = parse_currency(amount.get("currency") or REFUND_CURRENCY)
    return CallbackEvent(
        event_id=event_id, type=CallbackEventType.PAYMENT_SUCCEEDED, payment_id=None,
        amount=from_minor_units(_fen(amount, "total"), currency), currency=currency,
        transaction_id=_string(resource, "transaction_id"),
        occurred_at=success_time(resource.get("success_time")),
        out_trade_no=_string(resource, "out_trade_no"))


def _refund_event(event_id: str, event_type: str, resource: dict[str, Any],
                  body: dict[str, Any]) -> CallbackEvent:
    expected_status, our_type = _REFUND_EVENTS[event_type]
    if resource.get("refund_status") != expected_status:
        raise _invalid(f"{event_type} must carry refund_status {expected_status}",
                       "refund_status")
    amount = resource.get("amount")
    if not isinstance(amount, dict):
        raise _invalid("amount must be an object", "amount")
    return CallbackEvent(
        event_id=event_id, type=our_type, payment_id=None,
        amount=from_minor_units(_fen(amount, "refund"), REFUND_CURRENCY),
        currency=REFUND_CURRENCY,
        # For a refund, WeChat Pay's refund_id is the provider's id of the refund.
        transaction_id=_string(resource, "refund_id"),
        occurred_at=success_time(resource.get("success_time") or body.get("create_time")),
        out_trade_no=_string(resource, "out_trade_no"),
        out_refund_no=_string(resource, "out_refund_no"))


def answer_stored() -> CallbackAnswer:
    # 200 or 204 with no body is WeChat Pay's "received".
    return CallbackAnswer(204)


def answer_refused(status: int, detail: str) -> CallbackAnswer:
    # WeChat Pay reads only the status (any non-2xx is retried); the body is for people.
    body = json.dumps({"code": "FAIL", "message": detail}, ensure_ascii=False).encode()
    return CallbackAnswer(status, body, "application/json")


def _header(headers: HeaderLookup, name: str) -> str:
    value = headers.get(name)
    if value is None or not value.strip():
        raise MissingSignature(f"The {name} header is missing")
    if len(value) > _MAX_HEADER:
        raise MalformedSignature(f"The {name} header is too long")
    return value.strip()


def _invalid(detail: str, field: str) -> InvalidInput:
    return InvalidInput(detail, code="invalid_callback", field=field)


def _string(data: dict[str, Any], name: str, max_len: int = 64) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise _invalid(f"{name} must be a non-empty string of at most {max_len} characters",
                       name)
    return value


def _fen(amount: dict[str, Any], name: str) -> int:
    value = amount.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _invalid(f"amount.{name} must be a positive whole number of fen",
                       f"amount.{name}")
    return value


def success_time(value: object) -> datetime | None:
    """An RFC 3339 time of WeChat Pay's (success_time), None when absent or unreadable:
    only the reconciliation's day depends on it, never whether money moved."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
