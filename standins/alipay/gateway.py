"""The pretend Alipay's open-platform gateway: POST (or GET) /doubles/alipay/gateway.do.

Checks a request as Alipay does, in Alipay's order and words, then hands its
biz_content to the method (trades.py) and signs the answer:

    unknown app_id        40002 isv.invalid-app-id      (unsigned: whose key would sign?)
    no sign               40001 isv.missing-signature
    sign_type not RSA2    40002 isv.invalid-signature-type
    sign does not verify  40002 isv.invalid-signature
    unknown method        40002 isv.invalid-method
Parameters may come in the query string (python-alipay-sdk sends everything there),
the form body (our connector), or both, as Alipay's gateway takes them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, request

from adapters.resources import Resources
from standins.alipay import bills, refunds, trades
from standins.alipay.crypto import request_is_signed, signed_answer
from standins.alipay.keys import load_double_keys
from web.deps import resources

log = logging.getLogger(__name__)

gateway_bp = Blueprint("alipay_gateway", __name__)

Method = Callable[[Resources, str, dict[str, Any], Mapping[str, str]], dict[str, Any]]
METHODS: dict[str, Method] = {
    "alipay.trade.precreate": lambda res, app, biz, p: trades.precreate(
        res, app, biz, p.get("notify_url") or None),
    "alipay.trade.query": lambda res, app, biz, p: trades.query(res, app, biz),
    "alipay.trade.close": lambda res, app, biz, p: trades.close(res, app, biz),
    "alipay.trade.refund": lambda res, app, biz, p: refunds.refund(res, app, biz),
    "alipay.trade.fastpay.refund.query": lambda res, app, biz, p: refunds.refund_query(
        res, app, biz),
    "alipay.data.dataservice.bill.downloadurl.query": lambda res, app, biz, p:
        bills.download_url_query(res, app, biz),
}


def _error(code: str, msg: str, sub_code: str, sub_msg: str) -> dict[str, str]:
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


@gateway_bp.route("/gateway.do", methods=["GET", "POST"])
def gateway() -> Response:
    res = resources()
    # Query and form together; a name given in both is taken from the form.
    params = {**request.args.to_dict(), **request.form.to_dict()}
    method = params.get("method", "")
    keys = load_double_keys(res.settings.run_dir)
    answer_as = method if method in METHODS else "error"
    if params.get("app_id") != keys.app_id:
        return _answer(answer_as, _error("40002", "Invalid Arguments", "isv.invalid-app-id",
                                         "无效的AppID参数"), signed=False)
    content = _check(params, keys.app_public_key)
    if content is None:
        biz = _biz_content(params.get("biz_content", ""))
        if biz is None:
            content = _error("40002", "Invalid Arguments", "isv.invalid-parameter",
                             "biz_content 不是 JSON 对象")
        else:
            content = METHODS[method](res, keys.app_id, biz, params)
    log.info("alipay double: %s -> %s %s", method, content.get("code"),
             content.get("sub_code", ""))
    return _answer(answer_as, content, signed=True)


def _check(params: Mapping[str, str], app_public_key: Any) -> dict[str, str] | None:
    """Alipay's refusal of a request, or None when it may go on to its method."""
    if not params.get("sign"):
        return _error("40001", "Missing Required Arguments", "isv.missing-signature",
                      "缺少签名参数")
    if params.get("sign_type") != "RSA2":
        return _error("40002", "Invalid Arguments", "isv.invalid-signature-type",
                      "无效的签名类型参数")
    if not request_is_signed(params, app_public_key):
        return _error("40002", "Invalid Arguments", "isv.invalid-signature", "验签出错")
    if params.get("method") not in METHODS:
        return _error("40002", "Invalid Arguments", "isv.invalid-method",
                      "不存在的方法名")
    timestamp = params.get("timestamp", "")
    try:
        # The format only: the SDK stamps its machine's local time, not always Beijing's.
        datetime.strptime(timestamp, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return _error("40002", "Invalid Arguments", "isv.invalid-timestamp",
                      "非法的时间戳参数")
    if params.get("version") != "1.0":
        return _error("40002", "Invalid Arguments", "isv.invalid-version", "版本号错误")
    return None


def _biz_content(raw: str) -> dict[str, Any] | None:
    try:
        # Numbers stay text, so an amount keeps every digit and stores as JSON.
        biz = json.loads(raw or "{}", parse_float=str)
    except ValueError:
        return None
    return biz if isinstance(biz, dict) else None


def _answer(method: str, content: dict[str, Any], *, signed: bool) -> Response:
    key = load_double_keys(resources().settings.run_dir).alipay_private_key if signed else None
    body = signed_answer(method, content, key)
    return Response(body, status=200, content_type="text/html;charset=utf-8")


@gateway_bp.get("/bills/<token>")
def download_bill(token: str) -> Response:
    """The bill_download_url: a plain GET, as at Alipay (the link itself is the secret,
    and it lapses after a few minutes)."""
    content = bills.download(resources(), token)
    if content is None:
        return Response("bill not available", status=503, content_type="text/plain")
    return Response(content, status=200, content_type="application/zip")
