"""The payment method catalog of seed 004 / DESIGN.md §4."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.errors import InvalidInput
from domain.methods import CATALOG, resolve_method


def test_catalog_matches_the_design():
    expected = {
        "wechat": (True, Decimal("0.006")), "alipay": (True, Decimal("0.006")),
        "bank_card": (True, Decimal("0.008")), "balance": (True, Decimal("0")),
        # seed 004's rates, for the methods it lists as disabled too
        "credit_card": (False, Decimal("0.008")), "paypal": (False, Decimal("0.029")),
        "crypto": (False, Decimal("0.01")),
    }
    assert set(CATALOG) == set(expected)
    for code, (enabled, fee_rate) in expected.items():
        assert CATALOG[code].enabled is enabled
        assert CATALOG[code].fee_rate == fee_rate
    assert CATALOG["wechat"].supports_qr and CATALOG["alipay"].supports_qr
    assert not CATALOG["bank_card"].supports_qr
    assert not CATALOG["crypto"].refundable


def test_default_method_is_wechat():
    assert resolve_method(None).code == "wechat"


def test_bank_is_an_alias_of_bank_card():
    assert resolve_method("bank").code == "bank_card"


@pytest.mark.parametrize("code", ["credit_card", "paypal", "crypto", "cash", "",
                                  "WECHAT", "x" * 1000, 5, ["wechat"], True])
def test_unknown_or_disabled_methods_are_unsupported(code):
    with pytest.raises(InvalidInput) as err:
        resolve_method(code)
    assert err.value.code == "unsupported_method"


def test_unsupported_method_lists_what_is_supported():
    with pytest.raises(InvalidInput) as err:
        resolve_method("paypal")
    assert err.value.extra["supported_methods"] == ["alipay", "balance", "bank_card", "wechat"]


@pytest.mark.parametrize(("code", "amount", "fee"), [
    ("wechat", "100.00", "0.60"),
    ("alipay", "0.01", "0.00"),
    ("bank_card", "1234.56", "9.88"),
    ("wechat", "999999999999.99", "6000000000.00"),
])
def test_fee_is_rounded_to_the_cent(code, amount, fee):
    assert CATALOG[code].fee_for(Decimal(amount)) == Decimal(fee)


@pytest.mark.parametrize(("code", "amount", "currency", "fee"), [
    ("wechat", "7.50", "CNY", "0.05"),   # 0.045: half-up, not half-even's 0.04
    ("bank_card", "0.63", "CNY", "0.01"),  # 0.00504
    ("wechat", "750", "JPY", "5"),       # 4.5 yen: half-up to the yen
    ("wechat", "83", "KRW", "0"),        # 0.498 won
])
def test_fee_rounds_half_up_to_the_currencys_unit(code, amount, currency, fee):
    assert str(CATALOG[code].fee_for(Decimal(amount), currency)) == fee
