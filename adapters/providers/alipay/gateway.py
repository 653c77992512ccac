"""One signed call to Alipay's open-platform gateway, and its verified answer.

    POST <gateway>  (form: app_id, method, format, charset, sign_type, timestamp,
                     version, [notify_url], biz_content, sign)
    -> {"<method_with_underscores>_response": {"code": "10000", ...}, "sign": "..."}

Alipay answers HTTP 200 whatever happened; the outcome is `code` (10000 success,
20000 service unavailable, 40004 business refusal with a `sub_code`, 4000x our
request). Only an answer whose signature verifies is believed: anything else is
treated as no answer (ProviderUnavailable), logged, so the caller retries.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import requests

from adapters.providers.alipay import signing
from adapters.providers.alipay.keys import AlipayCredentials
from adapters.providers.base import ProviderRejected, ProviderUnavailable

log = logging.getLogger(__name__)

PROVIDER = "alipay"
# Alipay reads `timestamp` as Beijing time; China has kept UTC+8 without DST since 1991.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 10.0
SUCCESS = "10000"
# Codes that say "not now" rather than "no": the same call may succeed later.
TRANSIENT_CODES = frozenset({"20000"})
TRANSIENT_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR",
                                 "isp.unknow-error", "isp.unknown-error"})


@dataclass(frozen=True)
class GatewayAnswer:
    """A verified answer: its `code`, and its body with amounts as Decimal."""

    code: str
    sub_code: str | None
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS

    def rejection(self, method: str) -> ProviderRejected:
        detail = self.body.get("sub_msg") or self.body.get("msg") or ""
        return ProviderRejected(PROVIDER, f"{method}: {self.code} {self.sub_code or ''} "
                                          f"{detail}".strip(),
                                code=self.sub_code or self.code)


def beijing_timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(BEIJING)).astimezone(BEIJING).strftime(TIMESTAMP_FORMAT)


def request_params(credentials: AlipayCredentials, method: str, biz_content: dict[str, Any],
                   *, notify_url: str | None = None, timestamp: str | None = None
                   ) -> dict[str, str]:
    """The signed form of one call: the common parameters, biz_content as compact JSON,
    and `sign` over all of them."""
    params = {
        "app_id": credentials.app_id, "method": method, "format": "JSON",
        "charset": "utf-8", "sign_type": signing.SIGN_TYPE,
        "timestamp": timestamp or beijing_timestamp(), "version": "1.0",
        "biz_content": json.dumps(biz_content, ensure_ascii=False, separators=(",", ":")),
    }
    if notify_url:
        params["notify_url"] = notify_url
    params["sign"] = signing.sign(signing.signing_string(params), credentials.app_private_key)
    return params


class Gateway:
    def __init__(self, credentials: AlipayCredentials, *,
                 timeout: tuple[float, float] = (CONNECT_TIMEOUT_SECONDS,
                                                 READ_TIMEOUT_SECONDS),
                 session: requests.Session | None = None) -> None:
        self._credentials = credentials
        self._timeout = timeout
        self._http = session or requests.Session()

    def call(self, method: str, biz_content: dict[str, Any], *,
             notify_url: str | None = None) -> GatewayAnswer:
        """The verified answer to `method`; ProviderUnavailable when there is none we can
        trust, or when Alipay says to try again. Business refusals are returned, for the
        caller to read their sub_code."""
        params = request_params(self._credentials, method, biz_content, notify_url=notify_url)
        try:
            response = self._http.post(
                self._credentials.gateway_url, data=params, timeout=self._timeout,
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8",
                         "Accept": "application/json"})
        except requests.RequestException as exc:
            raise ProviderUnavailable(PROVIDER, f"{method}: {type(exc).__name__}: {exc}"
                                      ) from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise ProviderUnavailable(PROVIDER, f"{method}: HTTP {response.status_code}",
                                      status=response.status_code)
        if response.status_code != 200:
            raise ProviderUnavailable(PROVIDER, f"{method}: unexpected HTTP "
                                                f"{response.status_code}",
                                      status=response.status_code)
        answer = self.verified_answer(method, response.content)
        if answer.code in TRANSIENT_CODES or answer.sub_code in TRANSIENT_SUB_CODES:
            raise ProviderUnavailable(PROVIDER, f"{method}: {answer.code} "
                                                f"{answer.sub_code or ''}: try again later",
                                      code=answer.sub_code or answer.code)
        return answer

    def verified_answer(self, method: str, raw: bytes) -> GatewayAnswer:
        """The answer's `<method>_response` object, if its signature verifies over the
        object's exact text; otherwise no answer at all."""
        try:
            text = raw.decode("utf-8")
            document = json.loads(text)
        except ValueError:
            raise self._untrusted(method, "the answer is not UTF-8 JSON") from None
        key = signing.response_key(method)
        content = signing.signed_response_text(text, key) if isinstance(document, dict) else None
        if content is None:
            raise self._untrusted(method, f"the answer has no {key} object")
        signature = document.get("sign")
        if not isinstance(signature, str) or not signature:
            # Alipay leaves some errors unsigned (an unknown app_id); unsigned, nothing
            # in them can be believed, but the code helps whoever reads the log.
            inner = json.loads(content)
            raise self._untrusted(method, f"the answer is not signed (code "
                                          f"{inner.get('code')} {inner.get('sub_code') or ''})")
        if not signing.verify(content, signature, self._credentials.alipay_public_key):
            raise self._untrusted(method, "the answer's signature does not verify")
        body = json.loads(content, parse_float=Decimal)
        code = body.get("code")
        if not isinstance(code, str):
            raise self._untrusted(method, "the answer has no code")
        sub_code = body.get("sub_code")
        return GatewayAnswer(code, sub_code if isinstance(sub_code, str) else None, body)

    def _untrusted(self, method: str, why: str) -> ProviderUnavailable:
        # A 200 that fails verification is treated as no answer: logged (never its body),
        # and the caller retries. A forged "paid" must not be believed.
        log.warning("alipay %s: answer not trusted: %s", method, why)
        return ProviderUnavailable(PROVIDER, f"{method}: answer not trusted: {why}")
