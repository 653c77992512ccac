"""The cashier page's wallet in a real browser (headless Chromium, as
tests/e2e/test_checkout_browser.py): the wallet listed with its balance, chosen, paid
at once, the success screen without a reload. Screenshots in test-artifacts/checkout/."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.e2e.test_checkout_browser import (  # noqa: F401 - the browser fixture
    CHROMEDRIVER,
    CHROMIUM,
    Customer,
    browser,
)
from tests.support.payment_flow import PaymentFlow
from tests.support.wallets import balance, credit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="chromium and chromedriver are not on PATH"),
]

USER = 91


def test_the_customer_pays_from_the_wallet_on_the_page(api, admin_key, settings, clean_db,
                                                       make_user_key, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    make_user_key(USER)
    flow = PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)
    credit(flow.admin, USER, "120.00")
    order = flow.order("88.80", user_id=USER)
    payment = flow.payment(order["id"], "wechat")
    customer = Customer(browser, "wallet")

    loaded = customer.open_checkout(payment["checkout_url"])
    assert customer.by_id("wallet-balance").text == "Balance 120.00 CNY"
    browser.find_element(By.CSS_SELECTOR, "input[name=method][value=balance]").click()
    customer.shot("wallet-chosen")
    customer.by_id("pay-button").click()

    customer.wait_screen("succeeded")
    customer.shot("succeeded")
    assert customer.page_id() == loaded  # no reload
    assert flow.get(payment["id"])["status"] == "succeeded"
    assert flow.get_order(order["id"])["status"] == "paid"
    assert balance(clean_db, USER) == Decimal("31.20")
