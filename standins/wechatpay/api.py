"""The WeChat Pay double's merchant API (the part of API v3 we use), under /v3:

    POST /v3/pay/transactions/native                      {"code_url"}
    GET  /v3/pay/transactions/out-trade-no/<no>?mchid=    the transaction
    POST /v3/pay/transactions/out-trade-no/<no>/close     204
    POST /v3/refund/domestic/refunds                      the refund (PROCESSING)
    GET  /v3/refund/domestic/refunds/<out_refund_no>      the refund
    GET  /v3/bill/tradebill?bill_date=&bill_type=ALL       the day's bill: hash and link
    GET  /v3/billdownload/file?token=                     the bill (bills.py)

Every request must carry the merchant's signature (401 SIGN_ERROR otherwise); every
answer, errors included, is signed with the double's key under its PUB_KEY_ID_... serial,
in WeChat Pay's error JSON {"code", "message"} when it is an error.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request

from standins.wechatpay import bills, orders, refunds
from standins.wechatpay.keys import DoubleKeys, load_double_keys
from standins.wechatpay.orders import WechatError
from standins.wechatpay.protocol import SignError, check_authorization, signed_headers
from web.deps import resources

api_bp = Blueprint("wechatpay_api", __name__)


def answer(keys: DoubleKeys, status: int, payload: dict[str, Any] | None) -> Response:
    body = b"" if payload is None else json.dumps(
        payload, ensure_ascii=False, separators=(",", ":")).encode()
    response = Response(body, status=status, headers=signed_headers(keys, body))
    if payload is not None:
        response.content_type = "application/json; charset=utf-8"
    return response


@api_bp.errorhandler(WechatError)
def wechat_error(exc: WechatError) -> Response:
    return answer(_keys(), exc.status, {"code": exc.code, "message": exc.message})


@api_bp.errorhandler(SignError)
def sign_error(exc: SignError) -> Response:
    return answer(_keys(), 401, {"code": "SIGN_ERROR", "message": f"签名错误: {exc}"})


def _keys() -> DoubleKeys:
    return load_double_keys(resources().settings.run_dir)


def _authorized(*, body: bool) -> tuple[DoubleKeys, dict[str, Any]]:
    """The double's keys and the JSON body, once the merchant's signature checks out."""
    keys = _keys()
    raw = request.get_data(cache=True)
    # The double lives under a prefix the real service has not: the merchant signs the
    # URL from /v3 on, path and query as sent.
    path = request.path[request.path.index("/v3/"):]
    query = request.query_string.decode("latin-1")
    check_authorization(keys, request.headers.get("Authorization"), method=request.method,
                        url=path + (f"?{query}" if query else ""), body=raw)
    if not body:
        return keys, {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise WechatError(400, "PARAM_ERROR", "请求体应为JSON对象")
    return keys, parsed


def _mchid_matches(keys: DoubleKeys, mchid: object) -> None:
    if mchid != keys.mchid:
        raise WechatError(400, "MCH_NOT_EXISTS", "商户号不存在")


@api_bp.post("/pay/transactions/native")
def create_native():
    keys, body = _authorized(body=True)
    return answer(keys, 200, orders.create_native(resources(), keys, body))


@api_bp.get("/pay/transactions/out-trade-no/<out_trade_no>")
def query_order(out_trade_no: str):
    keys, _ = _authorized(body=False)
    _mchid_matches(keys, request.args.get("mchid"))
    return answer(keys, 200, orders.query_order(resources(), keys, out_trade_no))


@api_bp.post("/pay/transactions/out-trade-no/<out_trade_no>/close")
def close_order(out_trade_no: str):
    keys, body = _authorized(body=True)
    _mchid_matches(keys, body.get("mchid"))
    orders.close_order(resources(), keys, out_trade_no)
    return answer(keys, 204, None)


@api_bp.post("/refund/domestic/refunds")
def create_refund():
    keys, body = _authorized(body=True)
    return answer(keys, 200, refunds.create_refund(resources(), keys, body))


@api_bp.get("/refund/domestic/refunds/<out_refund_no>")
def query_refund(out_refund_no: str):
    keys, _ = _authorized(body=False)
    return answer(keys, 200, refunds.query_refund(resources(), keys, out_refund_no))


@api_bp.get("/bill/tradebill")
def trade_bill():
    keys, _ = _authorized(body=False)
    return answer(keys, 200, bills.request_bill(resources(), keys, request.args.to_dict()))


@api_bp.get("/billdownload/file")
def download_bill():
    # A signed request; the file itself is not signed (its hash came with the link).
    _authorized(body=False)
    content = bills.download(resources(), request.args.get("token"))
    return Response(content, status=200, content_type="application/octet-stream")
