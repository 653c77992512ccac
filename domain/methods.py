"""The payment method catalog (seed 004)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal

from domain.errors import InvalidInput
from domain.money import round_half_up


@dataclass(frozen=True)
class PaymentMethod:
    code: str
    name: str
    enabled: bool
    supports_qr: bool
    refundable: bool
    fee_rate: Decimal  # a fraction: 0.006 is 0.6 %

    def fee_for(self, amount: Decimal, currency: str | None = None) -> Decimal:
        """amount x fee_rate, rounded half-up to the currency's unit (0.005 -> 0.01)."""
        return round_half_up(amount * self.fee_rate, currency)


CATALOG: dict[str, PaymentMethod] = {
    m.code: m
    for m in (
        PaymentMethod("wechat", "WeChat Pay", True, True, True, Decimal("0.006")),
        PaymentMethod("alipay", "Alipay", True, True, True, Decimal("0.006")),
        PaymentMethod("bank_card", "Bank card", True, False, True, Decimal("0.008")),
        # Paid from the user's wallet, settled at once, never sent to a provider (§10).
        PaymentMethod("balance", "Wallet balance", True, False, True, Decimal("0")),
        PaymentMethod("credit_card", "Credit card", False, False, True, Decimal("0.008")),
        PaymentMethod("paypal", "PayPal", False, False, True, Decimal("0.029")),
        PaymentMethod("crypto", "Crypto", False, False, False, Decimal("0.01")),
    )
}
ALIASES = {"bank": "bank_card"}
DEFAULT_METHOD = "wechat"


def usable_methods(available: Collection[str] | None = None) -> list[PaymentMethod]:
    """The catalog's enabled methods that this deployment can take (`available`: the
    methods a provider is routed for; None: all of them)."""
    return [m for m in CATALOG.values()
            if m.enabled and (available is None or m.code in available)]


def resolve_method(code: object, available: Collection[str] | None = None) -> PaymentMethod:
    """The usable method for `code`, or 400 unsupported_method."""
    if code is None:
        code = DEFAULT_METHOD
    if not isinstance(code, str):
        raise InvalidInput("method must be a string", code="unsupported_method")
    method = CATALOG.get(ALIASES.get(code, code))
    usable = usable_methods(available)
    if method is None or method not in usable:
        enabled = sorted(m.code for m in usable)
        raise InvalidInput(f"Unsupported payment method: {code[:40]!r}",
                           code="unsupported_method", supported_methods=enabled)
    return method
