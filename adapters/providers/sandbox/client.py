"""The sandbox connector (DESIGN.md §6a): its calls over HTTP, and its callbacks.

It talks to the sandbox exactly as it would to a real provider: JSON over HTTP at
PUBLIC_BASE_URL + "/sandbox", authenticated with the merchant key (the sandbox's
shared secret), short timeouts, and every failure mapped to ProviderUnavailable
(try again later) or ProviderRejected (the answer will not change).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

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
from adapters.providers.sandbox.signature import SIGNATURE_HEADER, verify_signature
from adapters.providers.sandbox.statement import parse_statement
from config import Settings
from domain.callback_events import CallbackEvent, decode_callback_body, parse_callback_event
from domain.money import format_amount
from domain.statements import Statement

SANDBOX_PATH = "/sandbox"
# A provider call runs inside a task that holds no lock and no transaction, but a
# hanging provider must still not pin a worker process for long.
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 10.0
# Statuses that say "not now" rather than "no": retrying may succeed.
TRANSIENT_STATUSES = frozenset({408, 425, 429})
# A refund's status at the sandbox -> its outcome ("accepted": not decided yet).
_REFUND_OUTCOMES: dict[str, ProviderRefundStatus | None] = {
    "accepted": None, "succeeded": ProviderRefundStatus.SUCCEEDED,
    "failed": ProviderRefundStatus.FAILED}


class SandboxProvider:
    name = "sandbox"
    signature_header = SIGNATURE_HEADER

    def __init__(self, base_url: str, api_key: str, *,
                 webhook_secrets: tuple[str, ...] = (), tolerance_seconds: int = 300,
                 timeout: tuple[float, float] = (CONNECT_TIMEOUT_SECONDS,
                                                 READ_TIMEOUT_SECONDS),
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._webhook_secrets = webhook_secrets
        self._tolerance_seconds = tolerance_seconds
        self._timeout = timeout
        self._http = session or requests.Session()

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxProvider:
        return cls(settings.public_base_url + SANDBOX_PATH, settings.sandbox_api_key,
                   webhook_secrets=(settings.sandbox_webhook_secret,),
                   tolerance_seconds=settings.callback_tolerance_seconds)

    # --- calls ------------------------------------------------------------------------

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        body = self._call("POST", "/api/payments", json={
            "merchant_payment_id": request.payment_id,
            "amount": format_amount(request.amount),
            "currency": request.currency, "method": request.method,
        }, headers={"Idempotency-Key": request.idempotency_key})
        return ProviderPayment(reference=self._field(body, "reference", str),
                               pay_url=self._field(body, "pay_url", str),
                               qr_payload=body.get("qr_payload") or None)

    def query_status(self, reference: str) -> ProviderStatus:
        body = self._call("GET", f"/api/payments/{_segment(reference)}")
        raw_status = self._field(body, "status", str)
        try:
            status = ProviderPaymentStatus(raw_status)
        except ValueError:
            raise self._garbled(f"unknown payment status {raw_status!r}") from None
        return ProviderStatus(status=status, transaction_id=body.get("transaction_id"),
                              amount=self._amount(body.get("amount")),
                              currency=self._field(body, "currency", str))

    def close(self, reference: str) -> None:
        self._call("POST", f"/api/payments/{_segment(reference)}/close")

    def refund(self, request: RefundRequest) -> ProviderRefund:
        # A new refund is "accepted": its outcome arrives later, as a refund.succeeded /
        # refund.failed callback. A repeat (the same refund_id) is answered with the refund
        # as it stands, outcome included once there is one.
        body = self._call("POST", "/api/refunds", json={
            "reference": request.payment_reference, "refund_id": request.refund_id,
            "amount": format_amount(request.amount),
        })
        return self._refund(body)

    def query_refund(self, request: RefundRequest) -> ProviderRefund:
        # The refund by its payment's ticket and our refund id (refunds.check asks so).
        body = self._call("GET", f"/api/payments/{_segment(request.payment_reference)}"
                                 f"/refunds/{int(request.refund_id)}")
        return self._refund(body)

    def _refund(self, body: dict[str, Any]) -> ProviderRefund:
        raw_status = self._field(body, "status", str)
        if raw_status not in _REFUND_OUTCOMES:
            raise self._garbled(f"unknown refund status {raw_status!r}")
        return ProviderRefund(self._field(body, "reference", str),
                              outcome=_REFUND_OUTCOMES[raw_status],
                              amount=self._amount(body.get("amount")))

    def fetch_statement(self, day: date) -> Statement:
        return parse_statement(self._call("GET", f"/api/statements/{day.isoformat()}"), day)

    # --- callbacks --------------------------------------------------------------------

    def parse_callback(self, request: CallbackRequest, *, now: float) -> CallbackEvent:
        verify_signature(request.headers.get(SIGNATURE_HEADER), request.body,
                         self._webhook_secrets, now=now,
                         tolerance_seconds=self._tolerance_seconds)
        # Our own format is already the normalised event.
        return parse_callback_event(decode_callback_body(request.body))

    def answer_stored(self, duplicate: bool) -> CallbackAnswer:
        return _json_answer(200, {"received": True, "duplicate": duplicate})

    def answer_refused(self, status: int, code: str, detail: str,
                       extra: Mapping[str, object]) -> CallbackAnswer:
        # Our own JSON error format (web/errors.py), as every API answer.
        return _json_answer(status, {"detail": detail, "code": code, **extra})

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json",
                   **kwargs.pop("headers", {})}
        try:
            response = self._http.request(method, self.base_url + path, headers=headers,
                                          timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            # Connection refused, DNS, timeouts, resets: no answer, so maybe later.
            raise ProviderUnavailable(self.name, f"{method} {path}: {type(exc).__name__}: "
                                                 f"{exc}") from exc
        body = _json_object(response)
        if response.status_code >= 500 or response.status_code in TRANSIENT_STATUSES:
            raise ProviderUnavailable(self.name, _describe(method, path, response, body),
                                      status=response.status_code, code=body.get("code"))
        if response.status_code >= 400:
            raise ProviderRejected(self.name, _describe(method, path, response, body),
                                   status=response.status_code, code=body.get("code"))
        if not 200 <= response.status_code < 300:
            raise self._garbled(f"{method} {path}: HTTP {response.status_code}")
        return body

    def _field(self, body: dict[str, Any], name: str, kind: type) -> Any:
        value = body.get(name)
        if not isinstance(value, kind) or value == "":
            raise self._garbled(f"response has no valid {name!r}")
        return value

    def _amount(self, value: object) -> Decimal:
        try:
            amount = Decimal(value) if isinstance(value, str) else None
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite():
            raise self._garbled(f"response amount {value!r} is not a decimal string")
        return amount

    def _garbled(self, detail: str) -> ProviderUnavailable:
        # A 2xx we cannot read (a proxy's page, a truncated body) is no answer either.
        return ProviderUnavailable(self.name, f"unexpected response: {detail}")


def _json_answer(status: int, body: dict[str, Any]) -> CallbackAnswer:
    return CallbackAnswer(status, json.dumps(body).encode(), "application/json")


def _segment(reference: str) -> str:
    """A reference as one URL path segment: anything else is our bug, not the provider's."""
    if not reference or not reference.replace("_", "").replace("-", "").isalnum():
        raise ProviderRejected(SandboxProvider.name, f"malformed reference {reference!r}",
                               code="invalid_reference")
    return reference


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _describe(method: str, path: str, response: requests.Response,
              body: dict[str, Any]) -> str:
    detail = body.get("detail") or response.reason or ""
    return f"{method} {path}: HTTP {response.status_code} {detail}".strip()
