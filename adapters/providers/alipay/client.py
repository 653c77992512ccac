"""The Alipay connector (DESIGN.md §6b): face-to-face QR payments over the gateway.

    create  alipay.trade.precreate      its qr_code is the pay_url and the QR payload
    status  alipay.trade.query          WAIT_BUYER_PAY / TRADE_SUCCESS / TRADE_FINISHED /
                                        TRADE_CLOSED
    close   alipay.trade.close
    refund  alipay.trade.refund         synchronous: the answer is the outcome
            alipay.trade.fastpay.refund.query   to confirm a fund_change "N", and the
                                        refund query (refunds.check)

A payment is named by our out_trade_no everywhere (the reference). Alipay creates the
trade only when the buyer scans the code, so until then query and close answer
ACQ.TRADE_NOT_EXIST: that is "still waiting", not an error. Such a code cannot be
closed either, so every precreate carries timeout_express (our PAYMENT_TTL): Alipay
then closes the trade itself once the payment could no longer be ours to take.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from math import ceil
from typing import Any

import requests

from adapters.providers.alipay import callbacks
from adapters.providers.alipay.gateway import PROVIDER, Gateway, GatewayAnswer
from adapters.providers.alipay.keys import AlipayCredentials, load_credentials
from adapters.providers.alipay.statement import parse_bill_zip
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
from config import Settings
from domain.callback_events import CallbackEvent
from domain.money import format_amount
from domain.statements import Statement, beijing_time

CALLBACK_PATH = "/callbacks/alipay"
CURRENCY = "CNY"  # domestic Alipay settles in yuan only
MAX_SUBJECT_LENGTH = 256
TRADE_STATUSES = {
    "WAIT_BUYER_PAY": ProviderPaymentStatus.PENDING,
    "TRADE_SUCCESS": ProviderPaymentStatus.SUCCEEDED,
    # Paid, and past the refund period: still a success.
    "TRADE_FINISHED": ProviderPaymentStatus.SUCCEEDED,
    "TRADE_CLOSED": ProviderPaymentStatus.CLOSED,
}
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
PAID_SUB_CODES = frozenset({"ACQ.TRADE_HAS_SUCCESS", "ACQ.TRADE_HAS_FINISHED"})


class AlipayProvider:
    name = PROVIDER
    # Alipay signs in the form's own `sign` field; no header carries a signature.
    signature_header = "sign"

    def __init__(self, credentials: AlipayCredentials, notify_url: str, *,
                 payment_ttl_seconds: int = 1800,
                 session: requests.Session | None = None) -> None:
        self.credentials = credentials
        self.notify_url = notify_url
        # Alipay counts in whole minutes (1m to 15d); rounding up never cuts a payment short.
        self.timeout_express = f"{max(1, ceil(payment_ttl_seconds / 60))}m"
        self._gateway = Gateway(credentials, session=session)
        self._http = session or requests.Session()

    @classmethod
    def from_settings(cls, settings: Settings) -> AlipayProvider:
        """Keys read and checked once; a ConfigError names the variable to fix."""
        return cls(load_credentials(settings.alipay), settings.public_base_url + CALLBACK_PATH,
                   payment_ttl_seconds=settings.payment_ttl_seconds)

    # --- calls ------------------------------------------------------------------------

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        _check_currency(request.currency)
        method = "alipay.trade.precreate"
        answer = self._gateway.call(method, {
            "out_trade_no": request.out_trade_no,
            "total_amount": format_amount(request.amount),
            "subject": (request.description or request.out_trade_no)[:MAX_SUBJECT_LENGTH],
            "timeout_express": self.timeout_express,
        }, notify_url=self.notify_url)
        if not answer.ok:
            raise _refusal(answer, method)
        qr_code = _text(answer.body, "qr_code", method)
        return ProviderPayment(reference=request.out_trade_no, pay_url=qr_code,
                               qr_payload=qr_code)

    def query_status(self, reference: str) -> ProviderStatus:
        method = "alipay.trade.query"
        answer = self._gateway.call(method, {"out_trade_no": reference})
        if answer.sub_code == TRADE_NOT_EXIST:
            # Not scanned yet: Alipay has no trade, so none could have been paid.
            return ProviderStatus(ProviderPaymentStatus.PENDING, None, Decimal("0.00"),
                                  CURRENCY)
        if not answer.ok:
            raise answer.rejection(method)
        raw_status = _text(answer.body, "trade_status", method)
        status = TRADE_STATUSES.get(raw_status)
        if status is None:
            raise _garbled(method, f"unknown trade_status {raw_status!r}")
        transaction_id = answer.body.get("trade_no") or None
        return ProviderStatus(status, transaction_id,
                              _amount(answer.body.get("total_amount"), method), CURRENCY,
                              paid_at=_paid_at(answer.body.get("send_pay_date")))

    def close(self, reference: str) -> None:
        method = "alipay.trade.close"
        answer = self._gateway.call(method, {"out_trade_no": reference})
        if answer.ok:
            return
        if answer.sub_code == TRADE_NOT_EXIST:
            # Never scanned: Alipay has no trade to close. Its code stays payable until
            # timeout_express; a payment made meanwhile is a late success (§6), refunded.
            return
        if answer.sub_code in PAID_SUB_CODES:
            raise _already_paid(method, answer)
        if answer.sub_code == "ACQ.TRADE_STATUS_ERROR":
            # Alipay says only "not in a state to close": paid, or closed already.
            status = self.query_status(reference).status
            if status is ProviderPaymentStatus.CLOSED:
                return
            if status is ProviderPaymentStatus.SUCCEEDED:
                raise _already_paid(method, answer)
        raise answer.rejection(method)

    def refund(self, request: RefundRequest) -> ProviderRefund:
        _check_currency(request.currency)
        method = "alipay.trade.refund"
        biz: dict[str, Any] = {"out_trade_no": request.out_trade_no,
                               "refund_amount": format_amount(request.amount),
                               "out_request_no": request.out_refund_no}
        if request.reason:
            biz["refund_reason"] = request.reason[:256]
        answer = self._gateway.call(method, biz)
        if not answer.ok:
            if answer.code == "40004":
                # The business said no (balance, amount, trade state): this refund failed.
                return ProviderRefund(request.out_refund_no, ProviderRefundStatus.FAILED)
            raise answer.rejection(method)
        if answer.body.get("fund_change") == "Y":
            # Its refund_fee is the trade's total refunded so far, this refund included,
            # not this refund's amount (services/refunds.execute_refund compares it).
            return ProviderRefund(request.out_refund_no, ProviderRefundStatus.SUCCEEDED,
                                  refunded_total=_amount(answer.body.get("refund_fee"),
                                                         method, "refund_fee"))
        # "N": no money moved by THIS call. Alipay says so for a request number it has
        # already refunded (our retry), and asks that the refund query confirm it.
        refunded = self._refund_query(request)
        if refunded is None:
            # Not (yet) refunded: retrying the refund with the same number is safe.
            raise ProviderUnavailable(PROVIDER, f"alipay.trade.fastpay.refund.query: refund "
                                                f"{request.out_refund_no} not confirmed yet")
        return ProviderRefund(request.out_refund_no, ProviderRefundStatus.SUCCEEDED,
                              amount=refunded)

    def query_refund(self, request: RefundRequest) -> ProviderRefund:
        # alipay.trade.fastpay.refund.query: refund_status REFUND_SUCCESS once refunded;
        # absent while Alipay has no successful refund of that number (not made, or not
        # finished): no outcome yet, and the next check asks again (until the refund is
        # old enough to be flagged for review: services/refunds.check_refund).
        refunded = self._refund_query(request)
        if refunded is None:
            return ProviderRefund(request.out_refund_no)
        return ProviderRefund(request.out_refund_no, ProviderRefundStatus.SUCCEEDED,
                              amount=refunded)

    def _refund_query(self, request: RefundRequest) -> Decimal | None:
        """The refund's refund_amount (yuan, this refund alone) once Alipay has refunded
        it; None while it has not."""
        method = "alipay.trade.fastpay.refund.query"
        answer = self._gateway.call(method, {"out_trade_no": request.out_trade_no,
                                             "out_request_no": request.out_refund_no})
        if not answer.ok:
            raise answer.rejection(method)
        if answer.body.get("refund_status") != "REFUND_SUCCESS":
            return None
        return _amount(answer.body.get("refund_amount"), method, "refund_amount")

    def fetch_statement(self, day: date) -> Statement:
        """The day's trade bill: a signed call gives a short-lived link, whose plain GET
        is the zip (the link is the secret, as at Alipay)."""
        method = "alipay.data.dataservice.bill.downloadurl.query"
        answer = self._gateway.call(method, {"bill_type": "trade",
                                             "bill_date": day.isoformat()})
        if not answer.ok:
            raise answer.rejection(method)
        url = _text(answer.body, "bill_download_url", method)
        try:
            response = self._http.get(url, timeout=(3.0, 30.0), allow_redirects=False)
        except requests.RequestException as exc:
            raise ProviderUnavailable(PROVIDER, f"bill download: {type(exc).__name__}"
                                      ) from exc
        if response.status_code != 200:
            raise ProviderUnavailable(PROVIDER, f"bill download: HTTP {response.status_code}",
                                      status=response.status_code)
        return parse_bill_zip(response.content, day)

    # --- callbacks --------------------------------------------------------------------

    def parse_callback(self, request: CallbackRequest, *, now: float) -> CallbackEvent:
        return callbacks.parse_notification(request, app_id=self.credentials.app_id,
                                            alipay_public_key=self.credentials.alipay_public_key)

    def answer_stored(self, duplicate: bool) -> CallbackAnswer:
        return callbacks.ANSWER_SUCCESS

    def answer_refused(self, status: int, code: str, detail: str,
                       extra: Mapping[str, object]) -> CallbackAnswer:
        # Alipay reads only the body: anything but "success" makes it retry.
        return CallbackAnswer(status, b"fail", callbacks.TEXT_PLAIN)


def _check_currency(currency: str) -> None:
    if currency != CURRENCY:
        raise ProviderRejected(PROVIDER, f"Alipay takes {CURRENCY} only, not {currency}",
                               code="unsupported_currency")


def _refusal(answer: GatewayAnswer, method: str) -> ProviderRejected:
    if answer.sub_code in PAID_SUB_CODES:
        return _already_paid(method, answer)
    return answer.rejection(method)


def _already_paid(method: str, answer: GatewayAnswer) -> ProviderRejected:
    return ProviderRejected(PROVIDER, f"{method}: the trade is already paid "
                                      f"({answer.sub_code})", code="already_paid")


def _text(body: dict[str, Any], field: str, method: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise _garbled(method, f"no {field!r} in the answer")
    return value


def _paid_at(value: object) -> datetime | None:
    """send_pay_date, Alipay's time of the payment; None when absent or unreadable (only
    the reconciliation's day depends on it)."""
    try:
        return beijing_time(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _amount(value: object, method: str, field: str = "total_amount") -> Decimal:
    try:
        amount = Decimal(str(value)) if isinstance(value, str | Decimal) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0:
        raise _garbled(method, f"{field} {value!r} is not an amount")
    return amount.quantize(Decimal("0.01"))


def _garbled(method: str, detail: str) -> ProviderUnavailable:
    # Verified but unreadable: our reading or their answer changed. Not a verdict.
    return ProviderUnavailable(PROVIDER, f"{method}: unexpected answer: {detail}")
