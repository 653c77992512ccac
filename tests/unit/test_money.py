"""Money parsing: Decimal end to end, two places, nothing float ever touches."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from domain.errors import InvalidInput
from domain.money import format_amount, parse_amount, parse_currency


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


@pytest.mark.parametrize("raw", ["XXX", "", 5, ["CNY"], "C" * 300])
def test_unknown_currency_is_refused(raw):
    with pytest.raises(InvalidInput) as err:
        parse_currency(raw)
    assert err.value.code == "invalid_currency"


def test_minor_units_both_ways_exactly():
    from domain.money import from_minor_units, to_minor_units

    assert to_minor_units(Decimal("88.80"), "CNY") == 8880
    assert to_minor_units(Decimal("0.01"), "CNY") == 1
    assert from_minor_units(8880, "CNY") == Decimal("88.80")
    assert str(from_minor_units(1, "CNY")) == "0.01"
    with pytest.raises(ValueError):
        to_minor_units(Decimal("0.001"), "CNY")  # never rounded silently
