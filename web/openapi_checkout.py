"""The cashier page's routes in our OpenAPI document (web/openapi.py merges them), tagged
"checkout". No API key: the `token` query parameter of the payment's `checkout_url` is
the credential; a wrong or expired token is 404, like a payment that does not exist."""

from __future__ import annotations

from web.openapi_schemas import ID, Schema, nullable, obj, ref, strict_body_errors, string

JSON = "application/json"
TAG = "checkout"
NOT_FOUND = ("No such payment, a wrong token, or the payment's time to pay is over "
             "(`payment_not_found`)")
PARAMS: list[Schema] = [
    {"name": "payment_id", "in": "path", "required": True, "description": "Payment id",
     "schema": ID},
    {"name": "token", "in": "query", "required": True,
     "description": "From the payment's `checkout_url`", "schema": string()},
]
STATUS = obj(
    ["payment_id", "status", "seconds_left"], payment_id=ID, status=ref("PaymentStatus"),
    method=string(), method_name=string(), supports_qr={"type": "boolean"},
    pay_url=nullable(string("The provider's pay page, once the payment has started")),
    has_qr={"type": "boolean", "description": "GET .../qr.svg draws it"},
    seconds_left={"type": "integer", "minimum": 0},
    can_retry={"type": "boolean", "description": "Whether the page offers Retry"})


def _error(text: str) -> Schema:
    return {"description": text, "content": {JSON: {"schema": ref("Error")}}}


def _op(op_id: str, summary: str, ok: dict[int, Schema], errors: dict[int, str],
        description: str | None = None, body: Schema | None = None) -> Schema:
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [TAG], "security": [],
                  "parameters": PARAMS}
    if description:
        op["description"] = description
    if body:
        op["requestBody"] = {"required": False, "content": {JSON: {"schema": body}}}
    responses = {**ok, **{status: _error(text) for status, text in errors.items()}}
    op["responses"] = {str(status): responses[status] for status in sorted(responses)}
    return op


CHECKOUT_PATHS: dict[str, dict[str, Schema]] = {
    "/checkout/shop-logo": {"get": {
        "operationId": "checkoutShopLogo", "summary": "The shop's logo (SHOP_LOGO_FILE)",
        "description": "Served by us, so the cashier page fetches nothing from elsewhere.",
        "tags": [TAG], "security": [],
        "responses": {"200": {"description": "The image", "content": {
                          "image/*": {"schema": string(format="binary")}}},
                      "404": _error("No logo is configured (`not_found`)")}}},
    "/checkout/{payment_id}": {"get": _op(
        "checkoutPage", "The cashier page (HTML, English or Chinese by Accept-Language)",
        description="Order number, amount, method choice, Pay; then the QR code and the "
                    "pay link; the status updates live. A dead link is a small HTML 404.",
        ok={200: {"description": "HTML", "content": {"text/html": {"schema": string()}}}},
        errors={404: NOT_FOUND})},
    "/checkout/{payment_id}/status": {"get": _op(
        "checkoutStatus", "What the page polls", ok={200: {
            "description": "The payment's state", "content": {JSON: {"schema": STATUS}}}},
        errors={404: NOT_FOUND})},
    "/checkout/{payment_id}/pay": {"post": _op(
        "checkoutPay", "The Pay button: the same start as POST /api/v1/payments/{id}/pay",
        description="`method` (optional, an enabled method) changes an init payment's "
                    "method first.",
        body=obj(method=string("A code from GET /api/v1/payment-methods")),
        ok={202: {"description": "Accepted", "content": {JSON: {"schema": STATUS}}}},
        errors=strict_body_errors({
            400: "`unsupported_method`", 404: NOT_FOUND,
            409: "`payment_not_payable`, `payment_expired`, `order_not_payable`"}))},
    "/checkout/{payment_id}/retry": {"post": _op(
        "checkoutRetry", "The Retry button: the same retry as POST "
        "/api/v1/payments/{id}/retry",
        ok={201: {"description": "The new attempt and its own checkout link",
                  "content": {JSON: {"schema": obj(
                      ["payment_id", "checkout_url"], payment_id=ID,
                      created={"type": "boolean"}, checkout_url=string(format="uri"))}}},
            200: {"description": "The order already had an active attempt: its link"}},
        errors=strict_body_errors({
            404: NOT_FOUND, 409: "`payment_not_retryable`, `retry_limit`, `order_not_payable`",
            429: "`retry_too_soon` (see Retry-After)"}))},
    "/checkout/{payment_id}/qr.svg": {"get": _op(
        "checkoutQr", "The payment's QR code, drawn on our server",
        ok={200: {"description": "SVG", "content": {"image/svg+xml": {"schema": string()}}}},
        errors={404: NOT_FOUND + "; or no QR code (yet): `qr_not_available`"})},
}
