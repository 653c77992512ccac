"""The WeChat Pay API v3 connector (DESIGN.md §6b): Native orders, query, close, refund.

Every request is signed with the merchant API key (signing.py) and every 2xx answer
must carry WeChat Pay's signature over its exact bytes: one that does not verify may
come from anyone on the way, so it is treated as no answer at all (ProviderUnavailable,
logged and counted), and the caller asks again later. Amounts go to WeChat Pay in fen.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any, Self
from urllib.parse import quote

import requests

from adapters.providers.base import (
    CallbackAnswer,
    CallbackRequest,
    PaymentRequest,
    ProviderPayment,
    ProviderPaymentStatus,
    ProviderRefund,
    ProviderRefundStatus,
    ProviderRejected,
    ProviderStatus,
    ProviderUnavailable,
    RefundRequest,
)
from adapters.providers.instrumented import UNVERIFIED_ANSWER
from adapters.providers.wechatpay import callbacks
from adapters.providers.wechatpay.credentials import WechatPayCredentials, load_credentials
from adapters.providers.wechatpay.signing import answer_message, authorization, new_nonce, verify
from adapters.providers.wechatpay.statement import check_hash, parse_trade_bill
from config import Settings
from domain.callback_events import CallbackEvent
from domain.money import from_minor_units, to_minor_units
from domain.statements import Statement, StatementUnavailable

log = logging.getLogger(__name__)

CALLBACK_PATH = "/callbacks/wechatpay"
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 10.0
TRANSIENT_STATUSES = frozenset({408, 425, 429})
MAX_DESCRIPTION = 127  # the order's description, string(127)

# trade_state -> what it means for us. REFUND: it was paid (and since refunded, in
# part or whole); REVOKED is a cancelled code-scan payment, as final as CLOSED.
_TRADE_STATES = {
    "SUCCESS": ProviderPaymentStatus.SUCCEEDED,
    "REFUND": ProviderPaymentStatus.SUCCEEDED,
    "NOTPAY": ProviderPaymentStatus.PENDING,
    "USERPAYING": ProviderPaymentStatus.PENDING,
    "CLOSED": ProviderPaymentStatus.CLOSED,
    "REVOKED": ProviderPaymentStatus.CLOSED,
    "PAYERROR": ProviderPaymentStatus.FAILED,
    "ACCEPT": ProviderPaymentStatus.PENDING,  # accepted, the debit still to come
}

# A refund's status (the refund query's `status`) -> its outcome; PROCESSING has none yet.
# CLOSED: WeChat Pay closed the refund, no money moved. ABNORMAL: it could not reach the
# buyer; the merchant must redo it by hand, so a person decides (as for REFUND.ABNORMAL).
_REFUND_STATUSES: dict[str, ProviderRefundStatus | None] = {
    "SUCCESS": ProviderRefundStatus.SUCCEEDED,
    "CLOSED": ProviderRefundStatus.FAILED,
    "ABNORMAL": ProviderRefundStatus.ABNORMAL,
    "PROCESSING": None,
}


class WechatPayProvider:
    name = "wechatpay"
    signature_header = callbacks.SIGNATURE_HEADER

    def __init__(self, credentials: WechatPayCredentials, notify_url: str, *,
                 tolerance_seconds: int = 300,
                 timeout: tuple[float, float] = (CONNECT_TIMEOUT_SECONDS,
                                                 READ_TIMEOUT_SECONDS),
                 session: requests.Session | None = None) -> None:
        self._creds = credentials
        self.notify_url = notify_url
        self._timeout = timeout
        self._http = session or requests.Session()
        self._notifications = callbacks.NotificationVerifier(
            mchid=credentials.mchid, apiv3_key=credentials.apiv3_key,
            keys=credentials.wechatpay_keys, tolerance_seconds=tolerance_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(load_credentials(settings.wechatpay),
                   settings.public_base_url + CALLBACK_PATH,
                   tolerance_seconds=settings.callback_tolerance_seconds)

    # --- calls ------------------------------------------------------------------------

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        # Asking again with the same out_trade_no and the same fields gives the same
        # code_url, so a redelivered task finds its order again.
        body = self._call("POST", "/v3/pay/transactions/native", {
            "appid": self._creds.appid, "mchid": self._creds.mchid,
            "description": request.description[:MAX_DESCRIPTION] or request.out_trade_no,
            "out_trade_no": request.out_trade_no, "notify_url": self.notify_url,
            "amount": {"total": to_minor_units(request.amount, request.currency),
                       "currency": request.currency},
        })
        code_url = _text(body, "code_url")
        return ProviderPayment(reference=request.out_trade_no, pay_url=code_url,
                               qr_payload=code_url)

    def query_status(self, reference: str) -> ProviderStatus:
        body = self._call("GET", f"{_order_path(reference)}?mchid={quote(self._creds.mchid)}")
        state = _text(body, "trade_state")
        status = _TRADE_STATES.get(state)
        if status is None:
            raise _garbled(f"unknown trade_state {state!r}")
        raw_amount = body.get("amount")
        amount: dict[str, Any] = raw_amount if isinstance(raw_amount, dict) else {}
        currency = amount.get("currency") or "CNY"
        total = amount.get("total")
        if isinstance(total, int) and not isinstance(total, bool) and total > 0:
            value = from_minor_units(total, currency)
        elif status is ProviderPaymentStatus.SUCCEEDED:
            raise _garbled("a paid order without amount.total")
        else:
            # WeChat Pay gives the amount only once paid; an unpaid order's is never read.
            value = Decimal("0.00")
        transaction_id = body.get("transaction_id")
        return ProviderStatus(status=status, amount=value, currency=currency,
                              transaction_id=transaction_id if transaction_id else None,
                              paid_at=callbacks.success_time(body.get("success_time")))

    def close(self, reference: str) -> None:
        try:
            self._call("POST", f"{_order_path(reference)}/close", {"mchid": self._creds.mchid})
        except ProviderRejected as exc:
            if exc.code in ("ORDER_CLOSED", "ORDER_NOT_EXIST"):
                return  # closed already, or never made: it cannot be paid either way
            if exc.code == "ORDERPAID" or self._paid(reference):
                raise ProviderRejected(self.name, f"order {reference} is already paid",
                                       status=exc.status, code="already_paid") from exc
            raise

    def refund(self, request: RefundRequest) -> ProviderRefund:
        payload: dict[str, Any] = {
            "out_trade_no": request.out_trade_no, "out_refund_no": request.out_refund_no,
            "notify_url": self.notify_url,
            "amount": {"refund": to_minor_units(request.amount, request.currency),
                       "total": to_minor_units(request.payment_amount, request.currency),
                       "currency": request.currency},
        }
        if request.reason:
            payload["reason"] = request.reason[:80]
        body = self._call("POST", "/v3/refund/domestic/refunds", payload)
        # Accepted (usually PROCESSING): the outcome comes as a REFUND.* notification.
        return ProviderRefund(reference=_text(body, "refund_id"), outcome=None)

    def query_refund(self, request: RefundRequest) -> ProviderRefund:
        # GET /v3/refund/domestic/refunds/{out_refund_no}: the refund by our number.
        body = self._call("GET", _refund_path(request.out_refund_no))
        state = _text(body, "status")
        if state not in _REFUND_STATUSES:
            raise _garbled(f"unknown refund status {state!r}")
        return ProviderRefund(reference=_text(body, "refund_id"),
                              outcome=_REFUND_STATUSES[state],
                              amount=_refunded(body, request.currency))

    def fetch_statement(self, day: date) -> Statement:
        """The trade bill: ask for it (a hash and a link), download it with a signed GET
        (the file itself is not signed), and believe it only if its SHA1 matches."""
        try:
            answer = self._call("GET", f"/v3/bill/tradebill?bill_date={day.isoformat()}"
                                       "&bill_type=ALL&tar_type=GZIP")
        except ProviderRejected as exc:
            if exc.code == "NO_STATEMENT_EXIST":  # no trade at all that day
                return Statement(self.name, day, ())
            raise
        url = _text(answer, "download_url")
        if not url.startswith(self._creds.base_url + "/"):
            raise StatementUnavailable(self.name, "the download_url is not WeChat Pay's")
        content = self._download(url[len(self._creds.base_url):])
        try:
            bill = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
        except (OSError, EOFError):
            raise StatementUnavailable(self.name, "the bill is not valid gzip") from None
        check_hash(bill, answer.get("hash_type"), answer.get("hash_value"))
        return parse_trade_bill(bill, day)

    # --- callbacks --------------------------------------------------------------------

    def parse_callback(self, request: CallbackRequest, *, now: float) -> CallbackEvent:
        return self._notifications.parse(request, now=now)

    def answer_stored(self, duplicate: bool) -> CallbackAnswer:
        return callbacks.answer_stored()

    def answer_refused(self, status: int, code: str, detail: str,
                       extra: Mapping[str, object]) -> CallbackAnswer:
        return callbacks.answer_refused(status, detail)

    # --- HTTP ---------------------------------------------------------------------------

    def _paid(self, reference: str) -> bool:
        try:
            return self.query_status(reference).status is ProviderPaymentStatus.SUCCEEDED
        except (ProviderRejected, ProviderUnavailable):
            return False

    def _call(self, method: str, url: str, payload: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        # The signature covers these exact bytes, so they are made once and sent as is.
        body = (json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
                if payload is not None else b"")
        headers = {"Accept": "application/json", "Authorization": authorization(
            mchid=self._creds.mchid, serial_no=self._creds.merchant_serial_no,
            private_key=self._creds.merchant_private_key, method=method, url=url, body=body,
            timestamp=str(int(time.time())), nonce=new_nonce())}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(method, self._creds.base_url + url, data=body or None,
                                          headers=headers, timeout=self._timeout,
                                          allow_redirects=False)
        except requests.RequestException as exc:
            raise ProviderUnavailable(self.name, f"{method} {_path(url)}: "
                                                 f"{type(exc).__name__}") from exc
        status = response.status_code
        answer = _json_object(response.content)
        where = f"{method} {_path(url)}: HTTP {status} {answer.get('code') or ''}".strip()
        if status >= 500 or status in TRANSIENT_STATUSES:
            raise ProviderUnavailable(self.name, where, status=status, code=answer.get("code"))
        if status >= 400:
            raise ProviderRejected(self.name, f"{where} {answer.get('message') or ''}".strip(),
                                   status=status, code=answer.get("code"))
        if not 200 <= status < 300:
            raise _garbled(where)
        if not self._answer_verifies(response):
            # Counted as "unverified" by the registry's InstrumentedProvider.
            log.warning("wechatpay: %s answered without a valid WeChat Pay signature; "
                        "treated as no answer", where)
            raise ProviderUnavailable(self.name, f"{where}: the answer's signature does not "
                                                 "verify", status=status,
                                      code=UNVERIFIED_ANSWER)
        if status != 204 and not answer:
            raise _garbled(f"{where}: not a JSON object")
        return answer

    def _download(self, url: str) -> bytes:
        headers = {"Authorization": authorization(
            mchid=self._creds.mchid, serial_no=self._creds.merchant_serial_no,
            private_key=self._creds.merchant_private_key, method="GET", url=url, body=b"",
            timestamp=str(int(time.time())), nonce=new_nonce())}
        try:
            response = self._http.get(self._creds.base_url + url, headers=headers,
                                      timeout=self._timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise ProviderUnavailable(self.name, f"GET {_path(url)}: "
                                                 f"{type(exc).__name__}") from exc
        if response.status_code != 200:
            raise ProviderUnavailable(self.name, f"GET {_path(url)}: HTTP "
                                                 f"{response.status_code}",
                                      status=response.status_code)
        return response.content

    def _answer_verifies(self, response: requests.Response) -> bool:
        h = response.headers
        signature, timestamp, nonce, serial = (
            h.get(n) for n in (callbacks.SIGNATURE_HEADER, callbacks.TIMESTAMP_HEADER,
                               callbacks.NONCE_HEADER, callbacks.SERIAL_HEADER))
        if not (signature and timestamp and nonce and serial):
            return False
        key = self._creds.wechatpay_keys.key_for(serial, now=time.time())
        return key is not None and verify(key, answer_message(timestamp, nonce,
                                                              response.content), signature)


def _order_path(reference: str) -> str:
    # Our out_trade_no is [A-Za-z0-9_]; anything else in a path is our bug.
    if not reference or not reference.replace("_", "").isalnum() or not reference.isascii():
        raise ProviderRejected(WechatPayProvider.name, f"malformed out_trade_no {reference!r}",
                               code="invalid_reference")
    return f"/v3/pay/transactions/out-trade-no/{reference}"


def _refund_path(out_refund_no: str) -> str:
    # Ours is [A-Za-z0-9_] too (domain/references.py).
    if (not out_refund_no or not out_refund_no.replace("_", "").isalnum()
            or not out_refund_no.isascii()):
        raise ProviderRejected(WechatPayProvider.name,
                               f"malformed out_refund_no {out_refund_no!r}",
                               code="invalid_reference")
    return f"/v3/refund/domestic/refunds/{out_refund_no}"


def _path(url: str) -> str:
    return url.split("?", 1)[0]


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise _garbled(f"the answer has no {name!r}")
    return value


def _refunded(body: dict[str, Any], currency: str) -> Decimal:
    """The refund query's amount.refund: what this refund returns, in whole fen."""
    amount = body.get("amount")
    fen = amount.get("refund") if isinstance(amount, dict) else None
    if isinstance(fen, bool) or not isinstance(fen, int) or fen <= 0:
        raise _garbled(f"amount.refund {fen!r} is not a positive whole number of fen")
    return from_minor_units(fen, currency)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _garbled(detail: str) -> ProviderUnavailable:
    return ProviderUnavailable(WechatPayProvider.name, f"unexpected answer: {detail}")
