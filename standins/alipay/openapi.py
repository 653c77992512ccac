"""The Alipay double's routes in our OpenAPI document (web/openapi.py merges them, dev and
test only), tagged "providers". The gateway speaks Alipay's protocol, not ours: a form of
common parameters signed RSA2 with the app's key, answered `{"<method>_response": {...},
"sign": "..."}` signed with the double's key. Plain data."""

from __future__ import annotations

from web.openapi_schemas import Schema, obj, string

JSON = "application/json"
HTML = "text/html"
TAG = "providers"
PREFIX = "/doubles/alipay"
FORM: Schema = obj(
    ["app_id", "method", "charset", "sign_type", "timestamp", "version", "biz_content",
     "sign"],
    app_id=string(), method=string(enum=[
        "alipay.trade.precreate", "alipay.trade.query", "alipay.trade.close",
        "alipay.trade.refund", "alipay.trade.fastpay.refund.query",
        "alipay.data.dataservice.bill.downloadurl.query"]),
    format=string(enum=["JSON"]), charset=string(enum=["utf-8"]),
    sign_type=string(enum=["RSA2"]), timestamp=string(examples=["2026-12-01 17:00:00"]),
    version=string(enum=["1.0"]), notify_url=string(),
    biz_content=string("The call's own parameters, as JSON text"), sign=string())
ANSWER: Schema = {"type": "object", "description": (
    "`{\"<method with _>_response\": {\"code\": \"10000\", ...}, \"sign\": \"...\"}`; a "
    "refused signature is `40002 isv.invalid-signature`, a business refusal `40004` with "
    "its `sub_code`"), "required": ["sign"], "properties": {"sign": string()}}
TRADE: Schema = obj(["out_trade_no", "status"], out_trade_no=string(), app_id=string(),
                    amount_minor={"type": "integer"}, refunded_minor={"type": "integer"},
                    status=string(), trade_no={"type": ["string", "null"]},
                    notify_url=string(), subject=string(), request_body={"type": "object"},
                    refunds={"type": "array", "items": {"type": "object"}})


def _op(op_id: str, summary: str, responses: dict[str, Schema], *,
        params: tuple[Schema, ...] = (), body: tuple[str, Schema] | None = None,
        description: str = "Dev and test only.") -> Schema:
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [TAG], "security": [],
                  "description": description, "parameters": list(params),
                  "responses": dict(sorted(responses.items()))}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {body[0]: {"schema": body[1]}}}
    return op


def _path(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": string()}


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _html(description: str) -> Schema:
    return {"description": description, "content": {HTML: {"schema": string()}}}


_GATEWAY = ("Alipay's open API gateway: the signed common parameters in a form (POST) "
            "or the query string (GET, as python-alipay-sdk sends them). Dev and test only.")
_DECIDED = {"200": _json("With Accept: application/json: the trade", {"type": "object"}),
            "303": {"description": "Back to the pay page, showing the result"},
            "400": _html("Not payable any more")}

ALIPAY_DOUBLE_PATHS: dict[str, dict[str, Schema]] = {
    f"{PREFIX}/gateway.do": {
        "post": _op("alipayDoubleGateway", "A signed gateway call (precreate, query, close, "
                    "refund, refund query, bill download URL)",
                    {"200": _json("The signed answer", ANSWER)},
                    body=("application/x-www-form-urlencoded", FORM), description=_GATEWAY),
        "get": _op("alipayDoubleGatewayGet", "The same call, its parameters in the query",
                   {"200": _json("The signed answer", ANSWER)}, description=_GATEWAY,
                   params=tuple({"name": name, "in": "query", "required": True,
                                 "schema": string()} for name in FORM["required"])),
    },
    f"{PREFIX}/bills/{{token}}": {"get": _op(
        "alipayDoubleBill", "A bill_download_url: the zip of the day's GBK CSV files",
        {"200": {"description": "The zip", "content": {"application/zip": {
            "schema": string(format="binary")}}},
         "503": {"description": "Expired, or a test fault", "content": {
             "text/plain": {"schema": string()}}}},
        params=(_path("token"),))},
    f"{PREFIX}/pay/{{token}}": {"get": _op(
        "alipayDoublePayPage", "The pay page (opening it is the buyer's scan)",
        {"200": _html("Amount, Approve, Decline"), "404": _html("No such trade")},
        params=(_path("token"),))},
    f"{PREFIX}/pay/{{token}}/approve": {"post": _op(
        "alipayDoubleApprove", "Pay: TRADE_SUCCESS and a notification (notify=0: none)",
        _DECIDED, params=(_path("token"),))},
    f"{PREFIX}/pay/{{token}}/decline": {"post": _op(
        "alipayDoubleDecline", "Decline: TRADE_CLOSED", _DECIDED, params=(_path("token"),))},
    f"{PREFIX}/test/trades/{{out_trade_no}}": {"get": _op(
        "alipayDoubleTrade", "Test view: the trade as the double holds it",
        {"200": _json("The trade", TRADE), "404": _json("No such trade", {"type": "object"})},
        params=(_path("out_trade_no"),))},
    f"{PREFIX}/test/trades/{{out_trade_no}}/refund-refusal": {"post": _op(
        "alipayDoubleRefundRefusal", "Test knob: the next refund of the trade is refused",
        {"200": _json("Staged", obj(["out_trade_no", "refund_refusal"],
                                    out_trade_no=string(), refund_refusal=string())),
         "404": _json("No such trade", {"type": "object"})},
        params=(_path("out_trade_no"),),
        body=(JSON, obj(sub_code=string(examples=["ACQ.SELLER_BALANCE_NOT_ENOUGH"]))))},
    f"{PREFIX}/test/notifications": {"get": _op(
        "alipayDoubleNotifications", "Test view: every notification the double sent",
        {"200": _json("Oldest first", obj(["items"], items={
            "type": "array", "items": {"type": "object"}}))})},
}
