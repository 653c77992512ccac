"""Money is Decimal with two places, never float. JSON carries it as a string."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from domain.errors import InvalidInput

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
# NUMERIC(14, 2) in the database: twelve digits before the point.
MAX_AMOUNT = Decimal("999999999999.99")
CURRENCIES = frozenset({"CNY", "USD", "EUR", "GBP", "JPY", "HKD"})
DEFAULT_CURRENCY = "CNY"


def parse_amount(value: object, field: str = "amount") -> Decimal:
    """A positive amount with at most two decimals, from a string or a JSON number.

    JSON numbers must reach us as Decimal (the web layer parses with
    parse_float=Decimal), so no float rounding ever touches an amount.
    """
    if isinstance(value, bool) or value is None:
        raise InvalidInput(f"{field} must be a decimal string such as \"100.00\"",
                           code="invalid_amount", field=field)
    if isinstance(value, float):
        # Only reachable if a caller bypassed the Decimal-preserving parser.
        raise InvalidInput(f"{field} must not be a binary float", code="invalid_amount",
                           field=field)
    if isinstance(value, int | Decimal):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise InvalidInput(f"{field} must be a decimal string such as \"100.00\"",
                           code="invalid_amount", field=field)
    if len(text) > 40:
        raise InvalidInput(f"{field} is too long", code="invalid_amount", field=field)
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(f"{field} is not a number: {text[:20]!r}", code="invalid_amount",
                           field=field) from None
    if not amount.is_finite():
        raise InvalidInput(f"{field} must be a finite number", code="invalid_amount", field=field)
    if amount <= 0:
        raise InvalidInput(f"{field} must be greater than zero", code="invalid_amount",
                           field=field)
    if amount > MAX_AMOUNT:
        raise InvalidInput(f"{field} is larger than {MAX_AMOUNT}", code="invalid_amount",
                           field=field)
    if amount != amount.quantize(CENT):
        raise InvalidInput(f"{field} has more than two decimal places", code="invalid_amount",
                           field=field)
    return amount.quantize(CENT)


def parse_currency(value: object) -> str:
    if value is None:
        return DEFAULT_CURRENCY
    if not isinstance(value, str) or value.upper() not in CURRENCIES:
        raise InvalidInput(f"currency must be one of {', '.join(sorted(CURRENCIES))}",
                           code="invalid_currency", field="currency")
    return value.upper()


def format_amount(amount: Decimal) -> str:
    return str(amount.quantize(CENT))


def minor_unit_exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit. Every currency we accept today
    has two (CNY: yuan and fen)."""
    return 2


def to_minor_units(amount: Decimal, currency: str) -> int:
    """An amount in the currency's minor unit (yuan 88.80 -> 8880 fen), exactly:
    an amount finer than the unit is a bug upstream, never silently rounded."""
    scaled = amount.scaleb(minor_unit_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return int(scaled)


def from_minor_units(units: int, currency: str) -> Decimal:
    """Minor units (fen) as an amount (yuan), with the currency's places."""
    places = minor_unit_exponent(currency)
    return Decimal(units).scaleb(-places).quantize(Decimal(1).scaleb(-places))
