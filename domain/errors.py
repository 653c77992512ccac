"""Typed errors that carry their data. web/errors.py maps each kind to an HTTP status."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base: a human sentence, a snake_case code and extra fields for the client."""

    kind = "invalid"  # invalid | not_found | forbidden | conflict | too_soon | unprocessable
    default_code = "invalid_request"

    def __init__(self, detail: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.extra = extra


class InvalidInput(DomainError):
    kind = "invalid"
    default_code = "invalid_request"


class NotFound(DomainError):
    kind = "not_found"
    default_code = "not_found"


class Forbidden(DomainError):
    kind = "forbidden"
    default_code = "forbidden"


class Conflict(DomainError):
    kind = "conflict"
    default_code = "conflict"


class TooSoon(DomainError):
    kind = "too_soon"
    default_code = "too_soon"

    def __init__(self, detail: str, retry_after: int, code: str | None = None,
                 **extra: Any) -> None:
        super().__init__(detail, code, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class Unprocessable(DomainError):
    kind = "unprocessable"
    default_code = "unprocessable"


class AmountMismatch(InvalidInput):
    default_code = "amount_mismatch"

    def __init__(self, order_amount: str, payment_amount: str) -> None:
        super().__init__("Payment amount does not match order amount",
                         order_amount=order_amount, payment_amount=payment_amount)


class InvalidTransition(Conflict):
    default_code = "invalid_transition"

    def __init__(self, entity: str, current: str, target: str) -> None:
        super().__init__(f"{entity} cannot go from {current} to {target}",
                         current_status=current, requested_status=target)


class Unauthenticated(DomainError):
    """The caller could not be authenticated (e.g. a provider callback's signature)."""

    kind = "unauthorized"
    default_code = "unauthenticated"
