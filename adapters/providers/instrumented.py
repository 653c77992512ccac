"""Every provider call counted by outcome (payments_provider_calls_total), whichever
connector makes it: the registry hands out connectors wrapped in this."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import TypeVar

from adapters.metrics import PROVIDER_CALLS
from adapters.providers.base import (
    CallbackAnswer,
    CallbackRequest,
    PaymentRequest,
    Provider,
    ProviderPayment,
    ProviderRefund,
    ProviderRejected,
    ProviderStatus,
    ProviderUnavailable,
    RefundRequest,
)
from domain.callback_events import CallbackEvent
from domain.statements import Statement

# The code a connector gives a ProviderUnavailable for an answer it could not verify.
UNVERIFIED_ANSWER = "unverified_answer"

T = TypeVar("T")


class InstrumentedProvider:
    """The connector's own behaviour, with each call's outcome counted."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.signature_header = inner.signature_header

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        return self._count("create", lambda: self.inner.create_payment(request))

    def query_status(self, reference: str) -> ProviderStatus:
        return self._count("query", lambda: self.inner.query_status(reference))

    def close(self, reference: str) -> None:
        self._count("close", lambda: self.inner.close(reference))

    def refund(self, request: RefundRequest) -> ProviderRefund:
        return self._count("refund", lambda: self.inner.refund(request))

    def fetch_statement(self, day: date) -> Statement:
        return self._count("statement", lambda: self.inner.fetch_statement(day))

    # Callbacks are counted where they arrive (payments_callbacks_total).
    def parse_callback(self, request: CallbackRequest, *, now: float) -> CallbackEvent:
        return self.inner.parse_callback(request, now=now)

    def answer_stored(self, duplicate: bool) -> CallbackAnswer:
        return self.inner.answer_stored(duplicate)

    def answer_refused(self, status: int, code: str, detail: str,
                       extra: Mapping[str, object]) -> CallbackAnswer:
        return self.inner.answer_refused(status, code, detail, extra)

    def _count(self, call: str, work: Callable[[], T]) -> T:
        try:
            result = work()
        except ProviderRejected:
            PROVIDER_CALLS.labels(self.name, call, "rejected").inc()
            raise
        except ProviderUnavailable as exc:
            outcome = "unverified" if exc.code == UNVERIFIED_ANSWER else "unavailable"
            PROVIDER_CALLS.labels(self.name, call, outcome).inc()
            raise
        PROVIDER_CALLS.labels(self.name, call, "ok").inc()
        return result
