"""Money is Decimal, never float, in the currency's own minor units (ISO 4217).

JSON carries it as a string: "100.00" for CNY, "100" for JPY. How many decimals a
currency has comes from Babel's copy of the ISO 4217 / CLDR data, not a table of ours.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache

from babel.numbers import get_currency_precision, list_currencies

from domain.errors import InvalidInput

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
# NUMERIC(14, 2) in the database: twelve digits before the point, at most two after it.
MAX_AMOUNT = Decimal("999999999999.99")
STORED_DECIMALS = 2
DEFAULT_CURRENCY = "CNY"


# ISO 4217's "no currency" and "testing" codes: never money.
_NOT_MONEY = frozenset({"XXX", "XTS"})


@cache
def _iso_codes() -> frozenset[str]:
    return frozenset(list_currencies()) - _NOT_MONEY


def is_iso_currency(code: str) -> bool:
    return code in _iso_codes()


def minor_units(currency: str) -> int:
    """Decimals of the currency's minor unit: CNY 2, JPY and KRW 0, BHD 3."""
    return int(get_currency_precision(currency))


def unit_of(currency: str | None) -> Decimal:
    """The currency's smallest amount: 0.01 CNY, 1 JPY. Unknown or None: a cent."""
    if currency is None:
        return CENT
    return Decimal(1).scaleb(-minor_units(currency))


def in_units(amount: Decimal, currency: str | None) -> Decimal:
    """An amount already valid for `currency`, written with exactly its decimals."""
    return amount.quantize(unit_of(currency))


def round_half_up(amount: Decimal, currency: str | None) -> Decimal:
    """Computed money (fees) rounds half-up to the currency's unit: 0.005 CNY -> 0.01."""
    return amount.quantize(unit_of(currency), rounding=ROUND_HALF_UP)


def parse_amount(value: object, field: str = "amount", currency: str | None = None) -> Decimal:
    """A positive amount with at most the currency's decimals (two without a currency),
    from a string or a JSON number.

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
    unit = unit_of(currency)
    if amount != amount.quantize(unit):
        places = minor_units(currency) if currency else 2
        whose = f"{currency} has" if currency else "amounts have"
        raise InvalidInput(
            f"{field} has more decimal places than {whose} ({places})",
            code="invalid_amount", field=field, decimal_places=places)
    return amount.quantize(unit)


def parse_currency(value: object, supported: tuple[str, ...] | None = None) -> str:
    """An upper-case currency code: one of `supported` (the first is the default), or
    without it any ISO 4217 code (what a provider reports is compared, not chosen)."""
    default = supported[0] if supported else DEFAULT_CURRENCY
    if value is None:
        return default
    code = value.upper() if isinstance(value, str) and len(value) == 3 else None
    if supported is not None:
        if code is None or code not in supported:
            raise InvalidInput(f"currency must be one of {', '.join(supported)}",
                               code="invalid_currency", field="currency",
                               supported_currencies=list(supported))
        return code
    if code is None or not is_iso_currency(code):
        raise InvalidInput("currency must be an ISO 4217 code such as CNY",
                           code="invalid_currency", field="currency")
    return code


def format_amount(amount: Decimal, currency: str | None = None) -> str:
    return str(in_units(amount, currency))


def minor_unit_exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (ISO 4217: CNY 2, JPY 0)."""
    return minor_units(currency)


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
