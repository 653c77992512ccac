"""Schemas of the OpenAPI document (web/openapi.py): request and response bodies.

Enumerations come from domain/, so they cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from domain.methods import CATALOG
from domain.money import DEFAULT_CURRENCY
from domain.statuses import CallbackStatus, OrderStatus, PaymentStatus, RefundStatus
from domain.wallet import OrderPurpose
from web.json_body import MAX_BODY_BYTES

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, /, **properties: Schema) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def string(description: str | None = None, **extra: Any) -> Schema:
    return {"type": "string", **({"description": description} if description else {}), **extra}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def currency_schema(supported: tuple[str, ...]) -> Schema:
    """The deployment's SUPPORTED_CURRENCIES; the first is the default."""
    return string("ISO 4217 code, one of SUPPORTED_CURRENCIES; another is 400 "
                  "`invalid_currency`", enum=list(supported), default=supported[0])


def strict_body_errors(errors: dict[int, str]) -> dict[int, str]:
    """What every POST of ours answers for a body it will not read (web/json_body.py)."""
    return {**errors,
            400: errors.get(400, "Invalid input") + "; `unknown_field` (+`field`, "
                 "`allowed_fields`): a field this operation does not take; `malformed_json`",
            413: f"`body_too_large`: the body is over {MAX_BODY_BYTES} bytes (+`max_bytes`)",
            415: "`unsupported_media_type`: a body that is not `application/json`"}


ID = {"type": "integer", "format": "int64", "minimum": 1}
TIMESTAMP = string("ISO 8601 with offset", format="date-time")
ENUMS = {"OrderStatus": OrderStatus, "PaymentStatus": PaymentStatus,
         "RefundStatus": RefundStatus, "CallbackStatus": CallbackStatus}

SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        ["detail", "code"],
        detail=string("A human sentence"),
        code=string("snake_case, stable: clients branch on it", pattern="^[a-z0-9_]+$"),
        field=string("The request field at fault, when there is one"),
        order_amount=ref("Money") | {"description": "amount_mismatch only"},
        payment_amount=ref("Money") | {"description": "amount_mismatch only"},
        retry_after={"type": "integer", "description": "429 only, seconds (also a header)"},
        balance=ref("Money") | {"description": "insufficient_balance, topup_already_spent: "
                                               "what the wallet holds"},
        amount=ref("Money") | {"description": "insufficient_balance, topup_already_spent: "
                                              "what was needed"},
    ) | {"additionalProperties": True,
         "description": 'Every error: {"detail", "code", ...extra fields}.'},
    "Money": string("A string with exactly the currency's ISO 4217 decimals (CNY \"100.00\", "
                    "JPY \"100\"); never a float", pattern=r"^\d+(\.\d{1,2})?$",
                    examples=["100.00"]),
    "AmountInput": {
        "type": ["string", "number"],
        "description": "Positive, with at most the currency's ISO 4217 decimals (CNY 2, "
                       "JPY and KRW 0); a string (\"100.00\") or a JSON number parsed "
                       "without float rounding. Anything else is 400 `invalid_amount`.",
        "examples": ["100.00"]},
    "Currency": currency_schema((DEFAULT_CURRENCY,)),
    **{name: string(enum=[s.value for s in enum]) for name, enum in ENUMS.items()},
    "OrderCreate": obj(
        ["total_amount"],
        total_amount=ref("AmountInput"), currency=ref("Currency"),
        order_number=string("Your reference, unique; generated when absent",
                            maxLength=64, pattern=r"^[A-Za-z0-9._-]{1,64}$"),
        user_id=ID | {"description": "Admin keys: required. User keys: omit (own user)."},
        purpose=string("wallet_topup: paying the order credits its user's wallet (CNY)",
                       enum=[p.value for p in OrderPurpose], default="purchase")),
    "OrderTransition": obj(["to"], to=ref("OrderStatus"), reason=string(maxLength=500)),
    "OrderHistoryEntry": obj(
        **{"from": nullable(ref("OrderStatus"))}, to=ref("OrderStatus"),
        reason=nullable(string()), actor=string(), at=TIMESTAMP),
    "Order": obj(
        ["id", "order_number", "user_id", "total_amount", "currency", "status"],
        id=ID, order_number=string(), user_id=ID, total_amount=ref("Money"),
        currency=ref("Currency"), status=ref("OrderStatus"),
        purpose=string(enum=[p.value for p in OrderPurpose]), amount_paid=ref("Money"),
        amount_refunded=ref("Money"), created_at=TIMESTAMP, updated_at=TIMESTAMP,
        history=array(ref("OrderHistoryEntry"))),
    "PaymentCreate": obj(
        ["order_id"], order_id=ID,
        method=string("A code (or alias) from GET /api/v1/payment-methods",
                      default="wechat", examples=sorted(c for c, m in CATALOG.items()
                                                        if m.enabled)),
        amount=ref("AmountInput") | {"description": "Defaults to the order total; when "
                                                    "given it must equal it to the cent"}),
    "Payment": obj(
        ["id", "order_id", "amount", "currency", "method", "status"],
        id=ID, order_id=ID, amount=ref("Money"), currency=ref("Currency"), method=string(),
        status=ref("PaymentStatus"), provider=string(), transaction_id=nullable(string()),
        out_trade_no=nullable(string(
            "Our reference at the provider (OUT_TRADE_NO_PREFIX + P + the id in 10 "
            "digits), fixed when the payment is first sent there",
            pattern=r"^[A-Za-z0-9_]{6,32}$")),
        pay_url=nullable(string("Where the customer pays; set once the provider answers")),
        attempt={"type": "integer", "minimum": 1}, fee=ref("Money"),
        refunded_amount=ref("Money"), created_at=TIMESTAMP, updated_at=TIMESTAMP,
        expires_at=TIMESTAMP, paid_at=nullable(TIMESTAMP),
        needs_review={"type": "boolean", "description": (
            "Flagged for a person: an amount mismatch, a second capture, a refund the "
            "provider could not pay out. Resolved by POST .../review")},
        checkout_url=string("The customer's cashier page: no API key, works until "
                            "expires_at", format="uri")),
    "PaymentLogEntry": obj(event=string("Audit event, e.g. payment_created"),
                           detail={"type": "object"}, actor=string(), at=TIMESTAMP),
    "PaymentDetail": {"allOf": [ref("Payment"),
                                obj(logs=array(ref("PaymentLogEntry")) | {
                                    "description": "Audit events, oldest first"})]},
    "PaymentPage": obj(["items", "page", "page_size", "total"],
                       items=array(ref("Payment")), page={"type": "integer", "minimum": 1},
                       page_size={"type": "integer", "minimum": 1, "maximum": 100},
                       total={"type": "integer", "minimum": 0}),
    "PaymentStatusView": obj(["id", "status", "updated_at"], id=ID,
                             status=ref("PaymentStatus"), updated_at=TIMESTAMP),
    "Reason": obj(reason=string(maxLength=500)),
    "RefundCreate": obj(amount=ref("AmountInput") | {
                            "description": "Defaults to what is left to refund"},
                        reason=string(maxLength=500)),
    "Refund": obj(["id", "payment_id", "amount", "currency", "status"],
                  id=ID, payment_id=ID, amount=ref("Money"), currency=ref("Currency"),
                  status=ref("RefundStatus"), reason=nullable(string()),
                  provider_refund_id=nullable(string()),
                  out_refund_no=nullable(string(
                      "Our reference at the provider (prefix + R + the id), fixed when "
                      "the refund is first sent there", pattern=r"^[A-Za-z0-9_]{6,32}$")),
                  needs_review={"type": "boolean", "description": (
                      "The provider accepted it but could not pay it out (WeChat Pay's "
                      "REFUND.ABNORMAL): a person decides")},
                  created_at=TIMESTAMP,
                  updated_at=TIMESTAMP, completed_at=nullable(TIMESTAMP)),
    "RefundList": obj(["items"], items=array(ref("Refund"))),
    "ReviewDecision": obj(["action"], action=string(
                              "accept: the recorded outcome stands; refund: refund what "
                              "remains", enum=["accept", "refund"]),
                          note=string(maxLength=500)),
    "ReviewOutcome": obj(["action", "payment", "refund"],
                         action=string(enum=["accept", "refund"]),
                         payment=ref("PaymentDetail"), refund=nullable(ref("Refund"))),
    "PaymentMethod": obj(
        ["code", "enabled"], code=string(), name=string(), enabled={"type": "boolean"},
        supports_qr={"type": "boolean"}, refundable={"type": "boolean"},
        fee_rate=string("A fraction: \"0.006\" is 0.6 %", pattern=r"^\d+(\.\d+)?$"),
        aliases=array(string())),
    "PaymentMethodList": obj(["items"], items=array(ref("PaymentMethod"))),
    "Callback": obj(
        ["id", "provider", "event_id", "status"], id=ID, provider=string(),
        event_id=string(), event_type=string(), payment_id=nullable(ID),
        status=ref("CallbackStatus"), attempts={"type": "integer", "minimum": 0},
        last_error=nullable(string()), received_at=TIMESTAMP, updated_at=TIMESTAMP,
        processed_at=nullable(TIMESTAMP),
        payload={"type": "object", "description": (
            "The normalised event (the sandbox's shape, whichever provider sent it; "
            "a real provider's out_trade_no / out_refund_no included)")}),
    "CallbackPage": obj(["items", "page", "page_size", "total"],
                        items=array(ref("Callback")), page={"type": "integer", "minimum": 1},
                        page_size={"type": "integer", "minimum": 1, "maximum": 200},
                        total={"type": "integer", "minimum": 0}),
    "CallbackReplay": obj(["id", "status", "previous_status", "enqueued"], id=ID,
                          status=ref("CallbackStatus"), previous_status=ref("CallbackStatus"),
                          enqueued={"type": "boolean", "description": (
                              "false when the broker was unreachable; the redelivery "
                              "sweep sends it later")}),
    "ProviderEvent": obj(
        ["id", "type", "data"], id=string(examples=["evt_123"]),
        type=string(enum=["payment.succeeded", "payment.failed", "refund.succeeded",
                          "refund.failed"]),
        data=obj(["payment_id"], payment_id=ID, transaction_id=string(), amount=ref("Money"),
                 currency=ref("Currency"), refund_id=ID | {"description": "refund events"},
                 occurred_at=TIMESTAMP)),
    "CallbackReceipt": obj(["received", "duplicate"], received={"const": True},
                           duplicate={"type": "boolean",
                                      "description": "This event id was stored before"}),
    "Health": obj(["status"], status=string(examples=["ok"])),
    "Readiness": obj(["status", "checks"], status=string(enum=["ready", "unavailable"]),
                     checks={"type": "object", "additionalProperties": string()}),
}
