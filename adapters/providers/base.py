"""What every payment provider connector offers, in our terms (DESIGN.md §6a, §6b).

A connector owns both sides of one provider's protocol:
- the calls we make (create, query, close, refund, the day's statement). Services
  handle exactly two failures: ProviderUnavailable, transient (connection refused,
  timeout, 5xx, 429, an answer whose signature does not verify), where the same call
  may succeed later,
  so the caller retries with backoff; and ProviderRejected, permanent (the provider
  understood and said no), where retrying would get the same answer.
- the callbacks it sends: `parse_callback` verifies the raw request and turns it into
  our normalised CallbackEvent (domain/callback_events.py), and the answer_* methods
  give the answer in the provider's own format. Everything after that (inbox,
  exactly-once apply, every §6 rule) is shared by all providers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from domain.callback_events import CallbackEvent
from domain.statements import Statement


class ProviderPaymentStatus(StrEnum):
    """A provider payment as the provider sees it (not our PaymentStatus)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


class ProviderRefundStatus(StrEnum):
    """A refund's outcome when the provider gives it: in its refund answer (Alipay does)
    or in the answer to a refund query (every connector's query_refund)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Accepted but not paid out (WeChat Pay's ABNORMAL: the buyer's account is gone,
    # say): neither done nor failed, so a person decides, as for its REFUND.ABNORMAL.
    ABNORMAL = "abnormal"


class ProviderError(Exception):
    """Base of the two failures a provider call can end in."""

    def __init__(self, provider: str, detail: str, *, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(f"{provider}: {detail}")
        self.provider = provider
        self.detail = detail
        self.status = status  # the HTTP status, when there was a response
        self.code = code  # the provider's own error code, when it gave one


class ProviderUnavailable(ProviderError):
    """Transient: the call did not get a definite answer. Retry later."""


class ProviderRejected(ProviderError):
    """Permanent: the provider refused this request. Retrying will not help."""


@dataclass(frozen=True)
class PaymentRequest:
    """What a connector needs to create a payment at its provider."""

    payment_id: int
    out_trade_no: str  # our stable merchant reference (domain/references.py)
    amount: Decimal
    currency: str
    method: str
    description: str
    idempotency_key: str


@dataclass(frozen=True)
class ProviderPayment:
    reference: str  # what later calls name the payment by (stored as provider_reference)
    pay_url: str
    qr_payload: str | None = None  # for QR-capable methods: what the QR code encodes


@dataclass(frozen=True)
class ProviderStatus:
    status: ProviderPaymentStatus
    transaction_id: str | None
    amount: Decimal
    currency: str
    # The provider's time of the success, when its answer gives one (the day its
    # statement lists the payment under: services/reconciliation/books.py).
    paid_at: datetime | None = None


@dataclass(frozen=True)
class RefundRequest:
    """What a connector needs to refund (part of) a payment."""

    refund_id: int
    out_refund_no: str  # our stable refund reference (domain/references.py)
    payment_reference: str  # the payment's provider_reference
    out_trade_no: str
    amount: Decimal  # this refund
    payment_amount: Decimal  # the whole payment (WeChat Pay wants both)
    currency: str
    reason: str | None = None


@dataclass(frozen=True)
class ProviderRefund:
    reference: str  # the provider's id for the refund
    # None: the outcome arrives later as a refund callback (WeChat Pay, the sandbox), or,
    # from query_refund, the provider is still at work on it.
    # Set: the provider decided (Alipay's refund answer, any query_refund answer), applied
    # as that callback would be.
    outcome: ProviderRefundStatus | None = None
    # What the provider says it refunded for this refund, in our Decimal (parsed from its
    # own unit: WeChat Pay's fen, Alipay's yuan string). None when its answer carries no
    # amount of this refund alone; then our stored amount is what is applied.
    amount: Decimal | None = None
    # What the provider says the whole payment has had refunded so far, this refund
    # included, when that is all its answer says (Alipay's refund answer: refund_fee).
    refunded_total: Decimal | None = None


class HeaderLookup(Protocol):
    """Request headers: werkzeug's Headers (case-insensitive), or a dict in tests."""

    def get(self, key: str) -> str | None: ...


@dataclass(frozen=True)
class CallbackRequest:
    """A provider's callback exactly as it arrived: verified on these bytes."""

    headers: HeaderLookup
    body: bytes


@dataclass(frozen=True)
class CallbackAnswer:
    """What we answer a provider's callback with, in its own format."""

    status: int
    body: bytes = b""
    content_type: str | None = None


class Provider(Protocol):
    """A payment provider connector. Every call is safe to repeat (idempotent at the
    provider), so a redelivered task never creates a second payment or refund."""

    name: str  # stored in payments.provider, so later calls reach the same provider
    signature_header: str  # the header its callbacks are signed in (for the audit trail)

    def create_payment(self, request: PaymentRequest) -> ProviderPayment:
        """Create (or find again, for the same payment) the payment at the provider."""
        ...

    def query_status(self, reference: str) -> ProviderStatus:
        """The provider's current view of the payment (the janitor's question)."""
        ...

    def close(self, reference: str) -> None:
        """Stop the payment from being paid. Already closed: fine. Already paid:
        ProviderRejected with code "already_paid" (the money is real; §6 late payment)."""
        ...

    def refund(self, request: RefundRequest) -> ProviderRefund:
        """Ask for a refund; the same refund asked twice is one refund at the provider."""
        ...

    def query_refund(self, request: RefundRequest) -> ProviderRefund:
        """How a refund the provider accepted stands now (the refunds.check question, for
        a refund whose callback never came): outcome None while it is still processing.
        Asks, never refunds: the request only names the refund (and its payment)."""
        ...

    def fetch_statement(self, day: date) -> Statement:
        """What the provider says it took and paid out on `day` (its own day, Beijing
        time for all three), one line per payment and per refund (issue #17). Raises
        ProviderUnavailable / ProviderRejected when it cannot be had, and
        domain.statements.StatementUnavailable when what came cannot be trusted (a hash
        that does not match, a file that does not parse)."""
        ...

    def parse_callback(self, request: CallbackRequest, *, now: float) -> CallbackEvent:
        """The verified callback as our event. Raises domain.callback_auth.SignatureRejected
        (not authentic: answered 401) or domain.errors.InvalidInput (authentic but not
        understood: 400). Never logs the body or anything decrypted from it."""
        ...

    def answer_stored(self, duplicate: bool) -> CallbackAnswer:
        """The answer once the callback is committed to the inbox (or was already)."""
        ...

    def answer_refused(self, status: int, code: str, detail: str,
                       extra: Mapping[str, object]) -> CallbackAnswer:
        """The answer for a callback not stored: `status` is 4xx (refused: retrying the
        same request will not help) or 5xx (not stored now: the provider must retry).
        `code`, `detail` and `extra` are ours (the JSON error format's); a provider with
        a format of its own may keep only what it has room for."""
        ...
