"""What every payment provider adapter offers, in our terms (DESIGN.md §6a).

Services call these methods and handle exactly two failures:
- ProviderUnavailable: transient (connection refused, timeout, 5xx, 429); the same
  call may succeed later, so the caller retries with backoff.
- ProviderRejected: permanent (the provider understood and said no: 4xx); retrying
  the same call would get the same answer.
Callbacks are not part of this interface: their signature and body are checked
where they arrive (domain/signatures.py, domain/callback_events.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable


class ProviderPaymentStatus(StrEnum):
    """A provider payment as the provider sees it (not our PaymentStatus)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


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
class ProviderPayment:
    reference: str  # the provider's id for the payment (the sandbox's ticket)
    pay_url: str
    qr_payload: str | None = None  # for QR-capable methods: what the QR code encodes


@dataclass(frozen=True)
class ProviderStatus:
    status: ProviderPaymentStatus
    transaction_id: str | None
    amount: Decimal
    currency: str


@runtime_checkable
class Provider(Protocol):
    """A payment provider adapter. Every call is safe to repeat (idempotent at the
    provider), so a redelivered task never creates a second payment or refund."""

    name: str  # stored in payments.provider, so later calls reach the same provider

    def create_payment(self, payment_id: int, amount: Decimal, currency: str, method: str,
                       idempotency_key: str) -> ProviderPayment:
        """Create (or find again, for the same payment_id) the payment at the provider."""
        ...

    def query_status(self, reference: str) -> ProviderStatus:
        """The provider's current view of the payment (the janitor's question)."""
        ...

    def close(self, reference: str) -> None:
        """Stop the payment from being paid. Already closed: fine. Already paid:
        ProviderRejected with code "already_paid" (the money is real; §6 late payment)."""
        ...

    def refund(self, reference: str, refund_id: int, amount: Decimal) -> str:
        """Ask for a refund; returns the provider's refund reference once accepted.
        The outcome arrives later as a refund.succeeded / refund.failed callback."""
        ...
