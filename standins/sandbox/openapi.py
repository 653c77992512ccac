"""The sandbox provider's routes in our OpenAPI document (web/openapi.py merges them),
tagged "providers". Plain data; schemas inline, errors in our Error shape."""

from __future__ import annotations

from web.openapi_schemas import ID, Schema, array, nullable, obj, ref, string

JSON = "application/json"
TAG = "providers"
MERCHANT_KEY = ("The merchant key is the sandbox's shared secret: "
                "`Authorization: Bearer <SANDBOX_WEBHOOK_SECRET>`.")
MONEY = string(pattern=r"^\d+\.\d{2}$", examples=["100.00"])
TICKET = {"name": "ticket", "in": "path", "required": True, "description": "The reference",
          "schema": string(pattern="^tkt_[0-9a-f]+$")}

TEST_OPTIONS = obj(
    deliver_twice={"type": "boolean", "description": "Send each callback twice (one event id)"},
    fail_first={"type": "integer", "minimum": 0, "maximum": 20,
                "description": "Pretend the first N attempts of each callback failed"},
    delay_seconds={"type": "integer", "minimum": 0, "maximum": 3600,
                   "description": "No attempt before this long after the event"},
    out_of_order={"type": "boolean", "description": "Reverse the next pair of callbacks; a "
                  "declined ticket may then still be approved once"},
    fail_refunds={"type": "boolean", "description": "Refunds end in refund.failed"},
    callback_url=nullable(string("dev/test only: where callbacks go instead of "
                                 "PUBLIC_BASE_URL/callbacks/sandbox")))
PAYMENT = obj(
    ["reference", "status", "pay_url", "amount", "currency", "method"],
    reference=string(), status=string(enum=["pending", "succeeded", "failed", "closed"]),
    pay_url=string(format="uri"), qr_payload=nullable(string()), merchant_payment_id=ID,
    amount=MONEY, currency=string(), method=string(), transaction_id=nullable(string()),
    refunded_amount=MONEY)
# "accepted" for a new refund; a repeated request (same refund_id) gets its outcome.
REFUND = obj(["reference", "status"], reference=string(),
             status=string(enum=["accepted", "succeeded", "failed"]),
             payment_reference=string(), refund_id=ID, amount=MONEY, currency=string())
DELIVERY = obj(id=ID, event_id=string(), type=string(), url=string(),
               status=string(enum=["held", "waiting", "pending", "delivered", "abandoned"]),
               attempts={"type": "integer"}, last_status=nullable({"type": "integer"}),
               last_error=nullable(string()), delivered_at=nullable(string(format="date-time")),
               after_delivery_id=nullable(ID))


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _op(op_id: str, summary: str, *, ok: dict[int, Schema], errors: dict[int, str],
        merchant: bool = True, params: list[Schema] | None = None, body: Schema | None = None,
        description: str | None = None) -> Schema:
    if merchant:
        errors = {401: "No or wrong merchant key (`invalid_merchant_key`)", **errors}
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [TAG],
                  "security": [{"bearerAuth": []}] if merchant else [],
                  "description": " ".join(filter(None, [description,
                                                        MERCHANT_KEY if merchant else None]))}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    responses = {**ok, **{status: _json(text, ref("Error")) for status, text in errors.items()}}
    op["responses"] = {str(status): responses[status] for status in sorted(responses)}
    return op


def _decide(op_id: str, button: str, event: str) -> Schema:
    return _op(op_id, f"The pay page's {button} button", merchant=False, params=[TICKET],
               description=f"Sends a signed `{event}` callback. Answers 303 to the pay page "
                           "(JSON clients get the payment).",
               ok={303: {"description": "Back to the pay page, showing the result"},
                   200: _json("With Accept: application/json", PAYMENT)},
               errors={404: "No such ticket (`unknown_reference`)",
                       409: "Not pending (`ticket_not_pending`); an HTML page unless "
                            "JSON is asked for"})


SANDBOX_PATHS: dict[str, dict[str, Schema]] = {
    "/sandbox/api/payments": {"post": _op(
        "sandboxCreatePayment", "Create a payment at the sandbox (idempotent per merchant id)",
        body=obj(["merchant_payment_id", "amount", "method"], merchant_payment_id=ID,
                 amount=MONEY, currency=string(examples=["CNY"]), method=string(),
                 test_options=TEST_OPTIONS),
        ok={201: _json("Created", PAYMENT),
            200: _json("The same merchant_payment_id again: the same payment", PAYMENT)},
        errors={400: "`invalid_field`, `invalid_amount`, `unsupported_method`, "
                     "`invalid_test_options`",
                409: "The merchant id names a payment with other terms "
                     "(`merchant_payment_id_reused`)"})},
    "/sandbox/api/payments/{ticket}": {"get": _op(
        "sandboxGetPayment", "Status query", params=[TICKET],
        ok={200: _json("The payment", PAYMENT)},
        errors={404: "No such ticket (`unknown_reference`)"})},
    "/sandbox/api/payments/{ticket}/close": {"post": _op(
        "sandboxClosePayment", "Close a payment that is not paid", params=[TICKET],
        ok={200: _json("Closed (closing twice is fine)", PAYMENT)},
        errors={404: "No such ticket (`unknown_reference`)",
                409: "Already paid (`already_paid`)"})},
    "/sandbox/api/payments/{ticket}/test-options": {"post": _op(
        "sandboxSetTestOptions", "Change the test knobs (only the fields sent)",
        params=[TICKET], body=TEST_OPTIONS, ok={200: _json("All knobs now", TEST_OPTIONS)},
        errors={400: "`invalid_test_options`", 404: "No such ticket (`unknown_reference`)"})},
    "/sandbox/api/payments/{ticket}/deliveries": {"get": _op(
        "sandboxListDeliveries", "The ticket's callbacks and their delivery attempts",
        params=[TICKET], ok={200: _json("Oldest first", obj(["items"], items=array(DELIVERY)))},
        errors={404: "No such ticket (`unknown_reference`)"})},
    "/sandbox/api/refunds": {"post": _op(
        "sandboxRefund", "Refund (part of) a paid payment",
        description="Accepted now, confirmed by a `refund.succeeded` callback.",
        body=obj(["reference", "refund_id", "amount"], reference=string(), refund_id=ID,
                 amount=MONEY),
        ok={202: _json("Accepted", REFUND),
            200: _json("The same refund_id again: the first answer", REFUND)},
        errors={400: "`refund_exceeds_remaining` (with `remaining`), `invalid_amount`",
                404: "No such ticket (`unknown_reference`)",
                409: "Not paid (`not_paid`) or refund_id reused (`refund_id_reused`)"})},
    "/sandbox/api/statements/{day}": {"get": _op(
        "sandboxStatement", "The day's statement: tickets paid and refunds paid out",
        description="Days are cut in Beijing time, as WeChat Pay's and Alipay's.",
        params=[{"name": "day", "in": "path", "required": True,
                 "description": "YYYY-MM-DD", "schema": string(examples=["2026-12-01"])}],
        ok={200: _json("The statement", obj(
            ["date", "payments", "refunds"], date=string(format="date"),
            payments=array(obj(["merchant_payment_id", "reference", "transaction_id",
                                "amount", "currency"], merchant_payment_id=ID,
                               reference=string(), transaction_id=string(), amount=MONEY,
                               currency=string())),
            refunds=array(obj(["merchant_refund_id", "merchant_payment_id", "reference",
                               "amount", "currency"], merchant_refund_id=ID,
                              merchant_payment_id=ID, reference=string(), amount=MONEY,
                              currency=string()))))},
        errors={400: "Not a date (`invalid_date`)",
                503: "Not available now (`statement_unavailable`, a test fault)"})},
    "/sandbox/pay/{ticket}": {"get": _op(
        "sandboxPayPage", "The pay page: amount, method, Approve and Decline", merchant=False,
        params=[TICKET], ok={200: {"description": "HTML (JSON with Accept: application/json)",
                                   "content": {"text/html": {"schema": string()}}}},
        errors={404: "No such ticket (`unknown_reference`)"})},
    "/sandbox/pay/{ticket}/approve": {"post": _decide(
        "sandboxApprove", "Approve", "payment.succeeded")},
    "/sandbox/pay/{ticket}/decline": {"post": _decide(
        "sandboxDecline", "Decline", "payment.failed")},
}
