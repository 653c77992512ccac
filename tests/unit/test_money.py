"""Money parsing: Decimal end to end, two places, nothing float ever touches."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from domain.errors import InvalidInput
from domain.money import format_amount, minor_units, parse_amount, parse_currency, round_half_up


@pytest.mark.parametrize(("raw", "expected"), [
    ("100.00", "100.00"),
    ("100", "100.00"),
    (" 0.01 ", "0.01"),
    (100, "100.00"),
    (Decimal("99.9"), "99.90"),
    ("999999999999.99", "999999999999.99"),
    ("1.10", "1.10"),
])
def test_valid_amounts_become_two_place_decimals(raw, expected):
    amount = parse_amount(raw)
    assert isinstance(amount, Decimal)
    assert str(amount) == expected


@pytest.mark.parametrize("raw", [
    "100.001", "0.001", "0", "0.00", 0, "-1", "-0.01", -5, "NaN", "nan", "Infinity",
    "-Infinity", "1e400", Decimal("1E+400"), "1000000000000.00", "abc", "", " ", "1,00",
    "0x10", True, False, None, [], {}, 1.5, "1" * 41,
])
def test_invalid_amounts_are_refused_with_a_code(raw):
    with pytest.raises(InvalidInput) as err:
        parse_amount(raw)
    assert err.value.code == "invalid_amount"
    assert err.value.detail


def test_json_numbers_parsed_as_decimal_keep_every_cent():
    # 0.1 + 0.2 style rounding would show up here if a float were involved anywhere.
    body = json.loads('{"a": 0.29, "b": 1234567890.07}', parse_float=Decimal)
    assert parse_amount(body["a"]) == Decimal("0.29")
    assert parse_amount(body["b"]) == Decimal("1234567890.07")


def test_field_name_is_reported():
    with pytest.raises(InvalidInput) as err:
        parse_amount("-1", field="total_amount")
    assert err.value.extra["field"] == "total_amount"


def test_format_amount_always_has_two_places():
    assert format_amount(Decimal("5")) == "5.00"
    assert format_amount(Decimal("5.5")) == "5.50"


def test_currency_defaults_to_cny_and_is_case_insensitive():
    assert parse_currency(None) == "CNY"
    assert parse_currency("usd") == "USD"


@pytest.mark.parametrize("raw", ["XXX", "ZZZ", "", 5, ["CNY"], "C" * 300])
def test_unknown_currency_is_refused(raw):
    with pytest.raises(InvalidInput) as err:
        parse_currency(raw)
    assert err.value.code == "invalid_currency"


# --- each currency's own minor units (ISO 4217, from Babel's data) ---------------------

@pytest.mark.parametrize(("currency", "raw", "expected"), [
    ("JPY", "100", "100"), ("JPY", "100.00", "100"), ("KRW", 5000, "5000"),
    ("CNY", "1.5", "1.50"), ("USD", "0.01", "0.01"),
])
def test_amounts_take_the_currencys_decimals(currency, raw, expected):
    assert str(parse_amount(raw, currency=currency)) == expected
    assert format_amount(parse_amount(raw, currency=currency), currency) == expected


@pytest.mark.parametrize(("currency", "raw"), [
    ("JPY", "100.5"), ("JPY", "0.1"), ("KRW", Decimal("1.01")), ("CNY", "1.005"),
])
def test_more_decimals_than_the_currency_has_are_refused(currency, raw):
    with pytest.raises(InvalidInput) as err:
        parse_amount(raw, field="total_amount", currency=currency)
    assert err.value.code == "invalid_amount"
    assert currency in err.value.detail
    assert err.value.extra["decimal_places"] == (0 if currency in ("JPY", "KRW") else 2)


def test_minor_units_come_from_iso_4217():
    assert [minor_units(c) for c in ("CNY", "JPY", "KRW", "BHD")] == [2, 0, 0, 3]


def test_only_the_supported_currencies_are_accepted():
    assert parse_currency(None, supported=("CNY",)) == "CNY"
    assert parse_currency(None, supported=("JPY", "CNY")) == "JPY"  # the first: default
    assert parse_currency("cny", supported=("CNY",)) == "CNY"
    with pytest.raises(InvalidInput) as err:
        parse_currency("USD", supported=("CNY",))
    assert err.value.code == "invalid_currency"
    assert err.value.extra["supported_currencies"] == ["CNY"]


@pytest.mark.parametrize(("amount", "currency", "rounded"), [
    ("0.045", "CNY", "0.05"),   # half-up; half-even would give 0.04
    ("0.0449", "CNY", "0.04"),
    ("0.055", "CNY", "0.06"),
    ("4.5", "JPY", "5"),        # half-even would give 4
    ("2.4999", "KRW", "2"),
])
def test_computed_money_rounds_half_up_to_the_currencys_unit(amount, currency, rounded):
    assert str(round_half_up(Decimal(amount), currency)) == rounded


def test_minor_units_both_ways_exactly():
    from domain.money import from_minor_units, to_minor_units

    assert to_minor_units(Decimal("88.80"), "CNY") == 8880
    assert to_minor_units(Decimal("0.01"), "CNY") == 1
    assert from_minor_units(8880, "CNY") == Decimal("88.80")
    assert str(from_minor_units(1, "CNY")) == "0.01"
    with pytest.raises(ValueError):
        to_minor_units(Decimal("0.001"), "CNY")  # never rounded silently
