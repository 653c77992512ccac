"""Alipay's asynchronous notifications (trade_status_sync): verify, parse, answer.

    POST /callbacks/alipay   application/x-www-form-urlencoded; charset=<charset field>
    notify_id, notify_time, notify_type, app_id, trade_no, out_trade_no, trade_status,
    total_amount, gmt_payment, ..., charset, version, sign_type=RSA2, sign

The signature covers the sorted, URL-decoded fields without `sign` and `sign_type`.
The answer Alipay waits for is the body `success`; anything else and it retries
(4m, 10m, 10m, 1h, 2h, 6h, 15h). No freshness window is applied to notify_time, unlike
WeChat Pay's timestamp: Alipay does not promise when a retry is stamped, a window would
refuse honest retries hours later, and a replay of a stored notify_id is a duplicate.

A refund of a paid trade is notified too, as a trade_status_sync carrying out_biz_no
(the refund's out_request_no), refund_fee and gmt_refund. Alipay's refund_fee there is
the trade's TOTAL refunded so far, not this refund's amount, and our refunds are settled
from the refund call's own synchronous answer anyway. So such a notification is read for
what its trade_status says about the trade: TRADE_SUCCESS (a partial refund) repeats the
payment's success with the same trade_no, TRADE_CLOSED (refunded in full) is a failure
that never regresses a success. Both settle as harmless duplicates.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from adapters.providers.alipay import signing
from adapters.providers.alipay.gateway import BEIJING, TIMESTAMP_FORMAT
from adapters.providers.base import CallbackAnswer, CallbackRequest
from domain.callback_auth import (
    MalformedSignature,
    MissingSignature,
    SignatureMismatch,
    WrongMerchant,
)
from domain.callback_events import (
    MAX_EVENT_ID_LENGTH,
    MAX_REFERENCE_LENGTH,
    MAX_TRANSACTION_ID_LENGTH,
    CallbackEvent,
    CallbackEventType,
)
from domain.errors import InvalidInput
from domain.money import parse_amount

TEXT_PLAIN = "text/plain; charset=utf-8"
ANSWER_SUCCESS = CallbackAnswer(200, b"success", TEXT_PLAIN)
FORM_TYPE = "application/x-www-form-urlencoded"
# Charsets Alipay sends notifications in (the app's setting); Python's codec names.
CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb2312": "gb2312",
            "gb18030": "gb18030"}
MAX_FIELDS = 100
EVENT_TYPES = {
    "TRADE_SUCCESS": CallbackEventType.PAYMENT_SUCCEEDED,
    "TRADE_FINISHED": CallbackEventType.PAYMENT_SUCCEEDED,
    "TRADE_CLOSED": CallbackEventType.PAYMENT_FAILED,
}
CURRENCY = "CNY"


def parse_notification(request: CallbackRequest, *, app_id: str,
                       alipay_public_key: RSAPublicKey) -> CallbackEvent:
    """The verified notification as our event; SignatureRejected if it is not Alipay's
    for our app, InvalidInput if it is authentic but not a trade status we read."""
    fields = decode_form(request)
    signature = fields.get("sign", "")
    if not signature:
        raise MissingSignature("The notification has no sign field")
    if fields.get("sign_type", signing.SIGN_TYPE) != signing.SIGN_TYPE:
        # RSA (SHA-1) is weaker; this app is set up for RSA2 only.
        raise MalformedSignature("The notification's sign_type is not RSA2")
    message = signing.notification_signing_string(fields)
    if not signing.verify(message, signature, alipay_public_key):
        raise SignatureMismatch("The notification's sign does not match its fields")
    if fields.get("app_id") != app_id:
        raise WrongMerchant("The notification is addressed to another app_id")
    return _event(fields)


def decode_form(request: CallbackRequest) -> dict[str, str]:
    """The form's fields, decoded with the charset the form names for itself."""
    content_type = request.headers.get("Content-Type") or ""
    if content_type.split(";")[0].strip().lower() != FORM_TYPE:
        raise InvalidInput(f"An Alipay notification is {FORM_TYPE}", code="malformed_body")
    try:
        # Percent-escapes are undone byte for byte first; the charset field then says
        # how those bytes read as text (latin-1 maps every byte to itself).
        pairs = parse_qsl(request.body.decode("latin-1"), keep_blank_values=True,
                          encoding="latin-1", max_num_fields=MAX_FIELDS)
    except ValueError:
        raise InvalidInput("The notification is not a readable form",
                           code="malformed_body") from None
    raw = dict(pairs)
    if len(raw) != len(pairs):
        # Which of two values was signed? Alipay never repeats a field.
        raise MalformedSignature("The notification repeats a field")
    charset = CHARSETS.get(raw.get("charset", "utf-8").strip().lower())
    if charset is None:
        raise InvalidInput("The notification's charset is not one Alipay uses",
                           code="malformed_body")
    try:
        fields = {key.encode("latin-1").decode(charset): value.encode("latin-1").decode(
            charset) for key, value in raw.items()}
    except UnicodeDecodeError:
        raise InvalidInput(f"The notification is not valid {charset}",
                           code="malformed_body") from None
    if any("\x00" in key or "\x00" in value for key, value in fields.items()):
        raise InvalidInput("The notification contains NUL characters", code="malformed_body")
    return fields


def _event(fields: dict[str, str]) -> CallbackEvent:
    trade_status = fields.get("trade_status")
    event_type = EVENT_TYPES.get(trade_status or "")
    if event_type is None:
        raise _invalid(f"trade_status {trade_status!r} is not one we act on",
                       "trade_status")
    amount = parse_amount(_required(fields, "total_amount", 40), field="total_amount")
    transaction_id = _required(fields, "trade_no", MAX_TRANSACTION_ID_LENGTH)
    when = (fields.get("gmt_payment") if event_type is CallbackEventType.PAYMENT_SUCCEEDED
            else fields.get("gmt_close")) or fields.get("notify_time")
    return CallbackEvent(
        event_id=_required(fields, "notify_id", MAX_EVENT_ID_LENGTH),
        type=event_type, payment_id=None, amount=amount, currency=CURRENCY,
        transaction_id=transaction_id, occurred_at=_beijing_time(when),
        out_trade_no=_required(fields, "out_trade_no", MAX_REFERENCE_LENGTH))


def _required(fields: dict[str, str], name: str, max_length: int) -> str:
    value = fields.get(name, "").strip()
    if not value or len(value) > max_length:
        raise _invalid(f"{name} must be present, at most {max_length} characters", name)
    return value


def _beijing_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), TIMESTAMP_FORMAT).replace(tzinfo=BEIJING)
    except ValueError:
        raise _invalid("times must read yyyy-MM-dd HH:mm:ss", "gmt_payment") from None


def _invalid(detail: str, field: str) -> InvalidInput:
    return InvalidInput(detail, code="invalid_callback", field=field)
