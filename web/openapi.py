"""The OpenAPI 3.1 document of the HTTP API (DESIGN.md §5, §6), served at /openapi.json.

Written by hand as data, with a few helpers so that each operation reads as one
short entry; the body schemas are in web/openapi_schemas.py.
tests/integration/test_openapi.py checks that every route of the real app is here
with the same methods, and that nothing here lacks a route.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from services.idempotency import KEY_MAX_LENGTH
from standins.alipay.openapi import ALIPAY_DOUBLE_PATHS
from standins.sandbox.openapi import SANDBOX_PATHS
from standins.wechatpay.openapi import WECHATPAY_DOUBLE_PATHS
from web.openapi_checkout import CHECKOUT_PATHS
from web.openapi_examples import with_examples
from web.openapi_providers import PROVIDER_PATHS
from web.openapi_reconciliation import RECONCILIATION_SCHEMAS, reconciliation_paths
from web.openapi_schemas import (
    ID,
    SCHEMAS,
    TIMESTAMP,
    Schema,
    currency_schema,
    ref,
    strict_body_errors,
    string,
)
from web.openapi_wallets import WALLET_SCHEMAS, wallet_paths
from web.openapi_webhooks import WEBHOOK_PARAMETERS, WEBHOOK_SCHEMAS, webhook_paths

API = "/api/v1"
JSON = "application/json"


def _param(name: str, where: str, schema: Schema, description: str,
           required: bool = False) -> Schema:
    return {"name": name, "in": where, "required": required or where == "path",
            "description": description, "schema": schema}


PARAMETERS: dict[str, Schema] = {
    "OrderId": _param("order_id", "path", ID, "Order id"),
    "PaymentId": _param("payment_id", "path", ID, "Payment id"),
    "CallbackId": _param("callback_id", "path", ID, "Stored callback (inbox row) id"),
    "IdempotencyKey": _param(
        "Idempotency-Key", "header", string(minLength=1, maxLength=KEY_MAX_LENGTH),
        "Any unique string (a UUID is fine), at most 255 characters. The same key with "
        "the same request within 24 h replays the first response (header "
        "Idempotent-Replayed: true); with another body it is 422; while the first "
        "request is still running it is 409. 5xx answers are not stored."),
}


def p(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _error(description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": ref("Error")}}}


def _ok(description: str, schema: Schema | None, media: str = JSON) -> Schema:
    response: Schema = {"description": description}
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    return response


REPLAYED_HEADER: Schema = {"Idempotent-Replayed": {
    "description": "\"true\" when this is the stored response of an earlier request "
                   "with the same Idempotency-Key",
    "schema": string(enum=["true"])}}


def operation(op_id: str, summary: str, tag: str, *, ok: dict[int, Schema],
              errors: dict[int, str] | None = None, params: list[Schema] | None = None,
              body: str | None = None, body_required: bool = False, auth: str = "key",
              description: str | None = None) -> Schema:
    """auth: "key" (any API key), "admin" (admin keys only) or "none"."""
    errors = dict(errors or {})
    if auth != "none":
        errors.setdefault(401, "No API key, or an invalid one (`missing_api_key`, "
                               "`invalid_api_key`)")
    if auth == "admin":
        errors.setdefault(403, "Not an admin key (`admin_only`)")
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [tag],
                  "security": [] if auth == "none" else [{"bearerAuth": []}]}
    if auth == "admin":
        op["x-admin-only"] = True
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": body_required,
                             "content": {JSON: {"schema": ref(body)}}}
    op["responses"] = {str(status): response for status, response in sorted(
        {**ok, **{status: _error(text) for status, text in errors.items()}}.items())}
    return op


def api_post(op_id: str, summary: str, tag: str, *, ok: dict[int, Schema],
             errors: dict[int, str] | None = None, params: list[Schema] | None = None,
             **kwargs: Any) -> Schema:
    """A POST under /api/v1: takes Idempotency-Key; its answers may be replays."""
    errors = strict_body_errors(dict(errors or {}))
    errors[400] = errors[400] + "; `invalid_idempotency_key`"
    errors[409] = (errors[409] + "; " if 409 in errors else "") + (
        "`idempotency_request_in_progress`: the first request with this key is still "
        "running")
    errors[422] = "`idempotency_key_reused`: this key was used with another request"
    ok = {status: response | {"headers": REPLAYED_HEADER} for status, response in ok.items()}
    return operation(op_id, summary, tag, ok=ok, errors=errors,
                     params=[*(params or []), p("IdempotencyKey")], **kwargs)


def query(name: str, schema: Schema, description: str) -> Schema:
    return _param(name, "query", schema, description)


NOT_FOUND_ORDER = "No such order, or not yours (`order_not_found`)"
NOT_FOUND_PAYMENT = "No such payment, or not yours (`payment_not_found`)"

PATHS: dict[str, dict[str, Schema]] = {
    f"{API}/orders": {"post": api_post(
        "createOrder", "Create an order", "orders", body="OrderCreate", body_required=True,
        ok={201: _ok("The new order", ref("Order"))},
        errors={400: "Invalid input (`invalid_amount`, `invalid_currency`, "
                     "`user_id_required`, `invalid_field`)",
                403: "A user key naming another user (`user_id_not_allowed`)",
                409: "`duplicate_order_number`"},
        description="`purpose: wallet_topup` (CNY only) makes an order that credits its "
                    "user's wallet when paid by any method but the balance.")},
    f"{API}/orders/{{order_id}}": {"get": operation(
        "getOrder", "An order with its status history and paid/refunded totals", "orders",
        params=[p("OrderId")], ok={200: _ok("The order", ref("Order"))},
        errors={404: NOT_FOUND_ORDER})},
    f"{API}/orders/{{order_id}}/transitions": {"post": api_post(
        "transitionOrder", "Move an order through its state machine", "orders",
        auth="admin", params=[p("OrderId")], body="OrderTransition", body_required=True,
        ok={200: _ok("The order after the change", ref("Order"))},
        errors={400: "Unknown status (`invalid_status`)", 404: NOT_FOUND_ORDER,
                409: "Not allowed from the current status (`invalid_transition`), or a "
                     "wallet top-up moved to paid by hand (`topup_paid_by_payment_only`); "
                     "nothing changed"})},
    f"{API}/payments": {
        "post": api_post(
            "createPayment", "Create a payment for an order", "payments",
            body="PaymentCreate", body_required=True,
            ok={201: _ok("The new payment", ref("PaymentDetail")),
                200: _ok("The order already has an active payment: that one",
                         ref("PaymentDetail"))},
            errors={400: "`unsupported_method` (also `balance` for a wallet top-up or "
                         "a non-CNY order), `invalid_amount`, or `amount_mismatch` "
                         "(with `order_amount` and `payment_amount`)",
                    404: NOT_FOUND_ORDER,
                    409: "`order_not_payable` (order not pending), `order_expired`"}),
        "get": operation(
            "listPayments", "List payments, newest first", "payments",
            params=[query("order_id", ID, "Only this order's"),
                    query("status", ref("PaymentStatus"), "Only this status"),
                    query("method", string(), "Only this method"),
                    query("user_id", ID, "Only this user's (admin keys)"),
                    query("created_from", TIMESTAMP, "Created at or after"),
                    query("created_to", TIMESTAMP, "Created before"),
                    query("needs_review", {"type": "boolean"},
                          "true: only payments flagged for review; false: only the "
                          "others"),
                    query("page", {"type": "integer", "minimum": 1, "default": 1}, "Page"),
                    query("page_size", {"type": "integer", "minimum": 1, "maximum": 100,
                                        "default": 20}, "Items per page")],
            ok={200: _ok("One page; user keys see only their own", ref("PaymentPage"))},
            errors={400: "A malformed filter (`invalid_field`)",
                    403: "A user key asking for another user_id (`admin_only`)"})},
    f"{API}/payments/{{payment_id}}": {"get": operation(
        "getPayment", "A payment with its audit log", "payments", params=[p("PaymentId")],
        ok={200: _ok("The payment", ref("PaymentDetail"))}, errors={404: NOT_FOUND_PAYMENT})},
    f"{API}/payments/{{payment_id}}/status": {"get": operation(
        "getPaymentStatus", "A payment's status only (cheap to poll)", "payments",
        params=[p("PaymentId")], ok={200: _ok("Its status", ref("PaymentStatusView"))},
        errors={404: NOT_FOUND_PAYMENT})},
    f"{API}/payments/{{payment_id}}/pay": {"post": api_post(
        "payPayment", "Start paying: queue the provider call", "payments",
        params=[p("PaymentId")],
        description="The status becomes processing; `pay_url` appears once the worker "
                    "has it from the provider (poll the payment). A `balance` payment is "
                    "settled at once from the owner's wallet instead: 200, succeeded, the "
                    "order paid.",
        ok={202: _ok("Accepted; the payment as it is now", ref("PaymentDetail")),
            200: _ok("A balance payment, paid from the wallet", ref("PaymentDetail"))},
        errors={404: NOT_FOUND_PAYMENT,
                409: "`payment_not_payable`, `payment_expired`, `order_not_payable`, "
                     "`insufficient_balance` (with `balance` and `amount`; nothing "
                     "changed)"})},
    f"{API}/payments/{{payment_id}}/cancel": {"post": api_post(
        "cancelPayment", "Cancel a payment (idempotent)", "payments",
        params=[p("PaymentId")], body="Reason",
        ok={200: _ok("The cancelled payment (also when it already was)",
                     ref("PaymentDetail"))},
        errors={404: NOT_FOUND_PAYMENT,
                409: "Already paid or otherwise final (`payment_not_cancellable`), or paid "
                     "at the provider meanwhile (`payment_already_paid`)"})},
    f"{API}/payments/{{payment_id}}/retry": {"post": api_post(
        "retryPayment", "A new attempt for the same order", "payments",
        params=[p("PaymentId")],
        description="From a failed, expired or cancelled payment; at most 3 retries per "
                    "order, at least 30 s apart.",
        ok={201: _ok("The new attempt", ref("PaymentDetail")),
            200: _ok("The order already has an active attempt: that one",
                     ref("PaymentDetail"))},
        errors={404: NOT_FOUND_PAYMENT,
                409: "`payment_not_retryable`, `retry_limit`, `order_not_payable`",
                429: "Too soon after the previous attempt (`retry_too_soon`; see "
                     "Retry-After)"})},
    f"{API}/payments/{{payment_id}}/refunds": {
        "post": api_post(
            "createRefund", "Refund a payment, fully or partly", "refunds", auth="admin",
            params=[p("PaymentId")], body="RefundCreate",
            description="From a succeeded or partially_refunded payment of a refundable "
                        "method. What remains is the amount less what was refunded and "
                        "refunds still in flight. A refund that returns all the order still "
                        "holds moves the order to refunding (then refunded, or back to paid "
                        "if it fails). The refund goes pending -> processing (the provider "
                        "accepted it) -> succeeded | failed (the provider's callback); the "
                        "payment becomes partially_refunded or refunded. A balance "
                        "payment's refund is credited to the wallet at once (already "
                        "succeeded in this answer); a wallet top-up's takes its money out "
                        "of the wallet now.",
            ok={202: _ok("Accepted (pending); a worker executes it with the provider",
                         ref("Refund"))},
            errors={400: "`invalid_amount`, `invalid_field` (reason), or "
                         "`refund_exceeds_remaining` (with `remaining`)",
                    404: NOT_FOUND_PAYMENT,
                    409: "`payment_not_refundable` (not succeeded/partially_refunded), "
                         "`method_not_refundable`, `topup_already_spent` (a wallet "
                         "top-up whose money the wallet no longer holds)"}),
        "get": operation(
            "listRefunds", "A payment's refunds", "refunds", params=[p("PaymentId")],
            ok={200: _ok("Oldest first", ref("RefundList"))}, errors={404: NOT_FOUND_PAYMENT})},
    f"{API}/payments/{{payment_id}}/review": {"post": api_post(
        "resolvePaymentReview", "Resolve a payment flagged for review", "payments",
        auth="admin", params=[p("PaymentId")], body="ReviewDecision", body_required=True,
        description="For a payment with `needs_review` (list them with "
                    "`GET /payments?needs_review=true`). `accept`: the payment's recorded "
                    "outcome stands and the flag is cleared. `refund`: a full refund of "
                    "what remains is started (as POST .../refunds) and the flag cleared, "
                    "in one transaction: when the refund is refused nothing changes. "
                    "Audited as `review_accepted` / `review_refunded` with the note.",
        ok={200: _ok("Accepted: the flag is cleared", ref("ReviewOutcome")),
            202: _ok("Refund started (pending; a worker executes it), flag cleared",
                     ref("ReviewOutcome"))},
        errors={400: "`invalid_review_action`, `invalid_field` (note), or for a refund "
                     "`refund_exceeds_remaining`",
                404: NOT_FOUND_PAYMENT,
                409: "`payment_not_flagged` (nothing to review), or for a refund "
                     "`payment_not_refundable`, `method_not_refundable`"})},
    f"{API}/payment-methods": {"get": operation(
        "listPaymentMethods", "The payment method catalog with fee rates", "payments",
        ok={200: _ok("All methods, disabled ones included", ref("PaymentMethodList"))})},
    f"{API}/callbacks": {"get": operation(
        "listCallbacks", "Stored provider callbacks (the inbox)", "callbacks", auth="admin",
        params=[query("status", ref("CallbackStatus"), "Only this status"),
                query("payment_id", ID, "Only this payment's"),
                query("page", {"type": "integer", "minimum": 1, "default": 1}, "Page"),
                query("page_size", {"type": "integer", "minimum": 1, "maximum": 200,
                                    "default": 50}, "Items per page")],
        ok={200: _ok("Newest first", ref("CallbackPage"))},
        errors={400: "`invalid_status`, `invalid_page`, `invalid_field`"})},
    f"{API}/callbacks/{{callback_id}}/replay": {"post": api_post(
        "replayCallback", "Process a stored callback again", "callbacks", auth="admin",
        params=[p("CallbackId")],
        description="For failed, unmatched, rejected or stuck callbacks: back to "
                    "`received` with a fresh attempt budget, then queued.",
        ok={202: _ok("Queued again", ref("CallbackReplay"))},
        errors={404: "No such callback (`callback_not_found`)",
                409: "Already processed (`callback_already_processed`)"})},
    "/callbacks/{provider}": {"post": operation(
        "receiveProviderCallback", "A payment provider's signed event (webhook)",
        "providers", auth="none", body="ProviderEvent", body_required=True,
        params=[_param("provider", "path", string(pattern="^[a-z0-9_]+$",
                                                  examples=["sandbox"]),
                       "Provider name (this shape is the sandbox's; /callbacks/wechatpay "
                       "and /callbacks/alipay speak their providers' own)"),
                _param("Sandbox-Signature", "header", string(
                    pattern=r"^t=\d+(,v1=[0-9a-f]+)+$"),
                    "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.\" + raw body>; any "
                    "one v1 may match; |now - t| within CALLBACK_TOLERANCE_SECONDS",
                    required=True)],
        description="Stored in the inbox (unique per provider + event id) before the "
                    "answer; applied exactly once by a worker.",
        ok={200: _ok("Stored (or stored before: duplicate)", ref("CallbackReceipt"))},
        errors={400: "Not JSON, or fields missing (`malformed_json`, `invalid_callback`)",
                401: "Bad, missing or stale signature (`invalid_signature`)",
                404: "Unknown provider (`unknown_provider`)", 413: "Body over 64 KiB",
                503: "Database unavailable: not stored, retry"})},
    "/healthz": {"get": operation(
        "healthz", "The process is up", "operations", auth="none",
        ok={200: _ok("Up", ref("Health"))})},
    "/readyz": {"get": operation(
        "readyz", "PostgreSQL and Redis (and a RabbitMQ broker) are reachable", "operations",
        auth="none",
        ok={200: _ok("Ready", ref("Readiness")),
            503: _ok("A dependency is unreachable (named in checks)", ref("Readiness"))})},
    "/metrics": {"get": operation(
        "metrics", "Prometheus metrics", "operations", auth="none",
        ok={200: _ok("Prometheus text format", string(), media="text/plain")})},
    "/openapi.json": {"get": operation(
        "openapi", "This document", "operations", auth="none",
        ok={200: _ok("OpenAPI 3.1", {"type": "object"})})},
    "/docs": {"get": operation(
        "docs", "This API's documentation as a web page (works offline)", "operations",
        auth="none", ok={200: _ok("HTML", string(), media="text/html")})},
}
# The customer's cashier page (web/routes/checkout.py).
PATHS.update(CHECKOUT_PATHS)
# WeChat Pay's and Alipay's notifications, each in its own protocol (DESIGN.md §6b).
PATHS.update(PROVIDER_PATHS)
# Wallets and their ledgers (DESIGN.md §10).
PATHS.update(wallet_paths(operation=operation, api_post=api_post, ok=_ok))
# Merchant webhooks, the events feed and notifications (DESIGN.md §9).
PATHS.update(webhook_paths())
# The daily reconciliation against the providers' statements (issue #17).
PATHS.update(reconciliation_paths(operation=operation, ok=_ok, query=query))


@cache
def openapi_spec(currencies: tuple[str, ...] = ("CNY",),
                 with_standins: bool = True) -> dict[str, Any]:
    """The document for a deployment that takes `currencies` (SUPPORTED_CURRENCIES), with
    a request and a response example for every operation; `with_standins`: the sandbox's
    and the two doubles' routes too (dev and test only, where they are mounted under
    /sandbox and /doubles/)."""
    paths = ({**PATHS, **SANDBOX_PATHS, **WECHATPAY_DOUBLE_PATHS, **ALIPAY_DOUBLE_PATHS}
             if with_standins else PATHS)
    return with_examples({
        "openapi": "3.1.0",
        "info": {
            "title": "payments",
            "version": "1.0.0",
            "description": (
                "Payments for e-commerce backends. JSON everywhere; money is a string "
                "with the currency's ISO 4217 decimals (\"100.00\" CNY, \"100\" JPY). "
                "Send `Authorization: Bearer <key>`: admin keys act on everything, user "
                "keys only on their own orders and payments (anything "
                "else is 404, so existence does not leak). Errors are "
                "`{\"detail\", \"code\", ...}`. Every POST under /api/v1 accepts an "
                "`Idempotency-Key`."),
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": name} for name in
                 ("orders", "payments", "refunds", "wallets", "callbacks", "providers",
                  "checkout", "webhooks", "notifications", "reconciliation", "operations")],
        "paths": paths,
        "components": {
            "schemas": {**SCHEMAS, **WALLET_SCHEMAS, **WEBHOOK_SCHEMAS, **RECONCILIATION_SCHEMAS,
                        "Currency": currency_schema(currencies)},
            "parameters": {**PARAMETERS, **WEBHOOK_PARAMETERS},
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "An API key from `payments keys create`"}},
        },
    })
