"""The WeChat Pay double's routes in our OpenAPI document (web/openapi.py merges them),
tagged "providers". They speak WeChat Pay's protocol, not ours: the merchant's
`Authorization: WECHATPAY2-SHA256-RSA2048 ...` authenticates, answers are signed
(Wechatpay-* headers) and errors are WeChat Pay's `{"code", "message"}`. Plain data."""

from __future__ import annotations

from web.openapi_schemas import Schema, obj, string

JSON = "application/json"
TAG = "providers"
PREFIX = "/doubles/wechatpay"
SIGNED = ("Dev and test only. The request must carry the merchant's signature over "
          "`METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n` (URL from /v3 on); the answer is "
          "signed under the double's PUB_KEY_ID_... serial.")
ERROR: Schema = obj(["code", "message"], code=string(examples=["ORDER_NOT_EXIST"]),
                    message=string())
FEN: Schema = {"type": "integer", "minimum": 1, "description": "Fen (1/100 yuan)"}
AMOUNT = obj(["total"], total=FEN, currency=string(enum=["CNY"]))
TRANSACTION = obj(
    ["appid", "mchid", "out_trade_no", "trade_type", "trade_state"], appid=string(),
    mchid=string(), out_trade_no=string(), trade_type=string(enum=["NATIVE"]),
    trade_state=string(enum=["NOTPAY", "SUCCESS", "CLOSED", "PAYERROR", "REFUND"]),
    trade_state_desc=string(), transaction_id=string(), success_time=string(),
    amount=obj(total=FEN, payer_total=FEN, currency=string(), payer_currency=string()))
REFUND = obj(
    ["refund_id", "out_refund_no", "out_trade_no", "status"], refund_id=string(),
    out_refund_no=string(), out_trade_no=string(), transaction_id=string(),
    status=string(enum=["PROCESSING", "SUCCESS", "CLOSED", "ABNORMAL"]),
    amount=obj(total=FEN, refund=FEN, currency=string()))
AUTHORIZATION = {"name": "Authorization", "in": "header", "required": True,
                 "description": "The merchant's WeChat Pay API v3 signature",
                 "schema": string(examples=['WECHATPAY2-SHA256-RSA2048 mchid="1900000109",'
                                            'nonce_str="...",signature="...",'
                                            'timestamp="1554208460",serial_no="..."'])}


def _path(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": string()}


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _api(op_id: str, summary: str, ok: Schema, errors: dict[int, str], *,
         params: tuple[Schema, ...] = (), body: Schema | None = None) -> Schema:
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [TAG], "security": [],
                  "description": SIGNED, "parameters": [AUTHORIZATION, *params],
                  "responses": {"401": _json("Not the merchant's signature (`SIGN_ERROR`)",
                                             ERROR),
                                **{str(s): _json(t, ERROR) for s, t in errors.items()}}}
    op["responses"].update(ok)
    op["responses"] = dict(sorted(op["responses"].items()))
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    return op


def _page(op_id: str, summary: str, ok: Schema) -> Schema:
    return {"operationId": op_id, "summary": summary, "tags": [TAG], "security": [],
            "description": "The double's pay page (dev and test only).",
            "parameters": [_path("token")],
            "responses": {**ok, "404": {"description": "No such order (HTML)",
                                        "content": {"text/html": {"schema": string()}}}}}


_ORDER = f"{PREFIX}/v3/pay/transactions/out-trade-no/{{out_trade_no}}"
PAGE_ORDER = obj(["out_trade_no", "amount", "currency", "status"], out_trade_no=string(),
                 description=string(), amount=string(), currency=string(),
                 status=string(), transaction_id={"type": ["string", "null"]},
                 can_pay={"type": "boolean"}, token=string())
_REDIRECT = {"200": _json("With Accept: application/json: the order", PAGE_ORDER),
             "303": {"description": "Back to the pay page, showing the result"},
             "400": {"description": "Not payable any more (HTML)",
                     "content": {"text/html": {"schema": string()}}}}

WECHATPAY_DOUBLE_PATHS: dict[str, dict[str, Schema]] = {
    f"{PREFIX}/v3/pay/transactions/native": {"post": _api(
        "wechatpayDoubleNativeOrder", "Native order: a code_url leading to the pay page",
        {"200": _json("Created, or the same order asked again", obj(["code_url"],
                                                                    code_url=string()))},
        {400: "`PARAM_ERROR`, `APPID_MCHID_NOT_MATCH`, `ORDERPAID`, `ORDER_CLOSED`",
         403: "The out_trade_no is used with other terms (`OUT_TRADE_NO_USED`)"},
        body=obj(["appid", "mchid", "description", "out_trade_no", "notify_url", "amount"],
                 appid=string(), mchid=string(), description=string(),
                 out_trade_no=string(), notify_url=string(), amount=AMOUNT))},
    _ORDER: {"get": _api(
        "wechatpayDoubleQueryOrder", "The transaction by out_trade_no",
        {"200": _json("The transaction", TRANSACTION)},
        {400: "Another merchant (`MCH_NOT_EXISTS`)", 404: "`ORDER_NOT_EXIST`"},
        params=(_path("out_trade_no"), {"name": "mchid", "in": "query", "required": True,
                                        "schema": string()}))},
    f"{_ORDER}/close": {"post": _api(
        "wechatpayDoubleCloseOrder", "Close an unpaid order (closing twice is fine)",
        {"204": {"description": "Closed (signed, empty body)"}},
        {400: "Paid (`ORDERPAID`) or another merchant (`MCH_NOT_EXISTS`)",
         404: "`ORDER_NOT_EXIST`"},
        params=(_path("out_trade_no"),), body=obj(["mchid"], mchid=string()))},
    f"{PREFIX}/v3/refund/domestic/refunds": {"post": _api(
        "wechatpayDoubleRefund", "Refund: PROCESSING now, then a REFUND.* notification",
        {"200": _json("Accepted (the same out_refund_no again: the same refund)", REFUND)},
        {400: "`PARAM_ERROR`, `INVALID_REQUEST` (not paid, too much, reused number)",
         404: "`RESOURCE_NOT_EXISTS`"},
        body=obj(["out_refund_no", "amount"], out_trade_no=string(), transaction_id=string(),
                 out_refund_no=string(), notify_url=string(), reason=string(),
                 amount=obj(["refund", "total"], refund=FEN, total=FEN,
                            currency=string(enum=["CNY"]))))},
    f"{PREFIX}/v3/refund/domestic/refunds/{{out_refund_no}}": {"get": _api(
        "wechatpayDoubleQueryRefund", "The refund by out_refund_no",
        {"200": _json("The refund", REFUND)}, {404: "`RESOURCE_NOT_EXISTS`"},
        params=(_path("out_refund_no"),))},
    f"{PREFIX}/v3/bill/tradebill": {"get": _api(
        "wechatpayDoubleTradeBill", "The day's trade bill: its SHA1 and a download link",
        {"200": _json("The bill is ready", obj(
            ["hash_type", "hash_value", "download_url"], hash_type=string(enum=["SHA1"]),
            hash_value=string("SHA1 of the bill, uncompressed"),
            download_url=string(format="uri")))},
        {400: "`PARAM_ERROR` (bill_date, bill_type other than ALL, tar_type)",
         500: "`SYSTEM_ERROR` (a test fault: standins/statements.py)"},
        params=tuple({"name": name, "in": "query", "required": name == "bill_date",
                      "schema": schema} for name, schema in (
            ("bill_date", string(examples=["2026-12-01"])),
            ("bill_type", string(enum=["ALL"])), ("tar_type", string(enum=["GZIP"])))))},
    f"{PREFIX}/v3/billdownload/file": {"get": _api(
        "wechatpayDoubleDownloadBill", "The bill (CSV, gzip when asked): a signed GET; the "
        "file itself is not signed",
        {"200": {"description": "The bill", "content": {"application/octet-stream": {
            "schema": string(format="binary")}}}},
        {400: "The link expired (`PARAM_ERROR`)"},
        params=({"name": "token", "in": "query", "required": True, "schema": string()},))},
    f"{PREFIX}/pay/{{token}}": {"get": _page(
        "wechatpayDoublePayPage", "The pay page: amount, Approve, Decline",
        {"200": {"description": "HTML", "content": {"text/html": {"schema": string()}}}})},
    f"{PREFIX}/pay/{{token}}/approve": {"post": _page(
        "wechatpayDoubleApprove", "Pay: SUCCESS and a TRANSACTION.SUCCESS notification "
        "(form field notify=0: none)", _REDIRECT)},
    f"{PREFIX}/pay/{{token}}/decline": {"post": _page(
        "wechatpayDoubleDecline", "Decline: PAYERROR, no notification", _REDIRECT)},
}
