"""The cashier page in a real browser: Debian's headless Chromium driven by selenium,
against the live server and the real worker; the customer approves or declines on the
sandbox's pay page in a second tab while the checkout tab stays open, and the checkout
tab changes screens by itself (no reload: a value its script set at load survives).

Screenshots of every step go to test-artifacts/checkout/. Skipped only when chromium or
chromedriver is not installed (`make install` installs them where it can).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.payment_flow import PaymentFlow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="chromium and chromedriver are not on PATH (Debian packages "
                              "chromium, chromium-driver; `make install` adds them as root)"),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "checkout"
WAIT = 30  # seconds; the worker and the callback round trip on a busy machine
PHONE = (390, 844)  # a phone-sized window: the page must fit without sideways scrolling


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="checkout-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--lang=en-US"):
        options.add_argument(arg)
    # A phone's viewport (headless windows have a minimum width; emulation has none).
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": {
        "width": PHONE[0], "height": PHONE[1], "pixelRatio": 2}})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER or "/usr/bin/chromedriver"),
                              options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def flow(api, admin_key, settings, clean_db, celery_worker) -> PaymentFlow:
    return PaymentFlow(api, admin_key, settings.sandbox_api_key, clean_db)


class Customer:
    """One customer at the browser: the checkout tab, and the pay page in a second tab."""

    def __init__(self, driver, name: str) -> None:
        self.driver = driver
        self.name = name
        self.step = 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shot(self, label: str) -> None:
        self.step += 1
        self.driver.save_screenshot(str(ARTIFACTS / f"{self.name}-{self.step:02d}-{label}.png"))

    def wait(self, condition, message: str):
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        # A page being replaced (the sandbox's post/redirect) is simply looked at again:
        # mid-navigation Chromium answers with missing, stale or "not in the document"
        # nodes, all WebDriverExceptions. A real failure still ends in the timeout.
        return WebDriverWait(self.driver, WAIT, poll_frequency=0.2,
                             ignored_exceptions=(WebDriverException,)).until(
            lambda d: condition(d), message=message)

    def by_id(self, element_id: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, element_id)

    def screen(self) -> str:
        return str(self.driver.execute_script("return document.body.dataset.screen"))

    def page_id(self) -> str | None:
        return self.driver.execute_script("return window.checkoutPageId || null")

    def open_checkout(self, url: str) -> str:
        """Open the page; the id its script set at load (a reload would change it)."""
        self.driver.get(url)
        self.wait(lambda d: self.screen() == "choose", "the method choice")
        assert self.driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"), (
            "the page scrolls sideways on a phone-sized screen")
        return str(self.page_id())

    def pay(self) -> str:
        """Press Pay; the sandbox's pay link once the payment has started."""
        self.by_id("pay-button").click()
        link = self.wait(lambda d: self.by_id("pay-link").is_displayed()
                         and self.by_id("pay-link"), "the pay link")
        return str(link.get_attribute("href"))

    def decide_in_second_tab(self, button: str) -> None:
        """Follow the pay link (it opens a tab), press Approve/Decline, come back."""
        checkout_tab = self.driver.current_window_handle
        before = set(self.driver.window_handles)
        self.by_id("pay-link").click()
        new_tabs = self.wait(lambda d: set(d.window_handles) - before, "the pay page tab")
        self.driver.switch_to.window(new_tabs.pop())
        from selenium.webdriver.common.by import By

        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, f"button.{button}"),
                  "the sandbox's buttons")
        self.shot(f"sandbox-before-{button}")
        self.driver.find_element(By.CSS_SELECTOR, f"button.{button}").click()
        wanted = "succeeded" if button == "approve" else "failed"
        self.wait(lambda d: d.find_element(By.ID, "status").text == wanted,
                  f"the sandbox shows {wanted}")
        self.shot(f"sandbox-{wanted}")
        self.driver.close()
        self.driver.switch_to.window(checkout_tab)

    def wait_screen(self, screen: str) -> None:
        self.wait(lambda d: self.screen() == screen and self.by_id(f"screen-{screen}")
                  .is_displayed(), f"the {screen} screen")


def test_pay_approve_and_the_success_screen_appears_without_a_reload(flow, browser):
    order = flow.order("88.80")
    payment = flow.payment(order["id"], "wechat")
    customer = Customer(browser, "approve")

    loaded = customer.open_checkout(payment["checkout_url"])
    assert customer.by_id("order-number").text == order["order_number"]
    assert customer.by_id("amount").text == "88.80"
    assert customer.by_id("currency").text == "CNY"
    customer.shot("checkout")
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, "input[name=method][value=alipay]").click()
    customer.shot("alipay-chosen")

    pay_url = customer.pay()
    assert flow.at_provider(pay_url)["method"] == "alipay"
    assert customer.by_id("method-name").text == "Alipay"
    assert pay_url.startswith(f"{flow.admin.base_url}/sandbox/pay/tkt_")
    qr = customer.wait(lambda d: customer.by_id("qr-image").is_displayed()
                       and d.execute_script("return document.getElementById('qr-image')"
                                            ".naturalWidth") > 0 and True, "the QR image")
    assert qr and customer.by_id("time-left-row").is_displayed()
    assert customer.screen() == "pending"
    customer.shot("pending-with-qr")

    customer.decide_in_second_tab("approve")

    customer.wait_screen("succeeded")
    customer.shot("succeeded")
    assert customer.page_id() == loaded  # updated in place, never reloaded
    assert customer.by_id("status").get_attribute("data-status") == "succeeded"
    assert not customer.by_id("time-left-row").is_displayed()
    flow.settle(pay_url)
    assert flow.get(payment["id"])["status"] == "succeeded"
    assert flow.get_order(order["id"])["status"] == "paid"


def test_decline_shows_failed_then_retry_and_approve_succeeds(flow, browser):
    order = flow.order("100.00")
    first = flow.payment(order["id"], "alipay")
    customer = Customer(browser, "decline-retry")

    loaded = customer.open_checkout(first["checkout_url"])
    first_url = customer.pay()
    customer.shot("pending")
    customer.decide_in_second_tab("decline")

    customer.wait_screen("failed")
    customer.wait(lambda d: customer.by_id("retry-button").is_displayed(), "Retry")
    customer.shot("failed")
    assert customer.page_id() == loaded  # no reload on the way to failed

    # The 30 s between attempts pass in the database, not in the test's wall clock.
    flow.move_back("payments", first["id"], 31, "created_at")
    customer.by_id("retry-button").click()

    # Retry navigates to the new attempt's own checkout link.
    customer.wait(lambda d: f"/checkout/{first['id']}?" not in d.current_url
                  and customer.screen() == "choose", "the new attempt's page")
    retried = customer.page_id()
    assert retried and retried != loaded
    attempts = flow.admin.get(f"/api/v1/payments?order_id={order['id']}").json()["items"]
    second = next(p for p in attempts if p["id"] != first["id"])
    assert (second["attempt"], second["method"], second["status"]) == (2, "alipay", "init")
    assert browser.current_url == second["checkout_url"]
    customer.shot("retry-page")

    second_url = customer.pay()
    assert second_url != first_url
    customer.decide_in_second_tab("approve")

    customer.wait_screen("succeeded")
    customer.shot("succeeded")
    assert customer.page_id() == retried
    flow.settle(first_url, second_url)
    assert flow.get(first["id"])["status"] == "failed"
    assert flow.get(second["id"])["status"] == "succeeded"
    assert flow.get_order(order["id"])["status"] == "paid"
