"""The wallet's pure rules (domain/wallet.py): a balance never below zero, which orders
may be paid from the wallet, order purposes, no crediting one's own wallet."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.errors import Conflict, Forbidden, InvalidInput
from domain.money import MAX_AMOUNT
from domain.wallet import (
    InsufficientBalance,
    OrderPurpose,
    balance_after,
    check_balance_method_allowed,
    check_manual_order_transition,
    check_not_self_credit,
    parse_purpose,
)

D = Decimal


@pytest.mark.parametrize(("balance", "amount", "after"), [
    ("10.00", "-10.00", "0.00"), ("10.00", "5.00", "15.00"), ("0.00", "0.01", "0.01")])
def test_the_balance_after_an_entry(balance, amount, after):
    assert balance_after(D(balance), D(amount)) == D(after)


def test_a_debit_past_zero_is_insufficient_balance_with_both_amounts():
    with pytest.raises(InsufficientBalance) as err:
        balance_after(D("9.99"), D("-10.00"))
    assert (err.value.code, err.value.kind) == ("insufficient_balance", "conflict")
    assert err.value.extra == {"balance": "9.99", "amount": "10.00"}


def test_a_balance_past_what_the_column_holds_is_refused():
    with pytest.raises(InvalidInput) as err:
        balance_after(MAX_AMOUNT, D("0.01"))
    assert err.value.code == "balance_limit"


@pytest.mark.parametrize(("purpose", "currency", "allowed"), [
    ("purchase", "CNY", True), ("wallet_topup", "CNY", False), ("purchase", "USD", False)])
def test_which_orders_the_balance_may_pay(purpose, currency, allowed):
    if allowed:
        check_balance_method_allowed("balance", purpose=purpose, currency=currency)
    else:
        with pytest.raises(InvalidInput) as err:
            check_balance_method_allowed("balance", purpose=purpose, currency=currency)
        assert err.value.code == "unsupported_method"
    check_balance_method_allowed("wechat", purpose="wallet_topup", currency="USD")  # not ours


def test_order_purposes():
    assert parse_purpose(None, "USD") is OrderPurpose.PURCHASE
    assert parse_purpose("wallet_topup", "CNY") is OrderPurpose.WALLET_TOPUP
    for bad in ("gift", "", 1, ["purchase"]):
        with pytest.raises(InvalidInput) as err:
            parse_purpose(bad, "CNY")
        assert err.value.extra["field"] == "purpose"
    with pytest.raises(InvalidInput) as err:
        parse_purpose("wallet_topup", "USD")
    assert err.value.code == "invalid_currency"


def test_an_admin_key_of_a_user_cannot_credit_that_user():
    check_not_self_credit(None, 7)
    check_not_self_credit(8, 7)
    with pytest.raises(Forbidden) as err:
        check_not_self_credit(7, 7)
    assert err.value.code == "self_credit_not_allowed"


def test_a_topup_is_paid_only_by_its_payment():
    check_manual_order_transition("purchase", "paid")
    check_manual_order_transition("wallet_topup", "cancelled")
    with pytest.raises(Conflict) as err:
        check_manual_order_transition("wallet_topup", "paid")
    assert err.value.code == "topup_paid_by_payment_only"
