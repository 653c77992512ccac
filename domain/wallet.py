"""The wallet's rules (DESIGN.md §10). Pure: no Session, Flask or Celery here.

A wallet holds CNY for one user. Its balance moves only by ledger entries, each
signed and carrying the balance after it, so the balance is always the sum of
its entries and never below zero. The service layer (services/wallet/) applies
these rules under the wallet's row lock.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from domain.errors import Conflict, Forbidden, InvalidInput
from domain.money import MAX_AMOUNT, format_amount

WALLET_CURRENCY = "CNY"
BALANCE_METHOD = "balance"
# Recorded as the payment's provider: a balance payment never goes to one.
WALLET_PROVIDER = "wallet"
ZERO = Decimal("0.00")


class EntryKind(StrEnum):
    """Why money moved. The sign of an entry says which way."""

    CREDIT = "credit"    # an admin put money in (+)
    PAYMENT = "payment"  # an order paid from the balance (-)
    REFUND = "refund"    # a refund: of a balance payment (+), of a top-up (-), a failed
    #                      top-up refund given back (+)
    TOPUP = "topup"      # a top-up order paid by another method (+)


class OrderPurpose(StrEnum):
    PURCHASE = "purchase"
    WALLET_TOPUP = "wallet_topup"


class InsufficientBalance(Conflict):
    default_code = "insufficient_balance"

    def __init__(self, balance: Decimal, amount: Decimal) -> None:
        super().__init__(f"The wallet holds {format_amount(balance)} {WALLET_CURRENCY}; "
                         f"{format_amount(amount)} is needed",
                         balance=format_amount(balance), amount=format_amount(amount))


class TopupAlreadySpent(Conflict):
    """A top-up's refund would take back money the wallet no longer holds."""

    default_code = "topup_already_spent"

    def __init__(self, balance: Decimal, amount: Decimal) -> None:
        super().__init__(f"Only {format_amount(balance)} {WALLET_CURRENCY} of this top-up "
                         f"is still in the wallet; refunding {format_amount(amount)} would "
                         "take back money already spent",
                         balance=format_amount(balance), amount=format_amount(amount))


def balance_after(balance: Decimal, amount: Decimal) -> Decimal:
    """The balance once a signed `amount` is posted; refused when it would go below zero
    (409 insufficient_balance) or past what NUMERIC(14, 2) holds (400)."""
    after = balance + amount
    if after < ZERO:
        raise InsufficientBalance(balance, -amount)
    if after > MAX_AMOUNT:
        raise InvalidInput(f"The wallet cannot hold more than {format_amount(MAX_AMOUNT)}",
                           code="balance_limit", balance=format_amount(balance),
                           amount=format_amount(amount))
    return after


def check_balance_method_allowed(method_code: str, *, purpose: str, currency: str) -> None:
    """The balance pays purchases in the wallet's currency; a top-up paid from the wallet
    itself would be money going round in a circle (400 unsupported_method)."""
    if method_code != BALANCE_METHOD:
        return
    if purpose == OrderPurpose.WALLET_TOPUP:
        raise InvalidInput("A wallet top-up cannot be paid from the wallet balance",
                           code="unsupported_method", method=method_code)
    if currency != WALLET_CURRENCY:
        raise InvalidInput(f"The wallet holds {WALLET_CURRENCY}; this order is in {currency}",
                           code="unsupported_method", method=method_code)


def parse_purpose(value: object, currency: str) -> OrderPurpose:
    """An order's purpose: a purchase unless it says wallet_topup (CNY only)."""
    if value is None:
        return OrderPurpose.PURCHASE
    try:
        purpose = OrderPurpose(value) if isinstance(value, str) else None
    except ValueError:
        purpose = None
    if purpose is None:
        raise InvalidInput(f"purpose must be one of {', '.join(p.value for p in OrderPurpose)}",
                           code="invalid_field", field="purpose")
    if purpose is OrderPurpose.WALLET_TOPUP and currency != WALLET_CURRENCY:
        raise InvalidInput(f"A wallet top-up is in {WALLET_CURRENCY}", code="invalid_currency",
                           field="currency")
    return purpose


def check_manual_order_transition(purpose: str, target: str) -> None:
    """A top-up order becomes paid only by its payment's settlement, which credits the
    wallet in the same transaction; moved to paid by hand it would be paid uncredited."""
    if purpose == OrderPurpose.WALLET_TOPUP and target == "paid":
        raise Conflict("A wallet top-up order becomes paid only when its payment succeeds",
                       code="topup_paid_by_payment_only")


def check_not_self_credit(actor_user_id: int | None, wallet_user_id: int) -> None:
    """An admin key that belongs to a user may not credit that user's own wallet."""
    if actor_user_id is not None and actor_user_id == wallet_user_id:
        raise Forbidden("An admin key cannot credit its own user's wallet",
                        code="self_credit_not_allowed")
